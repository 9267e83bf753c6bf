"""``volunteer host --project ID``: a long-lived bootstrap and auxiliary peer for a project's swarm.

    volunteer host (this process: no torch)  ->  hivemind process (host_worker: DHT + auxiliary optimizer)
          |  keeps the peers file on the Hub fresh, serves GET /peers and /swarm, logs the swarm's metrics,
          |  uploads checkpoints
          v
    the Hub, volunteers, the author's terminal

The host has a persistent identity (``identity.key`` in its data directory) and, by default, fixed ports, so
its address survives restarts. It joins the averaging rounds as an auxiliary peer (no compute), keeps a copy
of the swarm's state that it serves to newcomers, and reads the volunteers' signed leaderboard records. Every
``--refresh-every`` it works out the peer list (its own addresses first, then the other long-lived peers that
still answer) and rewrites the project's peers file on the Hub when that set changes. SIGTERM or Ctrl-C stops
it within 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from volunteer.authoring.errors import HubWriteError
from volunteer.authoring.options import checked, duration, positive_int, repo_id
from volunteer.constants import ENV_PREFIX, env
from volunteer.datadir import DataDir, atomic_write_json, safe_name
from volunteer.errors import ConfigError, VolunteerError
from volunteer.peers import parse_listen_addresses, parse_peers
from volunteer.protocol import (
    CheckpointSaved,
    Command,
    Done,
    Failed,
    HostSwarm,
    Joined,
    Note,
    Ping,
    Reachable,
    WorkerMessage,
)
from volunteer.settings import ArgumentParser, Settings, add_run_options, parse_port, settings_from_namespace
from volunteer.stats import LeaderboardEntry

log = logging.getLogger(__name__)

DEFAULT_PORT = 31337
DEFAULT_HOST_MADDRS = (f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}", f"/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1")
"""Fixed ports, so that a restarted host has the same address (a volunteer's client picks random ones)."""
DEFAULT_PEERS_PORT = 8472
STOP_GRACE = 7.5
"""Seconds the hivemind process gets to leave the swarm before its process group is killed."""
FRESH_SECONDS = 30.0
"""A volunteer whose leaderboard record is older than this is not counted as training now."""
MAX_BACKOFF = 60.0
HEALTHY_RUN = 600.0
"""A hivemind process that ran this long before stopping is restarted at once, not after the grown back-off."""


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


@dataclass
class SwarmView:
    """What the host knows of the swarm: the latest report of its hivemind process, and everyone it has seen."""

    peer_id: str = ""
    addresses: tuple[str, ...] = ()
    global_epoch: int = 0
    state_epoch: int = 0
    num_peers: int = 0
    num_clients: int = 0
    samples_accumulated: int = 0
    target_batch_size: int = 0
    eta_next_step: float | None = None
    averaging_rounds: int = 0
    """Averaging rounds (of gradients or parameters) the host took part in."""
    gradient_rounds: int = 0
    parameter_rounds: int = 0
    last_group_size: int = 0
    leaderboard: tuple[LeaderboardEntry, ...] = ()
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every volunteer seen since the host started, by peer id: nickname, samples (highest seen), last seen."""
    checkpoints: list[CheckpointSaved] = field(default_factory=list)

    def fresh(self, now: float | None = None) -> list[LeaderboardEntry]:
        now = time.time() if now is None else now
        return [e for e in self.leaderboard if now - e.last_seen < FRESH_SECONDS]

    def update(self, report: HostSwarm) -> None:
        for name in (f.name for f in fields(report)):
            setattr(self, name, getattr(report, name))
        for entry in self.leaderboard:
            known = self.seen.setdefault(entry.peer_id, {"nickname": entry.nickname, "samples": 0})
            known.update(
                nickname=entry.nickname,
                samples=max(known["samples"], entry.samples),
                last_seen=max(known.get("last_seen", 0.0), entry.last_seen),
            )

    def summary(self) -> dict[str, Any]:
        fresh = self.fresh()
        return {
            "global_epoch": self.global_epoch,
            "state_epoch": self.state_epoch,
            "num_peers": self.num_peers,
            "num_clients": self.num_clients,
            "samples_accumulated": self.samples_accumulated,
            "target_batch_size": self.target_batch_size,
            "eta_next_step": self.eta_next_step,
            "volunteers_training": len(fresh),
            "swarm_samples_per_second": sum(e.samples_per_second for e in fresh),
            "volunteers_seen": len(self.seen),
            "samples_seen": sum(v["samples"] for v in self.seen.values()),
            "averaging_rounds": self.averaging_rounds,
            "gradient_rounds": self.gradient_rounds,
            "parameter_rounds": self.parameter_rounds,
            "last_group_size": self.last_group_size,
        }


class HostLog:
    """The host's output: an event or status line at a time, as text or JSON lines (like the headless client)."""

    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        self.json = log_format == "json"
        self.stream = stream or sys.stdout

    def write(self, kind: str, text: str, **data: Any) -> None:
        now = time.time()
        if self.json:
            line = json.dumps(
                {"type": kind, "time": now, **data}
                if data
                else {"type": "event", "time": now, "event": kind, "message": text}
            )
        else:
            line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))} [{kind}] {text}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away; the host goes on
            pass


