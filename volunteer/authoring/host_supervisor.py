"""The host's supervisor: prepares the project, runs the hivemind process (authoring/host_worker) under
:mod:`volunteer.supervisor`, keeps the peer list fresh (authoring/host_peers), serves it (authoring/host_server),
logs the swarm and uploads checkpoints."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from volunteer.authoring.errors import HubWriteError
from volunteer.authoring.host_options import DEFAULT_PORT, HostOptions
from volunteer.authoring.host_peers import PeersKeeper
from volunteer.authoring.host_server import HostServer
from volunteer.authoring.host_view import HostLog, SwarmView
from volunteer.datadir import DataDir, atomic_write_json, safe_name
from volunteer.errors import ConfigError, VolunteerError
from volunteer.protocol import (
    CheckpointSaved,
    Done,
    Failed,
    HostSwarm,
    Joined,
    Note,
    Ping,
    Reachable,
    WorkerMessage,
)
from volunteer.supervisor import Backoff, StopSignals, WorkerProcess, drain
from volunteer.swarm.multiaddrs import parse_peers


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
        self.stopping = threading.Event()
        """Set to stop the host: by a signal, by a fatal error, or by the caller."""
        self._signals = StopSignals(self.stopping.set)
        self._worker: WorkerProcess | None = None
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

        self._signals.install()
        self.prepared = prepare_project(self.settings, self.data_dir)
        project = self.prepared.project
        for warning in self.prepared.warnings:
            self.event("warning", warning)
        mode = project.manifest.training.mode
        if mode != "sync":
            raise ConfigError(
                f"volunteer host runs an auxiliary peer for synchronous training; this project's training mode "
                f"is {mode!r}",
                "run the volunteers without a host (the first volunteer starts the swarm; list long-lived "
                'volunteers\' addresses in the peers file), or use mode = "sync"',
            )
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
            server = HostServer(self, self.options.peers_bind, self.options.peers_port).start()
            self.event("serving", f"serving the peer list at http://{self.options.peers_bind}:{server.port}/peers")
        if self.options.checkpoint_repo:
            threading.Thread(target=self._upload_loop, name="volunteer-host-upload", daemon=True).start()
        try:
            return self._supervise(keeper)
        finally:
            self.stopping.set()
            if server is not None:
                server.stop()

    def _make_keeper(self) -> PeersKeeper:
        from volunteer.authoring.peers_file import HubPeersFile, PeerListPlanner

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
        restarts, backoff = 0, Backoff()
        while not self.stopping.is_set():
            started = time.monotonic()
            outcome = self._run_worker(keeper)
            if self._fatal is not None:
                raise self._fatal
            if self.stopping.is_set():
                break
            backoff.ran(time.monotonic() - started)
            restarts += 1
            wait = backoff.next()
            self.event("restarting", f"the hivemind process stopped ({outcome}); restart {restarts} in {wait:.0f} s")
            self.stopping.wait(wait)
        self.event("stopped", "the host left the swarm")
        return 0

    def _run_worker(self, keeper: PeersKeeper) -> str:
        from volunteer.authoring.host_worker import HostSpec, run_host_worker

        spec = HostSpec(
            prepared=self.prepared,
            options=self.options,
            identity_path=str(self.data_dir.identity_file),
            initial_peers=tuple(dict.fromkeys([*keeper.known_peers(), *parse_peers(self.settings.initial_peers)])),
            parent_pid=os.getpid(),
            log_path=str(self.data_dir.root / "logs" / "host.log"),
        )
        worker = self._worker = WorkerProcess(run_host_worker, spec, "volunteer-host")
        outcome = "exited"
        last_status = time.monotonic()

        def on_message(message: WorkerMessage) -> None:
            nonlocal outcome
            outcome = self._handle(message, keeper) or outcome

        def tick() -> bool:
            nonlocal last_status
            if self._fatal is not None:
                self.stopping.set()
            if self.view.peer_id and time.monotonic() - last_status >= self.options.log_every:
                last_status = time.monotonic()
                self.status_line()
                self._save_volunteers()
            return self.stopping.is_set()

        try:
            worker.supervise(on_message, tick, lambda: self._signals.hard)
        finally:
            keeper.pause()
        return outcome if worker.exitcode in (0, None) else f"{outcome}, exit status {worker.exitcode}"

    def _handle(self, message: WorkerMessage, keeper: PeersKeeper) -> str | None:
        if isinstance(message, Joined):
            self._on_joined(message)
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

    def _on_joined(self, message: Joined) -> None:
        from volunteer.authoring.peers_file import all_private, own_addresses

        self.view.peer_id = message.peer_id
        self.view.addresses = tuple(own_addresses(message.addresses))
        joined = message.initial_peers
        how = f"joined through {joined} listed peer(s)" if joined else "no other peer listed: a new swarm"
        self.event("up", f"host peer {self.view.peer_id} is up ({how}); reachable at {' '.join(self.view.addresses)}")
        if all_private(self.view.addresses) and not all(a.startswith("/ip4/127.") for a in self.view.addresses):
            self.event(
                "warning",
                "every address of this host is private: volunteers elsewhere cannot reach it; pass "
                f"--announce-maddrs /ip4/<public IP>/tcp/{DEFAULT_PORT} (and forward that port)",
            )

    def ping(self, addresses: Sequence[str], timeout: float = 30.0) -> dict[str, bool]:
        """Ask the hivemind process which of ``addresses``' peers answer (unknown ones are left out)."""
        worker = self._worker
        if not addresses or worker is None:
            return {}
        request = next(self._ping_ids)
        worker.send(Ping(request, tuple(addresses)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
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
        self.stopping.set()

    # -- checkpoints to the Hub --------------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        from volunteer.authoring.hubwrite import hub_api, hub_errors

        repo = self.options.checkpoint_repo
        assert repo is not None
        api, endpoint = hub_api(self.settings.endpoint)
        created = False
        while not self.stopping.is_set():
            try:
                message = self._uploads.get(timeout=0.5)
            except queue.Empty:
                continue
            message = [message, *drain(self._uploads)][-1]  # only the newest matters
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shown(project: Any) -> str:
    return f"{project.repo}@{project.revision[:7]}" if project.kind == "hub" else project.repo
