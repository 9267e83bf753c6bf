"""The host's hivemind process: a DHT with a fixed identity and an auxiliary ``hivemind.Optimizer``.

It runs in a process (and process group) of its own, started by :mod:`volunteer.authoring.host_supervisor` through
:mod:`volunteer.supervisor` (as the client's training process is), which can kill everything hivemind started with
one signal.

An auxiliary optimizer computes nothing: each ``step()`` joins the swarm's averaging rounds as a reducer
(``Averaged gradients with N peers`` in its log), and says so in its gradient rounds' data, so that a volunteer in
a round with nobody but the host is not credited for it (:mod:`volunteer.swarm.auxiliary`). It does not receive
the averaged parameters, so after every global step the host downloads the swarm's state from a volunteer; it
then serves that state to newcomers (``allow_state_sharing``) with a priority just below the volunteers' own, so
a newcomer takes the state from a volunteer when one is there and from the host when none is, for instance after
everyone left for the night.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from volunteer.authoring.host_options import DEFAULT_HOST_MADDRS, HostOptions
from volunteer.errors import SwarmError, VolunteerError
from volunteer.project.loader import build_project
from volunteer.protocol import (
    CheckpointSaved,
    Command,
    Done,
    ErrorCategory,
    Failed,
    HostSwarm,
    Joined,
    Note,
    Ping,
    Reachable,
    WorkerMessage,
)
from volunteer.stats import LeaderboardEntry
from volunteer.supervisor import drain, run_worker_body
from volunteer.swarm.multiaddrs import parse_listen_addresses

EXIT_CRASH = 1
EXIT_ERROR = 3
STATE_PRIORITY_OFFSET = 0.5
"""The host shares state with priority ``epoch - 0.5``: below a volunteer at the same global step."""
_AVERAGED = re.compile(r"Averaged (gradients|parameters) with (\d+) peers")


@dataclass(frozen=True)
class HostSpec:
    """Everything the host's hivemind process needs; picklable."""

    prepared: Any
    """A ``volunteer.project.PreparedProject``."""
    options: HostOptions
    """The host's options: listen and announce addresses, relay, checkpoints, how often to refresh state."""
    identity_path: str
    initial_peers: tuple[str, ...]
    parent_pid: int
    log_path: str
    step_interval: float = 0.5
    """Seconds between the auxiliary optimizer's steps."""
    report_interval: float = 2.0
    leaderboard_interval: float = 5.0
    ping_timeout: float = 5.0


def run_host_worker(spec: HostSpec, outbox: Any, commands: Any) -> None:
    """Process entry point (the host's process keeps the Hub token for its uploads; this one drops it)."""
    worker = _HostWorker(spec, outbox, commands)
    run_worker_body(spec.parent_pid, spec.log_path, outbox, worker.run, partial(_failure, worker))


def _failure(worker: _HostWorker, e: BaseException) -> tuple[Failed, int]:
    if isinstance(e, VolunteerError):  # before the DHT is up, a restart would fail the same way
        return Failed(ErrorCategory.ERROR, e.message, e.hint, fatal=not worker.up), EXIT_ERROR
    message = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    hint = f"the host's hivemind process crashed; its log is {worker.spec.log_path}"
    return Failed(ErrorCategory.CRASH, message, hint), EXIT_CRASH