class Host:
    """The supervisor: prepares the project, runs the hivemind process, and keeps the peer list fresh."""

    def __init__(self, options: HostOptions, data_dir: DataDir, out: HostLog | None = None) -> None:
        self.options = options
        self.settings = options.settings
        self.data_dir = data_dir
        self.out = out or HostLog(options.settings.log_format)
        self.view = SwarmView()
        self.peers: tuple[str, ...] = ()
        """The peer list as the host last worked it out (served at /peers)."""
        self.peers_file: dict[str, Any] = {}
        """The peers file on the Hub as last read or written: path, commit, addresses."""
        self.prepared: Any = None
        self._stop = threading.Event()
        self._hard_stop = False
        self._signals = 0
        self._commands: Any = None
        self._replies: queue.Queue[Reachable] = queue.Queue()
        self._ping_ids = itertools.count(1)
        self._fatal: VolunteerError | None = None
        self._uploads: queue.Queue[CheckpointSaved] = queue.Queue()

    # -- output ----------------------------------------------------------------------------------------------

    def event(self, kind: str, message: str) -> None:
        self.out.write(kind, message)

    def status_line(self) -> None:
        s = self.view.summary()
        if self.out.json:
            self.out.write("status", "", **s)
            return
        fresh = sorted(self.view.fresh(), key=lambda e: -e.samples)
        names = ", ".join(e.nickname for e in fresh[:5]) + (" ..." if len(fresh) > 5 else "")
        eta_seconds = s["eta_next_step"]
        eta = f", next step in {eta_seconds:.0f} s" if eta_seconds is not None and eta_seconds < 86400 else ""
        parts = [
            f"global step {s['global_epoch']}",
            f"{_count(s['volunteers_training'], 'volunteer')} training" + (f" ({names})" if names else ""),
            f"{s['samples_accumulated']}/{s['target_batch_size']} samples{eta}",
            f"{s['swarm_samples_per_second']:,.1f} samples/s",
            f"{s['samples_seen']:,} swarm samples from {_count(s['volunteers_seen'], 'volunteer')} seen",
            f"averaging rounds helped {s['averaging_rounds']}",
        ]
        self.out.write("swarm", " | ".join(parts))

    # -- running ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        from volunteer.project import prepare_project

        self._install_signal_handlers()
        self.prepared = prepare_project(self.settings, self.data_dir)
        project = self.prepared.project
        for warning in self.prepared.warnings:
            self.event("warning", warning)
        self.data_dir.check_identity()
        keeper = self._make_keeper()
        self.event(
            "starting",
            f"hosting {_shown(project)} ({project.manifest.name!r}, run {project.manifest.run_id}; its code runs "
            f"here: consent {self.prepared.consent}); data directory {self.data_dir.root}",
        )
        if keeper.hub_file is not None:
            self.event("peers_file", f"keeping {project.manifest.peers.file} on {project.repo} (main) fresh")
        server = None
        if self.options.peers_port:
            server = _HostServer(self, self.options.peers_bind, self.options.peers_port).start()
            self.event("serving", f"serving the peer list at http://{self.options.peers_bind}:{server.port}/peers")
        if self.options.checkpoint_repo:
            threading.Thread(target=self._upload_loop, name="volunteer-host-upload", daemon=True).start()
        try:
            return self._supervise(keeper)
        finally:
            self._stop.set()
            if server is not None:
                server.stop()

    def _make_keeper(self) -> PeersKeeper:
        from volunteer.authoring.peerlist import HubPeersFile, PeerListPlanner

        project = self.prepared.project
        manifest = project.manifest
        update = self.options.update_peers_file
        if update and project.kind != "hub":
            raise ConfigError(
                "--update-peers-file needs a project on the Hub; this one is a local folder",
                "start the host with the project's Hub id (--project org/name), or serve the list with --peers-port",
            )
        if update and manifest.peers.file is None:
            raise ConfigError(
                f"--update-peers-file: {project.where()} names no peers file",
                'add [peers] file = "peers.txt" to the manifest and publish again, or serve the list with --peers-port',
            )
        if update is None:
            update = project.kind == "hub" and manifest.peers.file is not None
        hub_file = None
        if update:
            from volunteer.authoring.hubwrite import hub_api

            api, endpoint = hub_api(self.settings.endpoint)
            hub_file = HubPeersFile(api, endpoint, project.repo, self.data_dir.hub_cache)
        baseline = [*self.prepared.peers.addresses, *self.options.extra_peers]
        return PeersKeeper(self, hub_file, PeerListPlanner(self.options.drop_after), baseline)

    def _supervise(self, keeper: PeersKeeper) -> int:
        restarts, backoff = 0, 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            outcome = self._run_worker(keeper)
            if self._fatal is not None:
                raise self._fatal
            if self._stop.is_set():
                break
            if time.monotonic() - started > HEALTHY_RUN:
                backoff = 1.0
            restarts += 1
            self.event("restarting", f"the hivemind process stopped ({outcome}); restart {restarts} in {backoff:.0f} s")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        self.event("stopped", "the host left the swarm")
        return 0

    def _run_worker(self, keeper: PeersKeeper) -> str:
        from volunteer.authoring.host_worker import HostSpec, run_host_worker

        options, settings = self.options, self.settings
        ctx = multiprocessing.get_context("spawn")
        outbox, self._commands = ctx.Queue(), ctx.Queue()
        spec = HostSpec(
            prepared=self.prepared,
            identity_path=str(self.data_dir.identity_file),
            initial_peers=tuple(dict.fromkeys([*keeper.known_peers(), *parse_peers(settings.initial_peers)])),
            host_maddrs=tuple(parse_listen_addresses(settings.host_maddrs) or DEFAULT_HOST_MADDRS),
            announce_maddrs=tuple(parse_listen_addresses(settings.announce_maddrs)),
            use_relay=settings.use_relay,
            parent_pid=os.getpid(),
            log_path=str(self.data_dir.root / "logs" / "host.log"),
            checkpoint_dir=str(options.checkpoint_dir) if options.checkpoint_dir else None,
            checkpoint_every=options.checkpoint_every if options.checkpoint_dir else None,
            keep_checkpoints=options.keep_checkpoints,
            state_every=options.state_every,
        )
        process = ctx.Process(target=run_host_worker, args=(spec, outbox, self._commands), name="volunteer-host")
        process.start()
        outcome = "exited"
        stop_sent: float | None = None
        last_status = time.monotonic()
        try:
            while True:
                try:
                    message = outbox.get(timeout=0.2)
                except queue.Empty:
                    message = None
                if message is not None:
                    outcome = self._handle(message, keeper) or outcome
                now = time.monotonic()
                if self._fatal is not None and not self._stop.is_set():
                    self._stop.set()
                if self._stop.is_set() and stop_sent is None:
                    self._commands.put(Command.STOP)
                    stop_sent = now
                if self._hard_stop or (stop_sent is not None and now - stop_sent > STOP_GRACE):
                    _kill_group(process.pid)
                if not process.is_alive():
                    with contextlib.suppress(Exception):
                        while True:
                            outcome = self._handle(outbox.get(timeout=0.05), keeper) or outcome
                    break
                if self.view.peer_id and now - last_status >= options.log_every:
                    last_status = now
                    self.status_line()
                    self._save_volunteers()
        finally:
            _kill_group(process.pid)  # hivemind's DHT, averagers and p2pd, if any are left
            process.join(timeout=5)
            keeper.pause()
        return outcome if process.exitcode in (0, None) else f"{outcome}, exit status {process.exitcode}"

    def _handle(self, message: WorkerMessage, keeper: PeersKeeper) -> str | None:
        if isinstance(message, Joined):
            from volunteer.authoring.peerlist import all_private, own_addresses

            self.view.peer_id = message.peer_id
            self.view.addresses = tuple(own_addresses(message.addresses))
            joined = message.initial_peers
            how = f"joined through {joined} listed peer(s)" if joined else "no other peer listed: a new swarm"
            self.event(
                "up", f"host peer {self.view.peer_id} is up ({how}); reachable at {' '.join(self.view.addresses)}"
            )
            if all_private(self.view.addresses) and not all(a.startswith("/ip4/127.") for a in self.view.addresses):
                self.event(
                    "warning",
                    "every address of this host is private: volunteers elsewhere cannot reach it; pass "
                    f"--announce-maddrs /ip4/<public IP>/tcp/{DEFAULT_PORT} (and forward that port)",
                )
            keeper.resume()
        elif isinstance(message, HostSwarm):
            self.view.update(message)
        elif isinstance(message, Note):
            self.event(message.kind, message.message)
        elif isinstance(message, Reachable):
            self._replies.put(message)
        elif isinstance(message, CheckpointSaved):
            self.view.checkpoints = [*self.view.checkpoints, message][-10:]
            self.event("checkpoint", f"saved the swarm's model at global step {message.global_step}: {message.path}")
            if self.options.checkpoint_repo:
                self._uploads.put(message)
        elif isinstance(message, Failed):
            if message.fatal:
                self._fatal = VolunteerError(message.message, message.hint)
            else:
                self.event("error", message.message)
            return message.message
        elif isinstance(message, Done):
            return "stopped"
        return None

    def ping(self, addresses: Sequence[str], timeout: float = 30.0) -> dict[str, bool]:
        """Ask the hivemind process which of ``addresses``' peers answer (unknown ones are left out)."""
        if not addresses or self._commands is None:
            return {}
        request = next(self._ping_ids)
        self._commands.put(Ping(request, tuple(addresses)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                reply = self._replies.get(timeout=0.2)
            except queue.Empty:
                continue
            if reply.request == request:
                return dict(reply.answered)
        return {}

    def swarm_json(self) -> dict[str, Any]:
        """What ``GET /swarm`` answers."""
        project = self.prepared.project if self.prepared is not None else None
        return {
            "project": _shown(project) if project else None,
            "run_id": project.manifest.run_id if project else None,
            "peer_id": self.view.peer_id,
            "addresses": list(self.view.addresses),
            "peers": list(self.peers),
            "peers_file": self.peers_file,
            "swarm": self.view.summary(),
            "leaderboard": [asdict(e) for e in self.view.leaderboard],
            "volunteers_seen": self.view.seen,
            "checkpoints": [asdict(c) for c in self.view.checkpoints],
        }

    def fail(self, error: VolunteerError) -> None:
        """Stop the host with ``error`` (a problem only the author can fix, e.g. no write access)."""
        self._fatal = error
        self._stop.set()

    # -- checkpoints to the Hub --------------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        from volunteer.authoring.hubwrite import hub_api, hub_errors

        repo = self.options.checkpoint_repo
        assert repo is not None
        api, endpoint = hub_api(self.settings.endpoint)
        created = False
        while not self._stop.is_set():
            try:
                message = self._uploads.get(timeout=0.5)
            except queue.Empty:
                continue
            while not self._uploads.empty():  # only the newest matters
                message = self._uploads.get_nowait()
            if not Path(message.path).is_file():
                self.event("warning", f"could not upload {message.path} to {repo}: it was removed meanwhile")
                continue
            try:
                if not created:
                    with hub_errors(api, endpoint, repo, "create the checkpoint repository"):
                        api.create_repo(repo, exist_ok=True)
                    created = True
                with hub_errors(api, endpoint, repo, "upload a checkpoint to"):
                    commit = api.upload_file(
                        path_or_fileobj=message.path,
                        path_in_repo="checkpoint.pt",
                        repo_id=repo,
                        commit_message=f"checkpoint of run {self.prepared.project.manifest.run_id} at global step "
                        f"{message.global_step}",
                    )
            except HubWriteError as e:
                self.event("warning", f"{e.message} ({e.hint})")
                continue
            except Exception as e:  # e.g. the file was pruned meanwhile: the next checkpoint is uploaded anyway
                self.event("warning", f"could not upload {message.path} to {repo}: {type(e).__name__}: {e}")
                continue
            self.event("checkpoint", f"uploaded global step {message.global_step} to {repo} at commit {commit.oid}")

    def _save_volunteers(self) -> None:
        """Everyone seen, in the data directory: the swarm's contributors, as this host saw them."""
        run_id = self.prepared.project.manifest.run_id
        path = self.data_dir.root / "swarm" / f"{safe_name(run_id)}.json"
        with contextlib.suppress(OSError):
            atomic_write_json(path, {"run_id": run_id, "summary": self.view.summary(), "volunteers": self.view.seen})

    # -- signals ---------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, frame: Any) -> None:
            self._signals += 1
            self._stop.set()
            if self._signals > 1:
                self._hard_stop = True

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


class PeersKeeper(threading.Thread):
    """Works out the peer list every ``refresh_every`` and rewrites the peers file on the Hub when it changes.

    Runs while the hivemind process is up (it needs the host's addresses and its pings).
    """

    def __init__(self, host: Host, hub_file: Any, planner: Any, baseline: Sequence[str]) -> None:
        super().__init__(name="volunteer-host-peers", daemon=True)
        self.host = host
        self.hub_file = hub_file
        self.planner = planner
        self.baseline = list(dict.fromkeys(baseline))
        """Candidates when the list is not read from the Hub: the project's peers and --extra-peers."""
        self.extra = list(host.options.extra_peers)
        self.candidates: list[str] = list(self.baseline)
        self._active = threading.Event()
        self._written = False
        self._warned: set[str] = set()

    def known_peers(self) -> list[str]:
        """Peers to bootstrap from (the host's own addresses are left out by the hivemind process)."""
        return [*self.host.peers, *self.candidates]

    def resume(self) -> None:
        self._active.set()
        if not self.is_alive():
            self.start()

    def pause(self) -> None:
        self._active.clear()

    def run(self) -> None:
        host = self.host
        while not host._stop.is_set():
            if not self._active.wait(0.5):
                continue
            try:
                self.sync_once()
            except HubWriteError as e:
                if not self._written and e.status in (401, 403, 404):
                    host.fail(
                        HubWriteError(
                            e.message, f"{e.hint}; or start the host with --no-update-peers-file", status=e.status
                        )
                    )
                    return
                self._warn_once(e.message, f"{e.message}; trying again in {host.options.refresh_every:g} s")
            except Exception as e:  # never let the keeper die: the list is the swarm's way in
                log.exception("peer list update failed")
                self._warn_once(repr(e), f"peer list update failed: {type(e).__name__}: {e}")
            host._stop.wait(host.options.refresh_every)

    def sync_once(self) -> None:
        host = self.host
        own = list(host.view.addresses)
        own_id = host.view.peer_id
        if not own_id:
            return
        remote = self.hub_file.read() if self.hub_file is not None else None
        if remote is not None:
            self.candidates = [*remote.addresses, *self.extra]
        others = self.planner.others(own_id, self.candidates)
        answered = host.ping([a for addresses in others.values() for a in addresses]) if others else {}
        desired = tuple(self.planner.plan(own, others, answered))
        for peer_id in self.planner.dropped(others):
            self._warn_once(
                f"drop {peer_id}", f"peer {peer_id} has not answered for a while: leaving it out of the list"
            )
        if desired != host.peers:
            host.peers = desired
        if remote is None:
            return
        manifest_run_id = host.prepared.project.manifest.run_id
        if remote.path is None:
            self._warn_once(
                "no path", f"the manifest on main names no peers file: not updating it (commit {remote.sha[:7]})"
            )
            return
        if remote.run_id is not None and remote.run_id != manifest_run_id:
            self._warn_once(
                f"run {remote.run_id}",
                f"main now trains run {remote.run_id}, this host serves run {manifest_run_id}: not rewriting its "
                "peers file (start a host for the new version)",
            )
            return
        host.peers_file = {"path": remote.path, "commit": remote.sha, "addresses": list(remote.addresses)}
        if set(remote.addresses) == set(desired) and remote.exists:
            self._written = True  # nothing to do: it is already right
            return
        from volunteer.authoring.peerlist import render_peers_file

        manifest = host.prepared.project.manifest
        text = render_peers_file(desired, name=manifest.name, run_id=manifest_run_id, host_peer_id=own_id)
        try:
            sha = self.hub_file.write(
                text,
                remote.path,
                remote.sha,
                f"volunteer host: {remote.path} lists {len(desired)} address{'es' if len(desired) != 1 else ''}",
                "\n".join(desired),
            )
        except HubWriteError as e:
            if e.status == 412:
                return  # the branch moved meanwhile: read it again at the next check
            raise
        self._written = True
        host.peers_file = {"path": remote.path, "commit": sha, "addresses": list(desired)}
        added = [a for a in desired if a not in remote.addresses]
        removed = [a for a in remote.addresses if a not in desired]
        change = "; ".join(
            part
            for part in (
                f"added {' '.join(added)}" if added else "",
                f"removed {' '.join(removed)}" if removed else "",
            )
            if part
        )
        host.event("peers_file", f"updated {remote.path} on the Hub at commit {sha} ({change or 'rewritten'})")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.host.event("warning", message)


class _HostServer:
    """``GET /peers`` (text, one multiaddress a line), ``GET /swarm`` (JSON) and ``GET /healthz``."""

    def __init__(self, host: Host, bind: str, port: int) -> None:
        owner = host

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/peers":
                    if not owner.peers:
                        self._send(503, b"# the host is starting: no address yet\n", "text/plain; charset=utf-8")
                    else:
                        self._send(200, ("\n".join(owner.peers) + "\n").encode(), "text/plain; charset=utf-8")
                elif path == "/swarm":
                    self._send(200, json.dumps(owner.swarm_json(), indent=2).encode(), "application/json")
                elif path == "/healthz":
                    self._send(200 if owner.view.peer_id else 503, b"ok\n", "text/plain")
                else:
                    self._send(404, b"not found: try /peers or /swarm\n", "text/plain")

        try:
            self._server = ThreadingHTTPServer((bind, port), Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve the peer list on {bind}:{port}: {e.strerror or e}",
                "choose a free port with --peers-port, or another address with --peers-bind",
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> _HostServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shown(project: Any) -> str:
    return f"{project.repo}@{project.revision[:7]}" if project.kind == "hub" else project.repo


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- the command ----------------------------------------------------------------------------------------------


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


def main(argv: Sequence[str]) -> int:
    options = parse_host_args(argv)
    settings = options.settings
    data_dir = DataDir.open(settings.data_dir, name="host")
    with data_dir.lock():
        return Host(options, data_dir).run()


__all__ = ["Host", "HostOptions", "PeersKeeper", "main"]
