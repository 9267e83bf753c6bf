"""``volunteer host``'s options: the flags, their defaults and their checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volunteer.authoring.options import checked, duration, positive_int, repo_id
from volunteer.constants import ENV_PREFIX, env
from volunteer.errors import ConfigError
from volunteer.settings import ArgumentParser, Settings, add_run_options, parse_port, settings_from_namespace
from volunteer.swarm.multiaddrs import parse_peers

DEFAULT_PORT = 31337
DEFAULT_HOST_MADDRS = (f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}", f"/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1")
"""Fixed ports, so that a restarted host has the same address (a volunteer's client picks random ones)."""
DEFAULT_PEERS_PORT = 8472


@dataclass(frozen=True)
class HostOptions:
    """The host's settings, validated."""

    settings: Settings
    """The client's settings: project, trust, endpoint, data_dir, initial_peers, host/announce addresses, relay."""
    update_peers_file: bool | None = None
    """None: on for a Hub project whose manifest names a peers file."""
    peers_port: int = 0
    peers_bind: str = "0.0.0.0"
    extra_peers: tuple[str, ...] = ()
    refresh_every: float = 60.0
    drop_after: int = 3
    checkpoint_dir: Path | None = None
    checkpoint_every: float = 600.0
    keep_checkpoints: int = 3
    checkpoint_repo: str | None = None
    state_every: float = 30.0
    log_every: float = 60.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer host",
        description="Run a long-lived bootstrap and auxiliary peer for a project's swarm: a stable address "
        "(persistent identity, fixed ports), help with averaging, the swarm's state for newcomers, a peer list kept "
        "fresh on the Hub (and at /peers), the swarm's metrics, and checkpoints.",
    )
    parser.add_argument(
        "--project",
        dest="project",
        default=None,
        metavar="ID",
        help="the project to host: org/name, org/name@revision or a folder [env VOLUNTEER_PROJECT]",
    )
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        default=None,
        metavar="DIR",
        help="the host's identity, Hub cache and logs (default ~/.local/share/volunteer/host) [env VOLUNTEER_HOME]",
    )
    add_run_options(
        parser,
        (
            "trust",
            "endpoint",
            "initial_peers",
            "host_maddrs",
            "announce_maddrs",
            "use_relay",
            "log_format",
        ),
    )
    parser.add_argument(
        "--update-peers-file",
        dest="update_peers_file",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the project's peers file on the Hub when the list changes (default: on for a Hub project "
        "whose manifest names a peers file; needs a token with write access in HF_TOKEN)",
    )
    for flag, (metavar, _, help_text) in _FLAGS.items():
        default = getattr(HostOptions, flag[2:].replace("-", "_"))
        shown = _duration_text(default) if metavar == "TIME" else default
        parser.add_argument(flag, metavar=metavar, help=help_text + (f" (default {shown})" if shown else ""))
    return parser


def parse_host_args(argv: Sequence[str]) -> HostOptions:
    from volunteer.project.ids import parse_project_id

    args = build_parser().parse_args(list(argv))
    settings = settings_from_namespace(args)
    if args.project is None and env(ENV_PREFIX + "PROJECT") is None:
        raise ConfigError("volunteer host needs --project", "name the project to host: --project org/name")
    given = {
        flag[2:].replace("-", "_"): parse(flag, value)
        for flag, (_, parse, _) in _FLAGS.items()
        if (value := getattr(args, flag[2:].replace("-", "_"))) is not None
    }
    checkpoint_repo = given.get("checkpoint_repo")
    if checkpoint_repo is not None:
        project = parse_project_id(settings.project)
        if project.kind == "hub" and project.repo == checkpoint_repo:
            raise ConfigError(
                "--checkpoint-repo is the project's own repository: every checkpoint would be a new commit of the "
                "project, and ask every volunteer for consent again",
                f"use a repository of its own, e.g. --checkpoint-repo {checkpoint_repo}-checkpoints",
            )
        if given.get("checkpoint_dir") is None:
            raise ConfigError(
                "--checkpoint-repo needs --checkpoint-dir",
                "add --checkpoint-dir DIR: checkpoints are saved there first",
            )
    return HostOptions(settings=settings, update_peers_file=args.update_peers_file, **given)


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


_FLAGS: dict[str, tuple[str, Callable[[str, str], Any], str]] = {
    "--peers-port": (
        "PORT",
        lambda flag, value: checked(flag, parse_port, value),
        f"serve GET /peers and /swarm on this port (0: off, the default; {DEFAULT_PEERS_PORT} is a good choice)",
    ),
    "--peers-bind": ("ADDR", lambda flag, value: value, "the address to serve on"),
    "--extra-peers": (
        "MADDRS",
        lambda flag, value: tuple(parse_peers(value, flag)),
        "other long-lived peers to list while they answer",
    ),
    "--refresh-every": ("TIME", duration, "how often the peer list is checked"),
    "--drop-after": ("N", positive_int, "checks in a row a listed peer may not answer before it is left out"),
    "--checkpoint-dir": (
        "DIR",
        lambda flag, value: Path(value).expanduser() if value else None,
        "save the swarm's model here",
    ),
    "--checkpoint-every": ("TIME", duration, "how often to save"),
    "--keep-checkpoints": ("N", positive_int, "checkpoints kept"),
    "--checkpoint-repo": (
        "ORG/NAME",
        lambda flag, value: repo_id(flag, value, "my-lab/spirals-checkpoints"),
        "also upload each checkpoint to this Hub repository",
    ),
    "--state-every": (
        "TIME",
        duration,
        "download the swarm's state at most this often after a global step: the copy newcomers get when no "
        "volunteer is online",
    ),
    "--log-every": ("TIME", duration, "how often to log the swarm's state"),
}
"""The host's own flags: metavar, how to read a value (a one-line error naming the flag), help. Their defaults are
:class:`HostOptions`'."""
