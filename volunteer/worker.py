"""The training process: one ``Trainer.fit`` with ``HivemindStrategy``, reporting to the supervisor.

It runs in a process (and process group) of its own, started with the ``spawn`` method, so that the
supervisor can restart it after a crash, shrink its batch after a CUDA out-of-memory error, and kill
everything hivemind started (DHT, averagers, ``p2pd``) with one signal. Messages to the supervisor are
plain dicts on a queue; commands from it are strings.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from volunteer.constants import drop_hub_token
from volunteer.errors import ConfigError, SwarmError, VolunteerError
from volunteer.logfiles import open_append_fd

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_ERROR = 3
EXIT_OOM = 4


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a training process needs; picklable."""

    prepared: Any
    """A ``volunteer.project.PreparedProject``."""
    device: str
    identity_path: str
    initial_peers: tuple[str, ...]
    nickname: str
    parent_pid: int
    log_path: str
    root_dir: str
    """Lightning's working directory (inside the data directory)."""
    batch_size: int | None = None
    max_steps: int | None = None
    host_maddrs: str | None = None
    announce_maddrs: str | None = None
    client_mode: bool = False
    use_relay: bool = True
    max_upload: float | None = None
    """Bytes per second (``--max-upload``)."""
    monthly_data: float | None = None
    """Bytes in 30 days (``--monthly-data``)."""
    base_swarm_samples: int = 0
    """All-time swarm samples before this process started (for the leaderboard record)."""
    stats_interval: float = 0.5
    leaderboard_interval: float = 5.0


def run_worker(spec: WorkerSpec, outbox: Any, commands: Any) -> None:
    """Process entry point."""
    os.setsid()  # our own process group: the supervisor kills hivemind's helpers with us
    drop_hub_token()  # the project's code runs here, and the download is done
    # a spawned process inherits the "spawn" start method, but hivemind forks its DHT and averagers
    multiprocessing.set_start_method("fork", force=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which tells us to stop
    redirect_output(spec.log_path)
    watch_parent(spec.parent_pid)
    code = EXIT_OK
    try:
        _Worker(spec, outbox, commands).train()
    except VolunteerError as e:
        category = "unreachable" if isinstance(e, SwarmError) else "error"
        outbox.put(dict(kind="error", category=category, message=e.message, hint=e.hint))
        code = EXIT_ERROR
    except BaseException as e:
        traceback.print_exc()
        oom = _is_out_of_memory(e)
        outbox.put(
            dict(
                kind="error",
                category="oom" if oom else "crash",
                message=f"{type(e).__name__}: {e}".splitlines()[0][:500],
                hint=None if oom else f"the training process crashed; its log is {spec.log_path}",
            )
        )
        code = EXIT_OOM if oom else EXIT_CRASH
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    outbox.close()
    outbox.join_thread()
    # hivemind can leave non-daemon threads behind after a failure; the supervisor reaps our group
    os._exit(code)


class _Worker:
    def __init__(self, spec: WorkerSpec, outbox: Any, commands: Any) -> None:
        self.spec = spec
        self.outbox = outbox
        self.commands = commands

    def emit(self, **message: Any) -> None:
        self.outbox.put(message)

    def event(self, kind: str, message: str) -> None:
        self.emit(kind="event", event=kind, message=message)

    def train(self) -> None:
        import lightning as L

        from volunteer.device import device_info, resolve_device
        from volunteer.leaderboard import record_validators, use_identity_for_signing
        from volunteer.reporter import Reporter
        from volunteer.shm import check_shm
        from volunteer.strategy import HivemindStrategy

        spec = self.spec
        manifest = spec.prepared.project.manifest
        device = resolve_device(spec.device)
        info = device_info(device)
        check_requirements(manifest.requirements, device.accelerator, info)
        if device.accelerator == "cpu" and spec.device == "auto":
            from volunteer.doctor import gpu_warning
            from volunteer.settings import Settings

            warning = gpu_warning(Settings(device=spec.device))
            if warning:
                self.event("warning", warning)
        self.emit(kind="device", device=dataclasses.asdict(info))

        built = spec.prepared.build(spec.batch_size)
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
            client_mode=spec.client_mode,
            use_relay=spec.use_relay,
            max_upload=spec.max_upload,
            monthly_data=spec.monthly_data,
            dht_opts=dict(record_validators=validators),
            print_join_message=False,
        )
        if spec.host_maddrs:
            strategy_kwargs["host_maddrs"] = spec.host_maddrs
        if spec.announce_maddrs:
            strategy_kwargs["announce_maddrs"] = spec.announce_maddrs
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
        self.emit(kind="state", state="connecting")
        trainer = L.Trainer(**trainer_kwargs)
        try:
            built.fit(trainer)
        finally:
            reporter.close()
        self.emit(kind="done", reason=reporter.stop_reason or "max_steps")


def check_requirements(requirements: Any, accelerator: str, info: Any) -> None:
    """Refuse to start where the project's manifest says it cannot train."""
    if requirements.gpu == "required" and accelerator != "gpu":
        raise ConfigError(
            "this project requires a GPU and none is in use",
            "run on a machine with an NVIDIA GPU (in Docker: --gpus all; check with 'volunteer doctor'), and do "
            "not pass --device cpu",
        )
    if accelerator == "gpu" and requirements.min_gpu_memory_gb and info.memory_total_mb is not None:
        have = info.memory_total_mb * 2**20 / 1e9
        if have < requirements.min_gpu_memory_gb:
            raise ConfigError(
                f"this project needs a GPU with {requirements.min_gpu_memory_gb:g} GB of memory; "
                f"{info.name} has {have:.1f} GB",
                "pick a larger GPU with --device cuda:N, or contribute to a project with smaller requirements",
            )


def _is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "OutOfMemoryError" in text or "CUDA out of memory" in text


def redirect_output(log_path: str) -> None:
    """Training noise (Lightning, hivemind, p2pd) goes to a log file, not into the volunteer's console."""
    fd = open_append_fd(log_path)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def watch_parent(parent_pid: int) -> None:
    """If the supervisor dies (even by kill -9), take this process group down with it: no orphans."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(0.5)

    threading.Thread(target=watch, name="volunteer-parent-watch", daemon=True).start()
