"""The training process: one ``Trainer.fit`` with ``HivemindStrategy``, reporting to the supervisor.

It runs in a process (and process group) of its own, started by :mod:`volunteer.supervisor`, so that the
session can restart it after a crash, shrink its batch after a CUDA out-of-memory error, and kill
everything hivemind started (DHT, averagers, ``p2pd``) with one signal. Messages to the supervisor and
commands from it are the typed ones of :mod:`volunteer.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from volunteer.errors import SwarmError, VolunteerError
from volunteer.project.loader import build_project
from volunteer.project.requirements import check_device
from volunteer.protocol import DeviceReport, Done, ErrorCategory, Failed, Note, StateChanged, WorkerMessage
from volunteer.settings import Settings
from volunteer.stats import State
from volunteer.supervisor import run_worker_body

EXIT_CRASH = 1
EXIT_ERROR = 3
EXIT_OOM = 4


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a training process needs; picklable."""

    prepared: Any
    """A ``volunteer.project.PreparedProject``."""
    settings: Settings
    """The volunteer's settings: device, listen and announce addresses, client mode, relay, upload cap."""
    identity_path: str
    initial_peers: tuple[str, ...]
    nickname: str
    parent_pid: int
    log_path: str
    root_dir: str
    """Lightning's working directory (inside the data directory)."""
    batch_size: int | None = None
    max_steps: int | None = None
    base_swarm_samples: int = 0
    """All-time swarm samples before this process started (for the leaderboard record)."""
    stats_interval: float = 0.5
    leaderboard_interval: float = 5.0


def run_worker(spec: WorkerSpec, outbox: Any, commands: Any) -> None:
    """Process entry point."""
    train = _Worker(spec, outbox, commands).train
    run_worker_body(spec.parent_pid, spec.log_path, outbox, train, partial(_failure, spec.log_path))


def _failure(log_path: str, e: BaseException) -> tuple[Failed, int]:
    """The message and exit status for what training raised: the supervisor retries, restarts or stops on it."""
    if isinstance(e, VolunteerError):
        category = ErrorCategory.UNREACHABLE if isinstance(e, SwarmError) else ErrorCategory.ERROR
        return Failed(category, e.message, e.hint), EXIT_ERROR
    message = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    if _is_out_of_memory(e):
        return Failed(ErrorCategory.OOM, message), EXIT_OOM
    return Failed(ErrorCategory.CRASH, message, f"the training process crashed; its log is {log_path}"), EXIT_CRASH


class _Worker:
    def __init__(self, spec: WorkerSpec, outbox: Any, commands: Any) -> None:
        self.spec = spec
        self.outbox = outbox
        self.commands = commands

    def emit(self, message: WorkerMessage) -> None:
        self.outbox.put(message)

    def event(self, kind: str, message: str) -> None:
        self.emit(Note(kind, message))

    def train(self) -> None:
        import lightning as L

        from volunteer.contribution.training_callback import Reporter
        from volunteer.device import cpu_fallback_warning, device_info, resolve_device
        from volunteer.shm import check_shm
        from volunteer.strategy import HivemindStrategy
        from volunteer.swarm.leaderboard import record_validators, use_identity_for_signing

        spec, settings = self.spec, self.spec.settings
        manifest = spec.prepared.project.manifest
        device = resolve_device(settings.device)
        info = device_info(device)
        check_device(manifest.requirements, device.accelerator, info)
        if device.accelerator == "cpu" and settings.device == "auto":
            warning = cpu_fallback_warning()
            if warning:
                self.event("warning", warning)
        self.emit(DeviceReport(info))

        built = build_project(spec.prepared.project, spec.batch_size)
        # hivemind puts the parameters in /dev/shm: a container's 64 MB default fails here, with the fix
        check_shm(built.module)
        run_id = manifest.run_id
        # records signed with the identity's key carry a peer id that other peers can check against the key
        validators, public_key = record_validators(run_id, use_identity_for_signing(spec.identity_path))
        strategy_kwargs = dict(manifest.strategy_kwargs())
        strategy_kwargs.update(
            batch_size=built.batch_size,
            initial_peers=list(spec.initial_peers),
            identity_path=spec.identity_path,
            host_maddrs=settings.host_maddrs or None,
            announce_maddrs=settings.announce_maddrs or None,
            client_mode=settings.client_mode,
            use_relay=settings.use_relay,
            max_upload=settings.max_upload,
            monthly_data=settings.monthly_data,
            dht_opts=dict(record_validators=validators),
            print_join_message=False,
        )
        strategy = HivemindStrategy(**strategy_kwargs)

        reporter = Reporter(self, strategy, public_key, device, built.batch_size)
        trainer_kwargs: dict[str, Any] = dict(
            strategy=strategy,
            default_root_dir=spec.root_dir,
            accelerator=device.accelerator,
            devices=[device.index] if device.accelerator == "gpu" else 1,
            max_steps=spec.max_steps or -1,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[reporter],
        )
        precision = getattr(manifest, "precision", None)
        if precision:
            trainer_kwargs["precision"] = precision
        self.emit(StateChanged(State.CONNECTING))
        trainer = L.Trainer(**trainer_kwargs)
        try:
            built.fit(trainer)
        finally:
            reporter.close()
        self.emit(Done(reporter.stop_reason or "max_steps"))


def _is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "OutOfMemoryError" in text or "CUDA out of memory" in text
