"""The client's configuration: one typed model, one field per flag, each with a ``VOLUNTEER_*`` twin.

A flag on the command line wins over its environment variable, which wins over the default. This module
imports nothing heavy: ``volunteer --help`` and bad-flag errors must answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from volunteer import __version__
from volunteer.constants import DEFAULT_STATUS_PORT, ENV_PREFIX, env, initial_peers_from_env
from volunteer.errors import ConfigError
from volunteer.swarm.multiaddrs import parse_listen_addresses, parse_peers
from volunteer.wire import parse_data_size, parse_rate

DEFAULT_PROJECT = "demo"


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (use 1/0, true/false, yes/no or on/off)")


def parse_positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError(f"{value!r} must be greater than 0")
    return number


def parse_port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{value!r} is not a port number from 0 (off) to 65535")
    return number


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> float:
    match = _DURATION.match(value)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration like 90, 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_device(value: str) -> str:
    value = value.strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError(f"{value!r} is not a device (use auto, cpu, cuda or cuda:N)")


def parse_log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{value!r} is not a log format (use text or json)")
    return value


def parse_address(value: str) -> str:
    """``HOST:PORT`` (``[::]:PORT`` for IPv6): where to serve the read-only endpoint."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c in host for c in "/ @"):
        raise ValueError(f"{value!r} is not an address like 0.0.0.0:9471 or 127.0.0.1:9471")
    return f"{host}:{port}"


def _peers(value: str, source: str | None = None) -> str:
    parse_peers(value, source)  # raises PeerAddressError with its own hint
    return value


def _listen(value: str, source: str | None = None) -> str:
    parse_listen_addresses(value, source)
    return value


_ADDRESS_PARSERS = (_peers, _listen)


@dataclass(frozen=True)
class Option:
    """One setting: its flag, environment variable, parser and help text (its default is :class:`Settings`')."""

    name: str
    flag: str
    help: str
    parse: Callable[[str], Any] | None = None
    boolean: bool = False
    env_name: str | None = None
    metavar: str | None = None

    @property
    def env(self) -> str:
        return self.env_name or ENV_PREFIX + self.name.upper()


