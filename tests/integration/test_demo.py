"""``volunteer demo``: a whole swarm on this machine; quitting the dashboard leaves no process behind."""

from __future__ import annotations

import contextlib
import time
import uuid

import psutil
import pytest

import tui
from tui.launch import demo_main
from volunteer.stats import State

pytestmark = pytest.mark.integration


def _tagged_processes(tag: str) -> list[psutil.Process]:
    """Every process, orphans included, that inherited the test's environment tag."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("VOLUNTEER_TEST_TAG") == tag:
                found.append(proc)
    return found


@pytest.mark.parametrize("ending", ["quit", "crash"])
def test_demo_swarm_trains_together_and_leaves_no_orphans(tmp_path, monkeypatch, ending):
    tag = uuid.uuid4().hex
    monkeypatch.setenv("VOLUNTEER_TEST_TAG", tag)
    seen = {}

    def dashboard(source, *, attach=False):
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError):
                snapshot = source.latest()
                names = {entry.nickname for entry in snapshot.leaderboard}
                if snapshot.state == State.TRAINING and names >= {"you", "demo-peer-1"} and snapshot.num_peers >= 2:
                    seen["snapshot"] = snapshot
                    break
            time.sleep(0.5)
        if ending == "crash":
            raise RuntimeError("the dashboard crashed")
        return 0

    monkeypatch.setattr(tui, "run_tui", dashboard)
    if ending == "crash":
        with pytest.raises(RuntimeError):
            demo_main(["--peers", "2", "--data-dir", str(tmp_path)])
    else:
        assert demo_main(["--peers", "2", "--data-dir", str(tmp_path)]) == 0
    assert "snapshot" in seen, "the demo swarm formed: both peers trained together and are on the leaderboard"
    deadline = time.monotonic() + 15
    while _tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = _tagged_processes(tag)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not leftovers, [p.info if hasattr(p, "info") else p.pid for p in leftovers]