class _AveragingCounter(logging.Handler):
    """Counts hivemind's "Averaged gradients/parameters with N peers" lines: the rounds this auxiliary peer was in."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.rounds = {"gradients": 0, "parameters": 0}
        self.groups = {"gradients": 0, "parameters": 0}
        """The size of the latest group, by what was averaged."""

    @property
    def total(self) -> int:
        return sum(self.rounds.values())

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            match = _AVERAGED.search(record.getMessage())
            if match:
                self.rounds[match.group(1)] += 1
                self.groups[match.group(1)] = int(match.group(2))


class _HostWorker:
    def __init__(self, spec: HostSpec, outbox: Any, commands: Any) -> None:
        self.spec = spec
        self.outbox = outbox
        self.commands = commands
        self.up = False
        self.stop = threading.Event()
        self.state_epoch = 0
        """The global step of the parameters this host holds (and serves)."""
        self.saved_epoch: int | None = None
        self.last_checkpoint = time.monotonic()
        self.last_refresh = 0.0
        self.entries: tuple[LeaderboardEntry, ...] = ()
        self.pings: queue.Queue[Ping] = queue.Queue()
        self.counter = _AveragingCounter()

    def emit(self, message: WorkerMessage) -> None:
        self.outbox.put(message)

    def event(self, kind: str, message: str) -> None:
        self.emit(Note(kind, message))

    # -- start -------------------------------------------------------------------------------------------------

    def run(self) -> None:
        import hivemind

        from volunteer.swarm.auxiliary import mark_auxiliary_rounds
        from volunteer.swarm.hivemind_patches import apply_group_patches, apply_hivemind_patches
        from volunteer.swarm.leaderboard import record_validators

        spec, settings = self.spec, self.spec.options.settings
        manifest = spec.prepared.project.manifest
        built = build_project(spec.prepared.project)
        self.module = built.module
        optimizer = single_optimizer(spec.prepared.project, built.module)
        own_id = ensure_identity(spec.identity_path)
        initial = [a for a in spec.initial_peers if not a.endswith(f"/p2p/{own_id}")]
        validators, _ = record_validators(manifest.run_id)
        try:
            self.dht = hivemind.DHT(
                initial_peers=initial,
                host_maddrs=parse_listen_addresses(settings.host_maddrs) or list(DEFAULT_HOST_MADDRS),
                announce_maddrs=parse_listen_addresses(settings.announce_maddrs) or None,
                identity_path=spec.identity_path,
                use_relay=settings.use_relay,
                client_mode=False,
                ensure_bootstrap_success=False,  # a host must come up even when every listed peer is gone
                record_validators=validators,
                start=True,
            )
        except Exception as e:
            raise SwarmError(
                f"could not start the host's hivemind DHT: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                "check --host-maddrs (is the port free, or is another host using this --data-dir?) and the network",
            ) from e
        from volunteer.swarm import reachability

        reachability.serve(self.dht)  # volunteers joining through the host ask it whether they can be dialled
        addresses = [str(a) for a in self.dht.get_visible_maddrs()]
        self.emit(Joined(str(self.dht.peer_id), tuple(addresses), initial_peers=len(initial)))
        self.up = True

        logging.getLogger("hivemind").addHandler(self.counter)
        kwargs = dict(manifest.strategy_kwargs())
        kwargs.pop("reuse_grad_buffers", None)  # an auxiliary peer accumulates no gradients
        # the training mode's arguments are the strategy's (the supervisor refused any mode but sync); PowerSGD
        # rounds need the same averager on every peer that joins them
        mode_kwargs = manifest.mode_kwargs()
        for key in mode_kwargs:
            kwargs.pop(key)
        if "powersgd_rank" in mode_kwargs:
            from volunteer.swarm.modes import powersgd_averager

            kwargs["grad_averager_factory"] = powersgd_averager(mode_kwargs["powersgd_rank"])
        apply_hivemind_patches()  # before hivemind forks its averagers, which inherit it
        apply_group_patches()  # likewise: as a leader, assemble once the training peers it expects joined
        self.opt = hivemind.Optimizer(
            dht=self.dht,
            optimizer=optimizer,
            auxiliary=True,
            client_mode=False,
            verbose=True,
            averager_opts=dict(allow_state_sharing=True),
            delay_state_averaging=False,  # the host does nothing else: it can average state in the foreground
            offload_optimizer=False,
            delay_optimizer_step=False,
            **kwargs,
        )
        # a round with nobody but the host trained nobody: say so, and the volunteer in it is not credited
        mark_auxiliary_rounds(self.opt.grad_averager)
        self.opt.load_state_from_peers()
        self.state_epoch = self.opt.local_epoch
        if self.state_epoch > 0:
            self.event("state_loaded", f"loaded the swarm's state at global step {self.state_epoch}")
        else:
            self._resume()
        self._share_state()
        threading.Thread(target=self._watch_swarm, name="volunteer-host-watch", daemon=True).start()
        try:
            self._loop()
        finally:
            self.stop.set()
            self._shutdown()

    def _resume(self) -> None:
        """With nobody holding state, start from the latest checkpoint, if any."""
        from volunteer.authoring.checkpoints import list_checkpoints, load_checkpoint

        spec, options = self.spec, self.spec.options
        if not options.checkpoint_dir:
            return
        run_id = spec.prepared.project.manifest.run_id
        found = list_checkpoints(options.checkpoint_dir, run_id)
        if not found:
            return
        step, path = found[-1]
        try:
            data = load_checkpoint(path)
            self.module.load_state_dict(data["model"])
            self.opt.load_state_dict(data["optimizer"])
            inner = self.opt.state_averager.optimizer
            if any(not inner.state.get(p) for group in inner.param_groups for p in group["params"]):
                # statistics missing (a checkpoint made by hand): peers expect them, as hivemind creates them
                from hivemind.optim.state_averager import initialize_optimizer_state_

                initialize_optimizer_state_(inner)
        except Exception as e:
            self.event("warning", f"could not resume from checkpoint {path}: {type(e).__name__}: {e}")
            return
        self.opt.tracker.report_local_progress(self.opt.local_epoch, 0)
        self.state_epoch = self.saved_epoch = self.opt.local_epoch
        self.event("resumed", f"no peer had newer state: resumed from checkpoint {path} (global step {step})")

    # -- the loop -----------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        spec, options = self.spec, self.spec.options
        last_report = 0.0
        rounds = dict(self.counter.rounds)
        while not self.stop.is_set():
            self._handle_commands()
            if self.stop.is_set():
                break
            self.opt.step()  # auxiliary: helps the averaging rounds of the global step, if one is due
            if self.counter.rounds != rounds:
                done = [
                    f"{what} with {self.counter.groups[what]} peers"
                    for what in rounds
                    if self.counter.rounds[what] > rounds[what]
                ]
                rounds = dict(self.counter.rounds)
                self.event(
                    "averaged",
                    f"helped average {' and '.join(done)} for global step {self.opt.local_epoch} "
                    f"({self.counter.total} rounds so far)",
                )
            stale = self.state_epoch < self.opt.local_epoch
            if stale and time.monotonic() - self.last_refresh >= options.state_every:
                self._refresh_state()
            self._share_state()
            if options.checkpoint_dir and time.monotonic() - self.last_checkpoint >= options.checkpoint_every:
                self._checkpoint(options.checkpoint_dir)
            if time.monotonic() - last_report >= spec.report_interval:
                last_report = time.monotonic()
                self._report()
            self.stop.wait(spec.step_interval)

    def _handle_commands(self) -> None:
        for command in drain(self.commands):
            if command == Command.STOP:
                self.stop.set()
            elif isinstance(command, Ping):
                self.pings.put(command)

    def _refresh_state(self) -> None:
        """Download the swarm's state (an auxiliary peer takes part in averaging but does not receive the result)."""
        self.last_refresh = time.monotonic()
        progress = self.opt.tracker.global_progress
        if progress.num_peers - progress.num_clients <= 0:
            return  # nobody to download it from
        before = self._fingerprint()
        self.opt.load_state_from_peers()
        if self._fingerprint() != before:  # hivemind says nothing when every peer it tried failed
            self.state_epoch = self.opt.local_epoch

    def _fingerprint(self) -> float:
        import torch

        with torch.no_grad():
            return float(sum(float(p.detach().double().sum()) for p in self.module.parameters()))

    def _share_state(self) -> None:
        averager = self.opt.state_averager
        priority = float(self.state_epoch) - STATE_PRIORITY_OFFSET
        if averager.state_sharing_priority != priority:
            averager.state_sharing_priority = priority

    def _checkpoint(self, directory: Path) -> None:
        from volunteer.authoring.checkpoints import save_checkpoint

        spec, options = self.spec, self.spec.options
        self.last_checkpoint = time.monotonic()
        self._refresh_state()
        if self.saved_epoch == self.state_epoch:
            return  # nothing new since the last one
        project = spec.prepared.project
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.opt.state_dict(),
            "project": project.repo,
            "revision": project.revision,
        }
        try:
            path = save_checkpoint(
                directory,
                project.manifest.run_id,
                self.state_epoch,
                state,
                options.keep_checkpoints,
            )
        except OSError as e:
            self.event("warning", f"could not save a checkpoint in {directory}: {e.strerror or e}")
            return
        self.saved_epoch = self.state_epoch
        self.emit(CheckpointSaved(str(path), self.state_epoch))

    def _report(self) -> None:
        from hivemind.utils.timed_storage import get_dht_time

        progress = self.opt.tracker.global_progress
        eta = progress.eta_next_epoch - get_dht_time()
        self.emit(
            HostSwarm(
                global_epoch=max(progress.epoch, self.opt.local_epoch),
                state_epoch=self.state_epoch,
                num_peers=progress.num_peers,
                num_clients=progress.num_clients,
                samples_accumulated=progress.samples_accumulated,
                target_batch_size=progress.target_batch_size,
                eta_next_step=max(0.0, eta) if math.isfinite(eta) else None,
                averaging_rounds=self.counter.total,
                gradient_rounds=self.counter.rounds["gradients"],
                parameter_rounds=self.counter.rounds["parameters"],
                last_group_size=max(self.counter.groups.values()),
                leaderboard=self.entries,
            )
        )

    # -- the swarm, off the loop: leaderboard records and pings ------------------------------------------------

    def _watch_swarm(self) -> None:
        from volunteer.swarm.leaderboard import leaderboard_key, parse_entries

        key = leaderboard_key(self.spec.prepared.project.manifest.run_id)
        last = 0.0
        while not self.stop.is_set():
            try:
                ping = self.pings.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                self.emit(Reachable(ping.request, self._ping(ping.addresses)))
            if time.monotonic() - last >= self.spec.leaderboard_interval:
                last = time.monotonic()
                with contextlib.suppress(Exception):  # the DHT may be busy or shutting down: try again later
                    found = self.dht.get(key, latest=True)
                    board = parse_entries(found.value if found is not None else None, "")
                    self.entries = board.entries

    def _ping(self, addresses: Sequence[str]) -> dict[str, bool]:
        from volunteer.authoring.peers_file import group_by_peer

        targets = [
            (peer_id, [a.rsplit("/p2p/", 1)[0] for a in addrs]) for peer_id, addrs in group_by_peer(addresses).items()
        ]
        if not targets:
            return {}
        try:
            future = self.dht.run_coroutine(partial(_ping_peers, targets=targets, timeout=self.spec.ping_timeout), True)
            return future.result(timeout=self.spec.ping_timeout * 2 + 5)
        except Exception:
            return {}  # unknown: no peer is counted as gone for a failure of our own

    # -- stop ----------------------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.opt.shutdown()
        with contextlib.suppress(Exception):
            self.dht.shutdown()
        self.emit(Done("stopped"))


