"""The one supervisor mechanism (volunteer.supervisor): a real spawned worker, its process group, its messages."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from volunteer import supervisor
from volunteer.protocol import Command, Done, ErrorCategory, Failed, Note, WorkerMessage
from volunteer.supervisor import Backoff, WorkerProcess, run_worker_body

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class _Spec:
    parent_pid: int
    log_path: str
    obey_stop: bool
    fail: bool = False


def _worker(spec: _Spec, outbox: Any, commands: Any) -> None:
    """A worker with a grandchild in its process group (as hivemind's p2pd is); obeys STOP only if told to."""

    def body() -> None:
        helper = subprocess.Popen(["sleep", "600"])
        outbox.put(Note("helper", str(helper.pid)))
        if spec.fail:
            raise RuntimeError("boom")
        while True:
            if spec.obey_stop and commands.get() == Command.STOP:
                outbox.put(Done("stopped"))
                return
            time.sleep(0.1)

    def failure(e: BaseException) -> tuple[Failed, int]:
        return Failed(ErrorCategory.CRASH, str(e)), 1

    run_worker_body(spec.parent_pid, spec.log_path, outbox, body, failure)


def _alive(pid: int, wait: float = 10.0) -> bool:
    """Whether ``pid`` still runs ``wait`` seconds from now (a zombie waiting for init to reap it is dead)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1][0] in "ZX":
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.1)
    return True


def _supervise(spec: _Spec, stop_after: float | None) -> tuple[list[WorkerMessage], WorkerProcess, float]:
    worker = WorkerProcess(_worker, spec, "volunteer-test-worker")
    messages: list[WorkerMessage] = []
    started = time.monotonic()
    worker.supervise(messages.append, lambda: stop_after is not None and time.monotonic() - started > stop_after)
    return messages, worker, time.monotonic() - started


def test_a_worker_that_obeys_stop_leaves_and_its_group_goes_with_it(tmp_path: Path) -> None:
    messages, worker, _ = _supervise(_Spec(os.getpid(), str(tmp_path / "w.log"), obey_stop=True), stop_after=1.0)
    helper = int(next(m.message for m in messages if isinstance(m, Note)))
    assert messages[-1] == Done("stopped") and worker.exitcode == 0
    assert not _alive(helper)


def test_a_worker_that_ignores_stop_is_killed_after_the_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "STOP_GRACE", 1.0)
    messages, worker, took = _supervise(_Spec(os.getpid(), str(tmp_path / "w.log"), obey_stop=False), stop_after=1.0)
    helper = int(next(m.message for m in messages if isinstance(m, Note)))
    assert worker.exitcode is not None and worker.exitcode < 0  # killed by a signal
    assert not _alive(helper)
    assert took < 60


def test_a_failure_is_reported_with_its_exit_status_and_a_traceback_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    messages, worker, _ = _supervise(_Spec(os.getpid(), str(log), obey_stop=False, fail=True), stop_after=None)
    assert messages[-1] == Failed(ErrorCategory.CRASH, "boom") and worker.exitcode == 1
    assert "RuntimeError: boom" in log.read_text()


def test_backoff_doubles_to_the_ceiling_with_jitter_either_way() -> None:
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 0.999999)
    lows = [low.next() for _ in range(8)]
    highs = [high.next() for _ in range(8)]
    assert lows[:3] == pytest.approx([0.8, 1.6, 3.2]) and highs[:3] == pytest.approx([1.2, 2.4, 4.8], rel=1e-5)
    assert lows[-1] == pytest.approx(0.8 * supervisor.MAX_BACKOFF)
    assert not low.ran(5.0) and low.next() == pytest.approx(0.8 * supervisor.MAX_BACKOFF)
    assert low.ran(supervisor.HEALTHY_RUN + 1) and low.next() == pytest.approx(0.8)


def test_peers_backing_off_together_do_not_retry_in_step() -> None:
    waits = {round(Backoff().next(), 6) for _ in range(20)}
    assert len(waits) > 1 and all(0.8 <= w <= 1.2 for w in waits)
