"""The contribution session: supervises the training process and publishes snapshots to the views.

    project loading -> Session (this module) -> worker process (Trainer + HivemindStrategy)
                              |
                              +-> immutable Snapshots -> headless log, status endpoint, TUI

The session owns everything that must outlive a training process: the contribution ledger, the
reconnect back-off, crash restarts (with a smaller batch after a CUDA out-of-memory error), and the
graceful stop that ``docker stop`` expects (SIGTERM: out within 10 s, ledger written, exit 0).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from volunteer import endpoint_file
from volunteer.contribution.headless_log import HeadlessLog
from volunteer.datadir import DataDir
from volunteer.errors import SwarmError, VolunteerError
from volunteer.ledger import Counters, LedgerFile
from volunteer.protocol import (
    DeviceReport,
    Done,
    ErrorCategory,
    Failed,
    Joined,
    Note,
    StateChanged,
    TrainingStats,
    WorkerMessage,
)
from volunteer.settings import Settings
from volunteer.stats import Command, ErrorInfo, Event, LeaderboardEntry, ProjectInfo, Snapshot, State
from volunteer.supervisor import Backoff, StopSignals, WorkerProcess, drain
from volunteer.transfer import TransferMeter, repeating

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
"""Failed training processes in a row (without a healthy run between them) before the session gives up."""
SNAPSHOT_INTERVAL = 0.5
LOG_INTERVAL = 10.0
LEDGER_INTERVAL = 1.0
LEADERBOARD_FRESH = 30.0


Outcome = Done | Failed
"""How one training process ended: Done("stopped") when the volunteer stopped it."""


class Session:
    """Runs one volunteer's contribution; a :class:`~volunteer.stats.SnapshotSource` for the views.

    Args:
        settings: The resolved command-line settings.
        data_dir: The opened (and locked) data directory.
        interactive: A TUI drives this session through the status endpoint: consent is asked there
            (state ``waiting_for_consent``) and a failure stays on show until the TUI says stop.
        log_stream: Where headless lines go (``None``: standard output; no lines when interactive).
    """

    def __init__(
        self,
        settings: Settings,
        data_dir: DataDir,
        *,
        interactive: bool = False,
        headless_log: HeadlessLog | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.interactive = interactive
        self.out = headless_log
        self.started = time.time()
        self._snapshot = Snapshot(state=State.STARTING, time=self.started, nickname=self._nickname())
        self._events: collections.deque[Event] = collections.deque(maxlen=500)
        self._event_seq = 0
        self._events_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._commands: queue.Queue[Command] = queue.Queue()
        self._stop_requested = False
        self._signals = StopSignals(self._on_signal)
        self._trusted = threading.Event()
        self.prepared: Any = None
        self.ledger: LedgerFile | None = None
        self._folded = Counters()
        self._current = Counters()
        self._pending = 0
        self._worker_state = State.CONNECTING
        self._last_logged = 0.0
        self._last_ledger_save = 0.0
        self._credit_tried = 0
        """The newest credit written at once (or tried: a failing write is retried every LEDGER_INTERVAL)."""
        self._reconnecting = False
        self.reconnects = 0
        self.peer_id = ""

    # -- SnapshotSource --------------------------------------------------------------------------------

    def latest(self) -> Snapshot:
        # each publish records the newest event; only an event since then needs a fresh copy
        snapshot, seq = self._snapshot, self._event_seq
        return snapshot if snapshot.last_event_seq == seq else snapshot.replace(last_event_seq=seq)

    def events_since(self, seq: int) -> list[Event]:
        with self._events_lock:
            return [e for e in self._events if e.seq > seq]

    def send(self, command: Command) -> None:
        self._commands.put(Command(command))

    # -- running ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Prepare the project and contribute until stopped; returns the exit status."""
        self._signals.install()
        from volunteer.control_token import new_token, remove_token, take_token_from_env
        from volunteer.status_server import StatusServer

        servers: list[StatusServer] = []
        token = take_token_from_env()  # out of the environment before any project code can inherit it
        if not self.settings.status_port:
            token = None
        try:
            if self.settings.status_port:
                token = token or new_token()
                servers.append(StatusServer(self, "127.0.0.1", self.settings.status_port, token=token).start())
                self._write_token(token)
                # the health check and 'volunteer attach' read the real port here (the dashboard picks a free one)
                endpoint_file.record(self.data_dir.root, servers[0].url)
            if self.settings.metrics_address:
                host, _, port = self.settings.metrics_address.rpartition(":")
                servers.append(StatusServer(self, host, int(port), read_only=True).start())
            try:
                self._prepare()
                return self._supervise()
            except VolunteerError as e:
                self._fail(e)
                if self.interactive:
                    self._linger()
                raise
            finally:
                self._save_ledger()
        finally:
            for server in servers:
                server.stop()
            if token is not None:
                remove_token(self.data_dir, token)
            if self.settings.status_port and servers:
                endpoint_file.forget(self.data_dir.root, servers[0].url)

    def _write_token(self, token: str) -> None:
        from volunteer.control_token import write_token
        from volunteer.errors import DataDirError

        try:
            write_token(self.data_dir, token)
        except OSError as e:
            raise DataDirError(
                f"cannot write the control token {str(self.data_dir.control_token_file)!r}: {e.strerror or e}",
                "fix the data directory's permissions (--data-dir / VOLUNTEER_HOME), or pass --status-port 0",
            ) from None

    def _prepare(self) -> None:
        from volunteer.project import prepare_project

        self._set_state(State.DOWNLOADING)
        ask = self._ask_consent_via_api if self.interactive else None
        meter = TransferMeter()
        with self._showing(meter):
            self.prepared = prepare_project(self.settings, self.data_dir, ask_consent=ask, meter=meter)
        project = self.prepared.project
        for warning in self.prepared.warnings:
            self.event("warning", warning)
        manifest = project.manifest
        self.data_dir.check_identity()
        self.ledger = LedgerFile(self.data_dir.ledger_file(manifest.run_id), manifest.run_id)
        if self.ledger.warning:
            self.event("warning", self.ledger.warning)
        if self.ledger.recovered:
            self.event(
                "ledger",
                f"the last session ended without settling {self.ledger.recovered:,} samples: counted local-only",
            )
        self._show_ledger()  # from now on: a restart never shows (or exports) all-time as 0
        self._save_ledger()
        self._publish(project=project.info(), target_batch_size=manifest.target_batch_size)

    @contextlib.contextmanager
    def _showing(self, meter: TransferMeter) -> Iterator[None]:
        """Publish ``meter``'s transfer while the block runs (the download blocks this thread), and say in the
        headless log how it goes every LOG_INTERVAL."""
        last_line = time.monotonic()

        def show() -> None:
            nonlocal last_line
            transfer = meter.snapshot()
            self._publish(transfer=transfer)
            if transfer is not None and time.monotonic() - last_line >= LOG_INTERVAL:
                last_line = time.monotonic()
                self.event("downloading", f"downloading {transfer.describe()}")

        try:
            with repeating(SNAPSHOT_INTERVAL, show, "volunteer-download-progress"):
                yield
        finally:
            self._publish(transfer=None)

    def _ask_consent_via_api(self, project: Any) -> bool:
        self._publish(state=State.WAITING_FOR_CONSENT, project=project.info())
        self.event("consent", f"waiting for consent to run the code of {project.repo}")
        while not self._trusted.is_set():
            self._drain_commands(None)
            if self._stop_requested:
                return False
            time.sleep(0.1)
        self._set_state(State.DOWNLOADING)
        return True

    def _supervise(self) -> int:
        peers = tuple(self.prepared.peers.addresses)
        batch_size = self.settings.batch_size
        restarts, backoff, outcome = 0, Backoff(), None
        deadline = time.monotonic() + self.settings.duration if self.settings.duration else None
        while not self._stop_requested:
            started = time.monotonic()
            outcome = self._run_worker(peers, batch_size, deadline)
            if backoff.ran(time.monotonic() - started):
                restarts = 0  # a failure after a long good run starts the count afresh
            if isinstance(outcome, Done) or self._stop_requested:
                break
            if outcome.category == ErrorCategory.ERROR:
                raise VolunteerError(outcome.message, outcome.hint)
            unreachable = outcome.category == ErrorCategory.UNREACHABLE
            restarts += not unreachable
            if outcome.category == ErrorCategory.OOM:
                current = batch_size or self.prepared.project.manifest.batch_size
                batch_size = max(1, int(current) // 2)
                self.event("out_of_memory", f"out of GPU memory: restarting with batch size {batch_size}")
            if restarts > MAX_RESTARTS:
                raise SwarmError(
                    f"training failed {restarts} times, last: {outcome.message}",
                    f"see the training log {self._worker_log()}; if the project is at fault, tell its authors",
                )
            self.reconnects += unreachable
            self._reconnecting |= unreachable
            state = State.RECONNECTING if unreachable else State.STARTING
            self._publish(state=state, last_error=ErrorInfo(outcome.message, outcome.hint))
            wait = backoff.next()
            if unreachable:
                self.event("reconnecting", f"no peer reachable; retrying in {wait:.0f} s ({outcome.message})")
            else:
                how_many = f"restart {restarts} of {MAX_RESTARTS} in {wait:.0f} s"
                self.event("restarting", f"training process failed ({outcome.message}); {how_many}")
            self._sleep(wait)
            if unreachable:
                peers = self._recollect_peers(peers)
        self._set_state(State.STOPPED)
        session = self._session()
        how = "done" if isinstance(outcome, Done) and outcome.reason != "stopped" else "stopped"
        self.event(
            "stopped",
            f"stopped ({how}); this session computed {session.samples:,} samples: "
            f"{session.swarm_samples:,} credited, {session.local_only_samples:,} local-only",
        )
        return 0

    def _recollect_peers(self, previous: tuple[str, ...]) -> tuple[str, ...]:
        """Re-read the peer sources (flag, environment, project file, URL, cache); keep ``previous`` on failure.

        A running client must never die here, whatever a peers URL answers: every failure is a warning.
        """
        try:
            from volunteer.project import collect_project_peers

            peers = collect_project_peers(self.prepared.project, self.settings, self.data_dir)
        except VolunteerError as e:
            self.event("warning", f"could not re-read the peer list: {e.message}")
            return previous
        except Exception as e:
            log.warning("re-reading the peer list failed", exc_info=True)
            self.event("warning", f"could not re-read the peer list: {type(e).__name__}: {e}")
            return previous
        for warning in peers.warnings:
            self.event("warning", warning)
        return tuple(peers.addresses) or previous

    # -- one training process ----------------------------------------------------------------------------

    def _run_worker(self, peers: tuple[str, ...], batch_size: int | None, deadline: float | None) -> Outcome:
        from volunteer.contribution.training_process import WorkerSpec, run_worker

        steps_left = self.settings.max_steps - self._folded.steps if self.settings.max_steps else None
        if steps_left is not None and steps_left <= 0:
            return Done()
        spec = WorkerSpec(
            prepared=self.prepared,
            settings=self.settings,
            identity_path=str(self.data_dir.identity_file),
            initial_peers=peers,
            nickname=self._nickname(),
            parent_pid=os.getpid(),
            log_path=self._worker_log(),
            root_dir=str(self.data_dir.root / "lightning"),
            batch_size=batch_size,
            max_steps=steps_left,
            base_swarm_samples=self._ledger_totals().swarm_samples,
        )
        if self._snapshot.state != State.RECONNECTING:
            self._set_state(State.CONNECTING)
        worker = WorkerProcess(run_worker, spec, "volunteer-worker")
        self._publish(transfer=None)  # a download the last worker had under way ended with it
        outcome: Outcome | None = None

        def on_message(message: WorkerMessage) -> None:
            nonlocal outcome
            outcome = self._handle(message, peers) or outcome

        def tick() -> bool:
            self._drain_commands(worker)
            if deadline is not None and time.monotonic() >= deadline and not self._stop_requested:
                self.event("stopping", "the --duration is over")
                self._stop_requested = True
            if self._stop_requested:
                self._set_state(State.STOPPING)
            self._tick()
            return self._stop_requested

        try:
            worker.supervise(on_message, tick, lambda: self._signals.hard)
        finally:
            # what the process computed but never got into a global step is local-only now
            self._folded += self._current + Counters(local_only_samples=self._pending)
            self._current, self._pending = Counters(), 0
            self._save_ledger()
        if self._stop_requested and not isinstance(outcome, Done):
            return Done("stopped")  # a failure while stopping is no failure
        return outcome or Failed(
            ErrorCategory.CRASH,
            f"the training process exited with status {worker.exitcode}",
            f"see the training log {self._worker_log()}",
        )

    def _handle(self, message: WorkerMessage, peers: tuple[str, ...]) -> Outcome | None:
        if isinstance(message, TrainingStats):
            self._on_stats(message)
        elif isinstance(message, Note):
            self.event(message.kind, message.message)
        elif isinstance(message, StateChanged):
            self._worker_state = message.state
        elif isinstance(message, DeviceReport):
            self._publish(device=message.device)
        elif isinstance(message, Joined):
            self._on_joined(message, peers)
        elif isinstance(message, Failed) and message.category != ErrorCategory.UNREACHABLE:
            self.event("error", message.message)  # an unreachable swarm is a "reconnecting" event of its own
        return message if isinstance(message, Failed | Done) else None

    def _on_joined(self, message: Joined, peers: tuple[str, ...]) -> None:
        self.peer_id = message.peer_id
        addresses = message.addresses
        self._publish(
            peer_id=self.peer_id,
            join_addresses=addresses,
            network_mode=message.network_mode,
            network_mode_reason=message.network_mode_reason,
            last_error=None,
        )
        if self._reconnecting:
            self._reconnecting = False
            self.event("recovered", "reached the swarm again")
        if peers:
            from volunteer.project import remember_working_peers

            with contextlib.suppress(VolunteerError, OSError):
                remember_working_peers(self.data_dir, self.prepared.project.manifest.run_id, peers)
        if self.out is not None and message.network_mode == "client mode":
            self.out.text(
                f"This peer ({self.peer_id}) is in client mode: {message.network_mode_reason}. Others "
                "cannot join through it; they join through the peers it joined."
            )
        elif self.out is not None:
            self.out.text(self.join_instructions(addresses))

    def join_instructions(self, addresses: tuple[str, ...]) -> str:
        joined = ",".join(addresses)
        return "\n".join(
            [
                f"This peer ({self.peer_id}) is reachable at:",
                *[f"  {a}" for a in addresses],
                "Others join this swarm with:",
                f"  volunteer --project {self.settings.project} --initial-peers {joined}",
                f"  INITIAL_PEERS={joined} python train.py   # a script using volunteer's HivemindStrategy",
            ]
        )

    def _on_stats(self, m: TrainingStats) -> None:
        self._worker_state = m.state
        self._current, self._pending = m.counters, m.pending_samples
        credit = self._ledger_totals().swarm_samples
        if self.ledger is not None and credit != self.ledger.saved.swarm_samples and credit != self._credit_tried:
            self._credit_tried = credit
            self._save_ledger()  # credit for a global step is durable at once, and shown only once written
        self._publish_stats(m)

    # -- snapshots ---------------------------------------------------------------------------------------

    def _session(self) -> Counters:
        return self._folded + self._current

    def _ledger_totals(self) -> Counters:
        return self.ledger.base.totals + self._session() if self.ledger else self._session()

    def _publish_stats(self, m: TrainingStats) -> None:
        progress = m.progress
        fresh = [e for e in m.leaderboard if time.time() - e.last_seen < LEADERBOARD_FRESH]
        swarm_rate = sum(e.samples_per_second for e in fresh) if fresh else m.samples_per_second
        state = self._worker_state
        if self._stop_requested:
            state = State.STOPPING
        elif self._reconnecting and state == State.CONNECTING:
            state = State.RECONNECTING
        elif m.isolated and state == State.TRAINING:
            state = State.RECONNECTING  # cut off from every known peer while training (volunteer.swarm.keeper)
        self._publish(
            state=state,
            samples_per_second=m.samples_per_second,
            loss=m.loss,
            loss_smoothed=m.loss_smoothed,
            learning_rate=m.learning_rate,
            global_epoch=progress.global_epoch if progress else self._snapshot.global_epoch,
            local_epoch=progress.local_epoch if progress else self._snapshot.local_epoch,
            num_peers=progress.num_peers if progress else self._snapshot.num_peers,
            samples_accumulated=progress.samples_accumulated if progress else 0,
            target_batch_size=progress.target_batch_size if progress else self._snapshot.target_batch_size,
            eta_next_step=progress.eta_next_step if progress else None,
            swarm_samples_per_second=swarm_rate,
            leaderboard=self._own_credit_as_saved(m.leaderboard),
            transfer=m.transfer,
            wire=m.wire,
            leaderboard_dropped=m.leaderboard_dropped,
        )

    def _own_credit_as_saved(self, entries: tuple[LeaderboardEntry, ...]) -> tuple[LeaderboardEntry, ...]:
        """This peer's row as the ledger holds it: the training process publishes its credit before it is written."""
        if self.ledger is None:
            return entries
        saved = self.ledger.saved.swarm_samples
        return tuple(dataclasses.replace(e, samples=min(e.samples, saved)) if e.is_self else e for e in entries)

    def _publish(self, **changes: Any) -> None:
        with self._publish_lock:  # the download-progress thread publishes too: no change may be lost
            now = time.time()
            self._snapshot = dataclasses.replace(
                self._snapshot,
                time=now,
                uptime=now - self.started,
                reconnects=self.reconnects,
                last_event_seq=self._event_seq,
                **changes,
            )

    def _set_state(self, state: State) -> None:
        if self._snapshot.state != state:
            self._publish(state=state)
            # before the project is ready there is nothing to report but the outcome
            if self.out is not None and self.prepared is not None:
                self.out.status(self._snapshot)

    def event(self, kind: str, message: str, *, echo: bool = True) -> None:
        with self._events_lock:
            self._event_seq += 1
            event = Event(seq=self._event_seq, time=time.time(), kind=kind, message=message)
            self._events.append(event)
        if echo and self.out is not None:
            self.out.event(event)

    def _fail(self, error: VolunteerError) -> None:
        self._publish(state=State.FAILED, last_error=ErrorInfo(error.message, error.hint))
        # the CLI prints the error and its hint once, as the last thing the volunteer reads
        self.event("error", error.message, echo=False)

    def _linger(self) -> None:
        """Keep the failure on show for the TUI until it says stop (bounded: an hour)."""
        deadline = time.monotonic() + 3600
        while not self._stop_requested and time.monotonic() < deadline:
            self._drain_commands(None)
            time.sleep(0.1)

    def _tick(self) -> None:
        now = time.monotonic()
        self._publish()
        if self.out is not None and now - self._last_logged >= LOG_INTERVAL:
            self._last_logged = now
            self.out.status(self._snapshot)
        if now - self._last_ledger_save >= LEDGER_INTERVAL:
            self._save_ledger()

    def _save_ledger(self) -> None:
        """Write the ledger, then show what it holds: the views never show a figure that a kill -9 would lose."""
        if self.ledger is None:
            return
        self._last_ledger_save = time.monotonic()
        self.ledger.update(self._session(), peer_id=self.peer_id)
        try:
            self.ledger.save()
        except VolunteerError as e:
            self.event("error", e.message)
        self._show_ledger()

    def _show_ledger(self) -> None:
        """Publish what a kill -9 now would leave in the ledger for the next start."""
        if self.ledger is None:
            return
        totals, before = self.ledger.saved, self.ledger.base.totals
        self._publish(
            session_samples=totals.samples - before.samples,
            session_steps=totals.steps - before.steps,
            total_samples=totals.samples,
            total_steps=totals.steps,
            swarm_samples=totals.swarm_samples,
            local_only_samples=totals.local_only_samples,
        )

    # -- commands and signals ---------------------------------------------------------------------------

    def _drain_commands(self, worker: WorkerProcess | None) -> None:
        for command in drain(self._commands):
            if command == Command.TRUST:
                self._trusted.set()
            elif command == Command.STOP:
                self._stop_requested = True
            elif worker is not None:
                worker.send(command)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stop_requested:
            self._drain_commands(None)
            self._publish()
            time.sleep(0.1)

    def _on_signal(self) -> None:
        self._stop_requested = True
        self._trusted.set()  # a consent question waiting for an answer gets none

    def _nickname(self) -> str:
        if self.settings.name:
            return self.settings.name
        return f"volunteer-{os.uname().nodename[:12]}"

    def _worker_log(self) -> str:
        return str(self.data_dir.root / "logs" / "training.log")


def run_session(settings: Settings, data_dir: DataDir, *, interactive: bool = False) -> int:
    """Run a session in this process with headless output (none when a TUI drives it)."""
    headless_log = None if interactive else HeadlessLog(settings.log_format)
    return Session(settings, data_dir, interactive=interactive, headless_log=headless_log).run()


__all__ = ["ProjectInfo", "Session", "run_session"]
