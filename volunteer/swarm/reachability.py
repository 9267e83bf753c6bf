"""Can other peers dial this machine? A reachability check like Petals', to choose client mode by itself.

A volunteer behind NAT (or a firewall) with no port forwarding cannot accept connections. As a full DHT peer
it would still be put in others' routing tables and asked for matchmaking and state, and every such request
would time out; in hivemind's client mode it only dials out, and others reach it over the connections it
opened (or a relay). So when the volunteer did not choose, the client asks:

1. It starts its DHT as a full peer, then asks up to :data:`MAX_ASKED` of its initial peers, through a small
   p2p protocol (:data:`HANDLER`), to dial it back.
2. Each asked peer opens a **new** TCP connection to the addresses the asker announced (never the connection
   the question came over, which proves nothing) and answers only whether one succeeded.
3. Any yes: a full peer. Only no's: client mode (the DHT is started again in client mode, relays on). No
   answer at all (the first peer of a swarm, or peers of an older version): a full peer, as before.

Every full peer serves the handler (:func:`serve`), so that later peers can ask it. The dial-back is a plain
TCP connect, not a libp2p handshake: it answers "does a connection to that address get through", which is the
NAT question, without starting a second ``p2pd``. So that nobody can use the question to make a volunteer dial
other machines (or its own loopback services), an asked peer dials only addresses at the IP its connection
from the asker comes from, at most :data:`MAX_ADDRESSES` per question, each with a short time-out: behind NAT
that IP is the router's, the announced addresses are private ones, nothing is dialled and the answer is no.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from volunteer.swarm.keeper import others_progress

HANDLER = "volunteer.reachability.DialBack"
MAX_ASKED = 3
MAX_ADDRESSES = 8
MAX_ANSWERING = 4
"""Questions a peer answers at once; others wait (at most MAX_ANSWERING x MAX_ADDRESSES dials in flight)."""
DIAL_TIMEOUT = 3.0
ASK_TIMEOUT = 10.0

FULL_PEER = "full peer"
CLIENT_MODE = "client mode"


@dataclass(frozen=True)
class NetworkMode:
    """How this peer takes part in the swarm, and why (shown on the dashboard and in the status JSON)."""

    client_mode: bool
    reason: str

    @property
    def label(self) -> str:
        return CLIENT_MODE if self.client_mode else FULL_PEER


FORCED_CLIENT = NetworkMode(True, "client mode was asked for (--client-mode)")
FORCED_FULL = NetworkMode(False, "full peer was asked for (--no-client-mode)")


def capped_client(limits: str) -> NetworkMode:
    """Client mode for a peer with an upload cap (``limits`` in words) whose volunteer did not choose a mode."""
    return NetworkMode(
        True,
        f"{limits}: client mode, so that answering other peers' lookups and averaging their parts is not sent on "
        "this budget (--no-client-mode: a full peer)",
    )


CAPPED_BUT_NEEDED = "no other full peer is training, and clients average only through one, so a full peer anyway"


def full_peer_training(dht: Any, run_id: str) -> bool:
    """Whether a training peer of ``run_id`` other than this one is a full peer, by hivemind's progress records.

    A client can only join averaging groups that hold a full peer: a capped volunteer becomes a client only when
    one is there (the first peers of a swarm stay full, or nobody could average).
    """
    return any(record.get("client_mode") is False for record in others_progress(dht, f"{run_id}_progress"))


REACHABLE = "peers could dial this machine back"
UNREACHABLE = "peers could not dial this machine (behind NAT or a firewall): client mode, through other peers"
NOBODY_TO_ASK = "no peer to ask yet"
NO_ANSWER = "no peer answered the reachability check"


def decide(answers: Sequence[bool | None]) -> NetworkMode:
    """The mode from the asked peers' answers (True: dialled back, False: could not, None: no answer)."""
    said = [a for a in answers if a is not None]
    if not answers:
        return NetworkMode(False, NOBODY_TO_ASK)
    if not said:
        return NetworkMode(False, NO_ANSWER)
    yes = sum(said)
    if yes:
        return NetworkMode(False, f"{REACHABLE} ({yes} of {len(said)} asked)")
    return NetworkMode(True, f"{UNREACHABLE} ({len(said)} of {len(said)} asked could not)")


