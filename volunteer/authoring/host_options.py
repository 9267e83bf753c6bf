"""``volunteer host``'s options: the flags, their defaults and their checks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    parser.add_argument(
        "--peers-port",
        default=None,
        metavar="PORT",
        help=f"serve GET /peers and /swarm on this port (0: off, the default; {DEFAULT_PEERS_PORT} is a good choice)",
    )
    parser.add_argument("--peers-bind", default="0.0.0.0", metavar="ADDR", help="the address to serve on (0.0.0.0)")
    parser.add_argument(
        "--extra-peers", default=None, metavar="MADDRS", help="other long-lived peers to list while they answer"
    )
    parser.add_argument(
        "--refresh-every", default="60s", metavar="TIME", help="how often the peer list is checked (default 60s)"
    )
    parser.add_argument(
        "--drop-after",
        default="3",
        metavar="N",
        help="checks in a row a listed peer may not answer before it is left out (default 3)",
    )
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR", help="save the swarm's model here")
    parser.add_argument("--checkpoint-every", default="10m", metavar="TIME", help="how often to save (default 10m)")
    parser.add_argument("--keep-checkpoints", default="3", metavar="N", help="checkpoints kept (default 3)")
    parser.add_argument(
        "--checkpoint-repo", default=None, metavar="ORG/NAME", help="also upload each checkpoint to this Hub repository"
    )
    parser.add_argument(
        "--state-every",
        default="30s",
        metavar="TIME",
        help="download the swarm's state at most this often after a global step (default 30s): the copy newcomers "
        "get when no volunteer is online",
    )
    parser.add_argument("--log-every", default="60s", metavar="TIME", help="how often to log the swarm's state")
    return parser


def parse_host_args(argv: Sequence[str]) -> HostOptions:
    from volunteer.project.ids import parse_project_id

    args = build_parser().parse_args(list(argv))
    settings = settings_from_namespace(args)
    if args.project is None and env(ENV_PREFIX + "PROJECT") is None:
        raise ConfigError("volunteer host needs --project", "name the project to host: --project org/name")
    peers_port = checked("--peers-port", parse_port, args.peers_port) or 0
    extra = tuple(parse_peers(args.extra_peers, "--extra-peers"))
    checkpoint_repo = None
    if args.checkpoint_repo is not None:
        checkpoint_repo = repo_id("--checkpoint-repo", args.checkpoint_repo, "my-lab/spirals-checkpoints")
        project = parse_project_id(settings.project)
        if project.kind == "hub" and project.repo == checkpoint_repo:
            raise ConfigError(
                "--checkpoint-repo is the project's own repository: every checkpoint would be a new commit of the "
                "project, and ask every volunteer for consent again",
                f"use a repository of its own, e.g. --checkpoint-repo {checkpoint_repo}-checkpoints",
            )
    if args.checkpoint_repo and not args.checkpoint_dir:
        raise ConfigError(
            "--checkpoint-repo needs --checkpoint-dir", "add --checkpoint-dir DIR: checkpoints are saved there first"
        )
    return HostOptions(
        settings=settings,
        update_peers_file=args.update_peers_file,
        peers_port=peers_port,
        peers_bind=args.peers_bind,
        extra_peers=extra,
        refresh_every=duration("--refresh-every", args.refresh_every) or 60.0,
        drop_after=positive_int("--drop-after", args.drop_after) or 3,
        checkpoint_dir=Path(args.checkpoint_dir).expanduser() if args.checkpoint_dir else None,
        checkpoint_every=duration("--checkpoint-every", args.checkpoint_every) or 600.0,
        keep_checkpoints=positive_int("--keep-checkpoints", args.keep_checkpoints) or 3,
        checkpoint_repo=checkpoint_repo,
        state_every=duration("--state-every", args.state_every) or 30.0,
        log_every=duration("--log-every", args.log_every) or 60.0,
    )
