"""Shared fixtures: every test leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil
import pytest


def kill_process_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process, its process group (hivemind's DHT, averagers and p2pd) and all descendants."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(pid)
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)
        with contextlib.suppress(psutil.NoSuchProcess):
            parent.send_signal(sig)


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Kill whatever a test started (p2pd daemons, DHT and averager processes) once it ends."""
    yield
    leftovers = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            # torch's shared-memory manager lives as long as this process; killing it aborts us
            if child.name() != "torch_shm_manager":
                child.kill()
                leftovers.append(child)
    psutil.wait_procs(leftovers, timeout=5)
