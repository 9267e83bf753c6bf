"""Peer multiaddresses: parse, validate and merge them without importing hivemind.

hivemind's own multiaddr module pulls in torch on import; the CLI must answer bad input at once, so we
validate the textual form here. Tests check that every address we accept is accepted by hivemind too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from volunteer.errors import PeerAddressError

_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

# protocol name -> kind of value that follows it (None: the protocol takes no value)
_PROTOCOLS: dict[str, str | None] = {
    "ip4": "ip4",
    "ip6": "ip6",
    "dns": "host",
    "dns4": "host",
    "dns6": "host",
    "dnsaddr": "host",
    "tcp": "port",
    "udp": "port",
    "quic": None,
    "quic-v1": None,
    "ws": None,
    "wss": None,
    "tls": None,
    "noise": None,
    "webtransport": None,
    "p2p-circuit": None,
    "p2p": "peer",
    "ipfs": "peer",
}
_NETWORK = {"ip4", "ip6", "dns", "dns4", "dns6", "dnsaddr"}


def _split_components(address: str) -> list[tuple[str, str | None]]:
    if not address.startswith("/"):
        raise ValueError("a multiaddress starts with '/', e.g. /ip4/1.2.3.4/tcp/31337/p2p/Qm...")
    parts = address.split("/")[1:]
    if address.endswith("/"):
        parts = parts[:-1]
    components: list[tuple[str, str | None]] = []
    i = 0
    while i < len(parts):
        name = parts[i]
        if name not in _PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}")
        kind = _PROTOCOLS[name]
        if kind is None:
            components.append((name, None))
            i += 1
            continue
        if i + 1 >= len(parts) or parts[i + 1] == "":
            raise ValueError(f"protocol {name!r} needs a value after it")
        value = parts[i + 1]
        _check_value(name, kind, value)
        components.append((name, value))
        i += 2
    return components


def _check_value(name: str, kind: str, value: str) -> None:
    if kind == "ip4":
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
    elif kind == "ip6":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv6 address") from None
    elif kind == "host":
        if not _HOSTNAME.match(value):
            raise ValueError(f"{value!r} is not a host name")
    elif kind == "port":
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise ValueError(f"{name} port {value!r} is not a number from 0 to 65535")
    elif kind == "peer" and (not _BASE58.match(value) or not 32 <= len(value) <= 128):
        raise ValueError(f"{value!r} is not a peer id (base58, like Qm... or 12D3KooW...)")


def _network_components(address: str) -> list[tuple[str, str | None]]:
    components = _split_components(address)
    if not components or components[0][0] not in _NETWORK:
        raise ValueError("it must start with /ip4/, /ip6/ or /dns.../")
    return components


def _check_dialable(components: list[tuple[str, str | None]]) -> None:
    if components[-1][0] not in ("p2p", "ipfs"):
        raise ValueError("it must end with /p2p/<peer id> (the id printed by the peer you join)")
    if components[0] in (("ip4", "0.0.0.0"), ("ip6", "::")):
        raise ValueError(f"{components[0][1]} is a listening address, not one to connect to")


def validate_listen_address(address: str, source: str | None = None) -> str:
    """Check a multiaddress this peer listens on or announces (no peer id needed)."""
    address = address.strip()
    try:
        _network_components(address)
    except ValueError as e:
        raise PeerAddressError(address, str(e), source) from None
    return address


def validate_peer_address(address: str, source: str | None = None) -> str:
    """Check that ``address`` is a multiaddress another peer can be dialled at; return it stripped."""
    address = address.strip()
    try:
        _check_dialable(_network_components(address))
    except ValueError as e:
        raise PeerAddressError(address, str(e), source) from None
    return address


def split_addresses(value: str | Sequence[str] | None) -> list[str]:
    """Split a comma or whitespace separated string (or a list of such strings) into addresses."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            item = str(item)
        out.extend(piece for piece in re.split(r"[\s,]+", item) if piece)
    return out


def parse_peers(value: str | Sequence[str] | None, source: str | None = None) -> list[str]:
    """Parse and validate a peer list; duplicates are dropped, order is kept."""
    return dedupe(validate_peer_address(a, source) for a in split_addresses(value))


def parse_listen_addresses(value: str | Sequence[str] | None, source: str | None = None) -> list[str]:
    """Parse and validate listen/announce multiaddresses."""
    return dedupe(validate_listen_address(a, source) for a in split_addresses(value))


def dedupe(addresses: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address, None)
    return list(seen)


def peer_id_of(address: str) -> str:
    """The peer id at the end of a validated peer multiaddress."""
    return address.rstrip("/").rsplit("/", 1)[-1]
