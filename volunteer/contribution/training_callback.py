"""The worker's Lightning callback: measures this peer, obeys commands, streams stats to the supervisor."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import lightning as L

from volunteer.ledger import Counters
from volunteer.protocol import DeviceReport, Joined, TrainingStats
from volunteer.stats import Command, State
from volunteer.supervisor import drain


class Reporter(L.Callback):
    """A Lightning callback that measures this peer, obeys commands, and streams stats to the supervisor.

    Stats go out from a background thread, so the supervisor hears from us even while a global step
    or a state download blocks the training loop.
    """

    def __init__(self, worker: Any, strategy: Any, public_key: bytes, device: Any, batch_size: int) -> None:
        self.worker = worker
        self.strategy = strategy
        self.public_key = public_key
        self.device = device
        self.batch_size = batch_size
        self.state = State.CONNECTING
        self.steps = 0
        self.loss: float | None = None
        self.loss_smoothed: float | None = None
        self.lr: float | None = None
        self.samples_per_second = 0.0
        self.compute_seconds = 0.0
        self.stop_reason: str | None = None
        self.paused = False
        self.finish_after_epoch: int | None = None
        self._last_batch_end: float | None = None
        self._first_batch = True
        self._last_epoch = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._leaderboard: Any = None
        self._thread = threading.Thread(target=self._report_loop, name="volunteer-stats", daemon=True)
        self._thread.start()

    # -- Lightning hooks -----------------------------------------------------------------------------------

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        from volunteer.swarm.leaderboard import LeaderboardPublisher, make_record

        strategy = self.strategy
        addresses = strategy.visible_maddrs()
        peers = len(strategy.initial_peers)
        how = f"joined through {peers} initial peer(s)" if peers else "started a new swarm"
        mode = strategy.network_mode
        self.worker.emit(
            Joined(
                str(strategy.dht.peer_id),
                tuple(addresses),
                network_mode=mode.label if mode else "",
                network_mode_reason=mode.reason if mode else "",
            )
        )
        # lost and found again (volunteer.swarm.keeper): "reconnecting", "recovered", "alone" events
        strategy.swarm_event_handler = self.worker.event
        strategy.idle_handler = lambda: self._handle_commands(trainer)  # while the upload cap holds training back
        where = "dials out only (client mode)" if strategy.dht.client_mode else f"reachable at {' '.join(addresses)}"
        self.worker.event("joined", f"peer {strategy.dht.peer_id} {how}; {where}")
        if mode is not None:
            self.worker.event("network", f"{mode.label}: {mode.reason}")
        spec = self.worker.spec
        self._leaderboard = LeaderboardPublisher(
            strategy.dht,
            strategy.run_id,
            self.public_key,
            lambda: make_record(
                str(strategy.dht.peer_id),
                spec.nickname,
                spec.base_swarm_samples + strategy.swarm_samples,
                self.samples_per_second,
            ),
            interval=spec.leaderboard_interval,
        )
        self._leaderboard.start()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._handle_commands(trainer)
        while self.paused and not trainer.should_stop:
            self._last_batch_end = None  # paused time is not training time
            time.sleep(0.1)
            self._handle_commands(trainer)
        if self._first_batch:
            self._set_state(State.LOADING_STATE)  # the strategy builds hivemind's optimizer and loads peers' state

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # wall time from one batch end to the next: data loading and waiting for the swarm count too
        now = time.perf_counter()
        elapsed = now - self._last_batch_end if self._last_batch_end is not None else 0.0
        self._last_batch_end = now
        strategy = self.strategy
        opt = strategy.hivemind_optimizer
        with self._lock:
            self.steps += 1
            if elapsed > 0:
                self.compute_seconds += elapsed
                rate = self.batch_size / elapsed
                self.samples_per_second = (
                    rate if self.samples_per_second == 0 else (0.9 * self.samples_per_second + 0.1 * rate)
                )
            loss = _loss_value(outputs)
            if loss is not None and math.isfinite(loss):
                self.loss = loss
                self.loss_smoothed = loss if self.loss_smoothed is None else 0.95 * self.loss_smoothed + 0.05 * loss
            if opt is not None and opt.param_groups:
                self.lr = float(opt.param_groups[0].get("lr", 0.0))
        if self._first_batch:
            self._first_batch = False
            epoch = opt.local_epoch if opt is not None else 0
            self._last_epoch = epoch
            if epoch > 0:
                self.worker.event("state_loaded", f"loaded the swarm's state at global step {epoch}")
        if not self.paused:
            self._set_state(State.TRAINING)
        if opt is not None and opt.local_epoch != self._last_epoch:
            self._on_global_step(trainer, opt.local_epoch)
        if self.stop_reason is None and trainer.max_steps > 0 and self.steps >= trainer.max_steps:
            self.stop_reason = "max_steps"

    def _on_global_step(self, trainer: Any, epoch: int) -> None:
        if epoch > self._last_epoch + 1:
            self.worker.event("state_loaded", f"caught up with the swarm: loaded global step {epoch} from peers")
        self._last_epoch = epoch
        self.send_stats()  # credit for a global step is written to the ledger at once
        if self.finish_after_epoch is not None and epoch > self.finish_after_epoch:
            self.stop_reason = "finished"
            trainer.should_stop = True
            self.worker.event("finished", f"left after global step {epoch}, as asked")

    # -- commands ------------------------------------------------------------------------------------------

    def _handle_commands(self, trainer: Any) -> None:
        for command in drain(self.worker.commands):
            if command == Command.STOP:
                self.stop_reason = "stopped"
                self.paused = False
                trainer.should_stop = True
                self._set_state(State.STOPPING)
            elif command == Command.PAUSE and not self.paused:
                self.paused = True
                self._set_state(State.PAUSED)
                self.worker.event("paused", "paused: no new samples until resumed")
            elif command == Command.RESUME and self.paused:
                self.paused = False
                self._set_state(State.TRAINING)
                self.worker.event("resumed", "resumed")
            elif command == Command.FINISH:
                opt = self.strategy.hivemind_optimizer
                self.finish_after_epoch = opt.local_epoch if opt is not None else 0
                self.paused = False
                self.worker.event("finishing", "will leave after the current global step")

    # -- reporting -----------------------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.send_stats()

    def send_stats(self) -> None:
        strategy = self.strategy
        samples, swarm, local_only, pending = _credit_counts(strategy)
        with self._lock:
            message = TrainingStats(
                state=self.state,
                counters=Counters(
                    samples=samples,
                    steps=self.steps,
                    swarm_samples=swarm,
                    local_only_samples=local_only,
                    compute_seconds=self.compute_seconds,
                ),
                pending_samples=pending,
                samples_per_second=self.samples_per_second,
                loss=self.loss,
                loss_smoothed=self.loss_smoothed,
                learning_rate=self.lr,
                progress=strategy.progress(),
                transfer=strategy.transfer(),
                wire=strategy.wire(),
                isolated=strategy.isolated,
                leaderboard=tuple(self._leaderboard.entries) if self._leaderboard else (),
                leaderboard_dropped=self._leaderboard.dropped if self._leaderboard else 0,
            )
        self.worker.emit(message)

    def _report_loop(self) -> None:
        from volunteer.device import device_info

        last_device = 0.0
        while not self._closed.wait(self.worker.spec.stats_interval):
            with contextlib.suppress(Exception):  # e.g. the tracker is mid-shutdown
                self.send_stats()
            if self.device.accelerator == "gpu" and time.monotonic() - last_device > 5:
                last_device = time.monotonic()
                with contextlib.suppress(Exception):
                    self.worker.emit(DeviceReport(device_info(self.device)))

    def close(self) -> None:
        if self._leaderboard is not None:
            self._leaderboard.stop()
        self._closed.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.send_stats()


def _credit_counts(strategy: Any) -> tuple[int, int, int, int]:
    """Samples computed, credited, local-only and pending, read so that the first is the sum of the others.

    This runs on the stats thread while the training thread moves samples from pending to credited or
    local-only; four reads in a row can straddle a move and count a batch twice or not at all, and the
    session would write that to the ledger. A torn read is rare and brief: read again until it adds up.
    """
    for _ in range(_CONSISTENT_READS):
        samples, swarm = strategy.samples_contributed, strategy.swarm_samples
        local_only, pending = strategy.local_only_samples, strategy.pending_samples
        if samples == swarm + local_only + pending:
            return samples, swarm, local_only, pending
        time.sleep(0.001)
    settled = swarm + local_only  # still moving: never count more settled samples than were computed
    return max(samples, settled), swarm, local_only, max(samples, settled) - settled


_CONSISTENT_READS = 50


def _loss_value(outputs: Any) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if loss is None:
        return None
    try:
        return float(loss.detach()) if hasattr(loss, "detach") else float(loss)
    except (TypeError, ValueError):
        return None