RUN_OPTIONS: tuple[Option, ...] = (
    Option(
        "project",
        "--project",
        "project to train: demo, a local folder, org/name or org/name@revision",
        str,
        metavar="ID",
    ),
    Option(
        "headless",
        "--headless",
        "no TUI: log lines for `docker logs` (automatic when stdout is not a terminal)",
        boolean=True,
    ),
    Option(
        "initial_peers",
        "--initial-peers",
        "peers to join, comma or space separated multiaddresses (also INITIAL_PEERS)",
        _peers,
        metavar="MADDRS",
    ),
    Option(
        "batch_size",
        "--batch-size",
        "samples per local step (default: the project's)",
        parse_positive_int,
        metavar="N",
    ),
    Option("device", "--device", "auto, cpu, cuda or cuda:N", parse_device),
    Option(
        "data_dir",
        "--data-dir",
        "where identity, consent, ledger and logs live (default ~/.local/share/volunteer; caches stay in ~/.cache)",
        str,
        env_name=ENV_PREFIX + "HOME",
        metavar="DIR",
    ),
    Option("name", "--name", "public nickname shown on the swarm's leaderboard", str, metavar="NICK"),
    Option("max_steps", "--max-steps", "stop after this many local steps", parse_positive_int, metavar="N"),
    Option("duration", "--duration", "stop after this long: 90s, 15m, 2h, 1d", parse_duration, metavar="TIME"),
    Option("log_format", "--log-format", "headless log lines: text or json", parse_log_format),
    Option(
        "status_port",
        "--status-port",
        f"status endpoint port on 127.0.0.1 (0: off; default {DEFAULT_STATUS_PORT})",
        parse_port,
        metavar="PORT",
    ),
    Option(
        "metrics_address",
        "--metrics-address",
        "also serve /status, /metrics and /healthz, read-only, on this HOST:PORT (e.g. 0.0.0.0:9471 for a "
        "Prometheus in another container); commands stay on 127.0.0.1",
        parse_address,
        metavar="HOST:PORT",
    ),
    Option(
        "trust",
        "--trust",
        "run the project's code without asking (consent is remembered per commit)",
        boolean=True,
    ),
    Option("host_maddrs", "--host-maddrs", "multiaddresses to listen on", _listen, metavar="MADDRS"),
    Option(
        "announce_maddrs",
        "--announce-maddrs",
        "multiaddresses other peers should dial (public address behind NAT)",
        _listen,
        metavar="MADDRS",
    ),
    Option(
        "client_mode",
        "--client-mode",
        "outgoing connections only (behind NAT without port forwarding); by default the client asks peers to "
        "dial it back and uses client mode if none can, or under --max-upload or --monthly-data when a full peer "
        "trains; --no-client-mode: always a full peer",
        boolean=True,
    ),
    Option(
        "use_relay",
        "--use-relay",
        "reach and be reached through relays (default on; --no-use-relay to disable)",
        boolean=True,
    ),
    Option(
        "max_upload",
        "--max-upload",
        "send at most this much on average: 5Mbit, 20Mbps, 500KB/s; the client spaces out optional averaging "
        "and holds training back between global steps to stay under it (docs/bandwidth.md)",
        parse_rate,
        metavar="RATE",
    ),
    Option(
        "monthly_data",
        "--monthly-data",
        "send and receive at most this much in 30 days, spread evenly: 100 (GB), 100GB, 1.5TB, 500MB",
        parse_data_size,
        metavar="SIZE",
    ),
    Option(
        "endpoint",
        "--endpoint",
        "Hugging Face Hub endpoint (default: HF_ENDPOINT or the public Hub)",
        str,
        metavar="URL",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings of a ``volunteer`` run: one field per :data:`RUN_OPTIONS` entry, with its default."""

    project: str = DEFAULT_PROJECT
    headless: bool | None = None
    """None: decide from whether stdout is a terminal."""
    initial_peers: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    data_dir: str | None = None
    name: str | None = None
    max_steps: int | None = None
    duration: float | None = None
    log_format: str = "text"
    status_port: int = DEFAULT_STATUS_PORT
    metrics_address: str | None = None
    trust: bool = False
    host_maddrs: str | None = None
    announce_maddrs: str | None = None
    client_mode: bool | None = None
    """None: decide with a reachability check (volunteer.swarm.reachability)."""
    use_relay: bool = True
    max_upload: float | None = None
    """Bytes per second."""
    monthly_data: float | None = None
    """Bytes in 30 days."""
    endpoint: str | None = None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line and a hint) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message, f"run '{self.prog} --help' to see the options")


def add_run_options(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Add the client's flags (all, or those called ``names``), each naming its environment variable."""
    wanted = None if names is None else set(names)
    for option in RUN_OPTIONS:
        if wanted is not None and option.name not in wanted:
            continue
        help_text = f"{option.help} [env {option.env}]"
        if option.boolean:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(option.flag, dest=option.name, default=None, metavar=option.metavar, help=help_text)


def settings_from_namespace(namespace: argparse.Namespace) -> Settings:
    """Settings from parsed flags, falling back to ``VOLUNTEER_*`` variables, then defaults."""
    values: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        raw = getattr(namespace, option.name, None)
        source = option.flag
        if raw is None:
            raw = env(option.env)
            source = option.env
            if option.name == "initial_peers" and raw is None:
                raw = initial_peers_from_env()
                source = "INITIAL_PEERS"
            if raw is None:
                continue
        if option.boolean:
            if isinstance(raw, bool):
                values[option.name] = raw
                continue
            parser: Callable[[str], Any] = parse_bool
        else:
            parser = option.parse or str
        try:
            values[option.name] = parser(raw, source) if parser in _ADDRESS_PARSERS else parser(raw)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}", f"fix the value of {source}; see 'volunteer --help'") from None
    return Settings(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer",
        description="Contribute your GPU (or CPU) to collaborative deep learning projects.",
        epilog="Commands: 'volunteer attach [URL]' opens the dashboard of a running headless client; "
        "'volunteer demo [--peers N]' runs a whole swarm of the demo project on this machine; "
        "'volunteer doctor' checks this machine. For project authors: 'volunteer init', 'check', 'publish' and "
        "'host' (docs/authors.md). Run 'volunteer COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"volunteer {__version__}")
    add_run_options(parser)
    return parser


def parse_run_args(argv: Sequence[str]) -> Settings:
    return settings_from_namespace(build_parser().parse_args(list(argv)))