async def _ping_peers(_dht: Any, node: Any, targets: list[tuple[str, list[str]]], timeout: float) -> dict[str, bool]:
    """Runs in the DHT process: dial each peer at the listed addresses and ask it for its DHT id."""
    import asyncio

    from hivemind.p2p import PeerID
    from hivemind.utils.multiaddr import Multiaddr

    from volunteer.swarm.hivemind_private import dial

    async def one(peer_id_text: str, maddrs: list[str]) -> bool:
        try:
            peer_id = PeerID.from_base58(peer_id_text)
        except Exception:
            return False
        dialling = dial(node.p2p, peer_id, [Multiaddr(m) for m in maddrs])
        if dialling is not None:
            with contextlib.suppress(Exception):  # already connected, or not reachable: the ping tells
                await asyncio.wait_for(dialling, timeout)
        try:
            return await asyncio.wait_for(node.protocol.call_ping(peer_id), timeout) is not None
        except Exception:
            return False

    results = await asyncio.gather(*(one(peer_id, maddrs) for peer_id, maddrs in targets))
    return {peer_id: bool(ok) for (peer_id, _), ok in zip(targets, results, strict=True)}


def ensure_identity(path: str) -> str:
    """The peer id of the identity file at ``path``, created on first use: the host's address stays the same."""
    from hivemind.p2p import P2P, PeerID

    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        P2P.generate_identity(path)
    return PeerID.from_identity(file.read_bytes()).to_base58()


def single_optimizer(project: Any, module: Any) -> Any:
    """The one optimizer the module's ``configure_optimizers`` returns (as the volunteers' strategy requires).

    Raises:
        ProjectError: when it returns none or several.
    """
    from lightning.pytorch.core.optimizer import _configure_optimizers

    from volunteer.errors import ProjectError

    ref = project.manifest.model.ref
    where = project.where(ref.file)
    try:
        optimizers, _, _ = _configure_optimizers(module.configure_optimizers())
    except Exception as e:
        raise ProjectError(
            f"{where}: {ref.name}.configure_optimizers failed: {type(e).__name__}: {e}",
            "run 'volunteer check' on the project for the file and line",
        ) from e
    if len(optimizers) != 1:
        raise ProjectError(
            f"{where}: {ref.name}.configure_optimizers returned {len(optimizers)} optimizers; a swarm trains with one",
            "return a single optimizer from configure_optimizers",
        )
    return optimizers[0]