def tcp_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a direct ``/ip4|ip6/<host>/tcp/<port>`` multiaddress; None for any other kind."""
    parts = address.split("/")
    if len(parts) < 5 or parts[0] != "" or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    if "p2p-circuit" in parts:
        return None
    try:
        ipaddress.ip_address(parts[2])
        port = int(parts[4])
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return parts[2], port


def _is_loopback(address: str) -> bool:
    endpoint = tcp_endpoint(address)
    return endpoint is not None and ipaddress.ip_address(endpoint[0]).is_loopback


def addresses_for(asked: str, mine: Sequence[str]) -> list[str]:
    """Which of this peer's addresses to ask the peer at multiaddress ``asked`` to dial.

    Loopback addresses only to a peer reached at a loopback address (the same machine): to anyone else they
    name its own machine, and a port that happens to be open there would say yes for nothing.
    """
    local = _is_loopback(asked)
    return [a for a in mine if tcp_endpoint(a) is not None and (local or not _is_loopback(a))][:MAX_ADDRESSES]


def only_at(addresses: Sequence[str], hosts: set[Any]) -> list[str]:
    """The direct TCP addresses among ``addresses`` whose IP is one of ``hosts`` (``ipaddress`` objects)."""
    kept = []
    for address in addresses:
        endpoint = tcp_endpoint(address)
        if endpoint is not None and ipaddress.ip_address(endpoint[0]) in hosts:
            kept.append(address)
    return kept


async def _seen_at(node: Any, peer_id: Any) -> set[Any]:
    """The IPs this node's connections to ``peer_id`` come from (the daemon lists each connection's remote
    address, as observed, not what the peer announces)."""
    try:
        infos = await asyncio.wait_for(node.p2p.list_peers(), DIAL_TIMEOUT)
    except Exception:
        return set()
    hosts = set()
    for info in infos:
        if info.peer_id != peer_id:
            continue
        for address in info.addrs:
            parts = str(address).split("/")
            if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
                try:
                    hosts.add(ipaddress.ip_address(parts[2]))
                except ValueError:
                    continue
    return hosts


async def dial_back(addresses: Sequence[str], timeout: float = DIAL_TIMEOUT) -> bool:
    """Whether a new TCP connection to any of ``addresses`` succeeds within ``timeout``."""
    endpoints = [e for e in (tcp_endpoint(a) for a in addresses[:MAX_ADDRESSES]) if e is not None]

    async def one(host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, asyncio.TimeoutError):
            pass
        return True

    results = await asyncio.gather(*(one(host, port) for host, port in endpoints))
    return any(results)


# -- inside the DHT process (DHT.run_coroutine) ----------------------------------------------------------------


async def _serve(dht: Any, node: Any) -> None:
    from hivemind.proto import dht_pb2, p2pd_pb2

    dialling = asyncio.Semaphore(MAX_ANSWERING)  # a flood of questions waits its turn: sockets stay bounded

    async def handler(request: Any, context: Any) -> Any:
        addresses = [bytes(a).decode("utf-8", "replace") for a in request.addrs[:MAX_ADDRESSES]]
        async with dialling:
            seen = await _seen_at(node, context.remote_id)
            return dht_pb2.PingResponse(available=await dial_back(only_at(addresses, seen)))

    await node.p2p.add_protobuf_handler(HANDLER, handler, p2pd_pb2.PeerInfo)


async def _ask(questions: list[tuple[str, list[str]]], timeout: float, dht: Any, node: Any) -> list[bool | None]:
    from hivemind.p2p import PeerID
    from hivemind.proto import dht_pb2, p2pd_pb2

    async def one(peer_b58: str, addresses: list[str]) -> bool | None:
        if not addresses:
            return None
        request = p2pd_pb2.PeerInfo(id=node.peer_id.to_bytes(), addrs=[a.encode() for a in addresses])
        try:
            call = node.p2p.call_protobuf_handler(PeerID.from_base58(peer_b58), HANDLER, request, dht_pb2.PingResponse)
            response = await asyncio.wait_for(call, timeout)
        except Exception:  # no such handler (an older peer), gone, or too slow: it did not say
            return None
        return bool(response.available)

    # peers we are connected to first (the DHT just bootstrapped from them): a dead peer in a cached list
    # would only cost a time-out
    try:
        connected = {info.peer_id.to_base58() for info in await asyncio.wait_for(node.p2p.list_peers(), timeout)}
    except Exception:
        connected = set()
    chosen = sorted(questions, key=lambda q: q[0] not in connected)[:MAX_ASKED]
    return list(await asyncio.gather(*(one(peer, addresses) for peer, addresses in chosen)))


def serve(dht: Any) -> None:
    """Answer other peers' reachability questions (every full peer does)."""
    dht.run_coroutine(_serve)


def check(dht: Any, initial_peers: Sequence[str], timeout: float = ASK_TIMEOUT) -> NetworkMode:
    """Ask up to :data:`MAX_ASKED` of ``initial_peers`` (multiaddresses with ``/p2p/<id>``) to dial ``dht`` back.

    Those it is connected to are asked first. A peer listed under several addresses is asked once, with the
    addresses fit for the first of them.
    """
    mine = [str(a) for a in dht.get_visible_maddrs()]
    questions: list[tuple[str, list[str]]] = []
    own = dht.peer_id.to_base58()
    for address in initial_peers:
        peer = address.rsplit("/p2p/", 1)[-1] if "/p2p/" in address else ""
        if not peer or peer == own or any(peer == p for p, _ in questions):
            continue
        questions.append((peer, addresses_for(address, mine)))
    if not questions:
        return decide([])
    try:
        answers = dht.run_coroutine(functools.partial(_ask, questions, timeout))
    except Exception:
        answers = [None] * min(len(questions), MAX_ASKED)
    return decide(answers)
