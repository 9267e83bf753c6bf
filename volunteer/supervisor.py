"""One way to run a long-lived worker process and supervise it: the session's training process and the host's.

    supervisor (contribution.session, authoring/host_supervisor): WorkerProcess spawns the worker, polls its
        messages, sends commands, gives it STOP_GRACE, kills its group and drains; StopSignals; Backoff
    worker (contribution.training_process, authoring/host_worker): run_worker_body gives it its own process
        group, a parent watch, its output in a log, and its failure as a typed message

The worker runs in a process group of its own (hivemind forks a DHT, averagers and ``p2pd`` beside it), so one
``killpg`` takes all of it down; it watches its parent, so a supervisor killed with -9 leaves nothing behind.
Messages and commands are those of :mod:`volunteer.protocol`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from volunteer.constants import drop_hub_token
from volunteer.errors import VolunteerError
from volunteer.logfiles import open_append_fd
from volunteer.protocol import Command, Failed, WorkerCommand, WorkerMessage

STOP_GRACE = 7.5
"""Seconds a worker gets to leave the swarm cleanly (after a stop, or after it reported a failure) before its
process group is killed: well inside the 10 s that ``docker stop`` waits."""
MAX_BACKOFF = 60.0
"""The longest wait before a restart or a reconnection."""
HEALTHY_RUN = 600.0
"""A worker that ran this long before it ended is restarted at once again: the back-off starts afresh."""
JITTER = 0.2
"""Each back-off wait is spread by up to this fraction either way, so a swarm's peers do not retry in step."""
POLL_INTERVAL = 0.2


# -- the worker's side -----------------------------------------------------------------------------------------


def run_worker_body(
    parent_pid: int,
    log_path: str,
    outbox: Any,
    body: Callable[[], None],
    failure: Callable[[BaseException], tuple[Failed, int]],
) -> NoReturn:
    """The worker process's entry: set the process up, run ``body``, report a failure, exit with its status.

    Args:
        parent_pid: The supervisor's pid: the worker's group dies with it.
        log_path: Where the worker's output (Lightning, hivemind, ``p2pd``) goes.
        outbox: The queue to the supervisor.
        body: The work; returns when done.
        failure: Turns what ``body`` raised into the message to send and the exit status.
    """
    os.setsid()  # a process group of our own: the supervisor kills hivemind's helpers with us
    drop_hub_token()  # the project's code runs here, and the download is done
    multiprocessing.set_start_method("fork", force=True)  # spawned, but hivemind forks its DHT and averagers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which tells us to stop
    redirect_output(log_path)
    watch_parent(parent_pid)
    code = 0
    try:
        body()
    except BaseException as e:
        if not isinstance(e, VolunteerError):
            traceback.print_exc()
        message, code = failure(e)
        outbox.put(message)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    outbox.close()
    outbox.join_thread()
    # hivemind can leave non-daemon threads behind after a failure; the supervisor reaps our group
    os._exit(code)


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


# -- the supervisor's side -------------------------------------------------------------------------------------


class WorkerProcess:
    """A worker started with ``spawn`` as ``target(spec, outbox, commands)``, and its two queues.

    Args:
        target: The worker's entry point (it calls :func:`run_worker_body`).
        spec: Its picklable arguments.
        name: The process's name.
    """

    def __init__(self, target: Callable[[Any, Any, Any], None], spec: object, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.outbox: Any = ctx.Queue()
        self.commands: Any = ctx.Queue()
        self.process = ctx.Process(target=target, args=(spec, self.outbox, self.commands), name=name)
        self.process.start()
        self._stop_sent_at: float | None = None
        self._failed_at: float | None = None

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def send(self, command: WorkerCommand) -> None:
        self.commands.put(command)

    def supervise(
        self,
        on_message: Callable[[WorkerMessage], None],
        tick: Callable[[], bool],
        hard_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Deliver the worker's messages until it exits; always leaves its process group dead and reaped.

        Args:
            on_message: Called with each message, in order, the last ones drained after the worker exited.
            tick: Called about every POLL_INTERVAL; returns whether the worker should stop (it is then sent
                STOP once, and killed STOP_GRACE later if still there).
            hard_stop: Whether to kill the worker now (a second Ctrl-C).
        """
        try:
            while True:
                message = self._next(POLL_INTERVAL)
                if message is not None:
                    if isinstance(message, Failed) and self._failed_at is None:
                        self._failed_at = time.monotonic()  # the worker exits right after reporting
                    on_message(message)
                if tick() and self._stop_sent_at is None:
                    self.send(Command.STOP)
                    self._stop_sent_at = time.monotonic()
                if hard_stop() or self._grace_over():
                    self.kill()
                if not self.process.is_alive():
                    while (message := self._next(0.05)) is not None:
                        on_message(message)
                    return
        finally:
            self.kill()  # hivemind's helpers, if the worker left any behind
            self.process.join(timeout=5)

    def _next(self, timeout: float) -> WorkerMessage | None:
        with contextlib.suppress(queue.Empty, OSError, EOFError, ValueError):
            message: WorkerMessage = self.outbox.get(timeout=timeout)
            return message
        return None

    def _grace_over(self) -> bool:
        now = time.monotonic()
        return any(at is not None and now - at > STOP_GRACE for at in (self._stop_sent_at, self._failed_at))

    def kill(self) -> None:
        """SIGKILL the worker's process group (the worker leads it)."""
        if self.process.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class StopSignals:
    """SIGTERM and SIGINT: the first asks for a graceful stop, a second for a hard one (kill the worker now).

    Args:
        on_stop: Called (in the main thread, from the signal handler) on every signal.
    """

    on_stop: Callable[[], None]
    count: int = 0

    @property
    def hard(self) -> bool:
        return self.count > 1

    def install(self) -> None:
        """Install the handlers; only the main thread can (elsewhere, as in tests, nothing happens)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        self.on_stop()


@dataclass
class Backoff:
    """Waits before a restart: 1 s, doubling up to MAX_BACKOFF, each spread by JITTER; afresh after a healthy run.

    Args:
        first: The first wait, in seconds.
        ceiling: The longest.
        jitter: The spread, as a fraction of the wait, either way.
        rng: Uniform numbers in [0, 1) (tests pass their own).
    """

    first: float = 1.0
    ceiling: float = MAX_BACKOFF
    jitter: float = JITTER
    rng: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        self.base = self.first

    def next(self) -> float:
        """The wait before the next try; the one after it doubles."""
        wait = self.base * (1 + self.jitter * (2 * self.rng() - 1))
        self.base = min(self.base * 2, self.ceiling)
        return wait

    def ran(self, seconds: float) -> bool:
        """Note that a worker ran ``seconds``; a healthy run (HEALTHY_RUN or more) starts the back-off afresh."""
        if seconds > HEALTHY_RUN:
            self.base = self.first
        return seconds > HEALTHY_RUN


def drain(q: Any) -> Iterator[Any]:
    """What queue ``q`` holds now, without waiting (a closed or broken queue holds nothing)."""
    while True:
        try:
            yield q.get_nowait()
        except (queue.Empty, OSError, EOFError, ValueError):
            return
