"""A volunteer with nobody but the author's host (``volunteer host``, an auxiliary peer that trains nothing).

Real processes on 127.0.0.1: the host and headless volunteers of one project.

Two of them alone (the host and one volunteer): the host publishes no progress record (hivemind's tracker
reports only a peer that accumulated samples), so the volunteer's tracker does not count it and begins no
averaging round: it steps at its own pace (0.1 s a global step here) and is credited nothing. That held on the
code before this test too; it stays as a guard, since a host that were counted would cost a whole matchmaking
window per global step (it sends no count of the peers to expect) and credit the volunteer for its steps alone.

Where the host and the lone volunteer do meet in a round is beside a volunteer gone without a goodbye, whose
progress record both of them count until it expires: the host marks its rounds as auxiliary and the volunteer
is not credited for them (a group of two was swarm work before).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.procs import Proc, wait_for
from tests.integration.volunteers import Volunteer, free_port, host_swarm
from tests.support.projects import isolate_environment
from volunteer.authoring.init import create_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WINDOW = 15.0
"""The project's matchmaking_time, in seconds: far longer than a lone volunteer's global step here."""
STEPS = 4
"""Global steps the volunteer takes after its first one; alone, they fit in one window several times over."""
FAST = {  # a global step within a second on two busy CPU cores
    "target_batch_size = 4096": "target_batch_size = 512",
    "batch_size = 64 ": "batch_size = 16 ",
}


@dataclass
class Run:
    steps: dict[int, float]
    """Global step -> the moment (monotonic) the volunteer's status first showed it."""
    window_end: float
    """The first global step's moment plus one matchmaking window: where observation stopped at the latest."""
    status: dict
    """The volunteer's last status."""
    host: dict
    """The host's last report of the swarm."""


def _project(tmp: Path, window: float) -> Path:
    root = create_project(tmp / "spirals", run_id="spirals-host-credit").root
    manifest = root / "volunteer.toml"
    text = manifest.read_text()
    for old, new in {**FAST, "matchmaking_time = 5.0": f"matchmaking_time = {window}"}.items():
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace("averaging_timeout = 30.0", f"averaging_timeout = {3 * window}")
    manifest.write_text(text)
    return root


def _host(tmp: Path, root: Path, port: int) -> Proc:
    args = ["host", "--project", str(root), "--data-dir", str(tmp / "host"), "--host-maddrs", "/ip4/127.0.0.1/tcp/0"]
    return Proc.python("volunteer", *args, "--peers-port", str(port), "--peers-bind", "127.0.0.1", log=tmp / "host.log")


@pytest.fixture(scope="module")
def beside_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("host-credit")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_environment(monkeypatch, tmp)
        yield _run(tmp)


def _run(tmp: Path) -> Run:
    root = _project(tmp, WINDOW)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = _host(tmp, root, port)
    volunteer = None
    try:
        address = wait_for(lambda: (host_swarm(url).get("peers") or [None])[0], 90, "the host's address", [host])
        volunteer = Volunteer(tmp, "lone", project=str(root), peers=address)
        first = volunteer.wait_status(lambda s: s["local_epoch"] >= 1, 120, "a first global step")["local_epoch"]
        steps = {first: time.monotonic()}
        window_end = steps[first] + WINDOW
        status = volunteer.status() or {}
        while time.monotonic() < window_end and max(steps) < first + STEPS:
            status = volunteer.status() or status
            steps.setdefault(int(status.get("local_epoch", 0)), time.monotonic())
            time.sleep(0.1)
        # every step's samples are judged (credited or local-only) once its round has ended: wait for the last
        volunteer.wait_status(lambda s: s["local_epoch"] > max(steps), 3 * WINDOW, "one more global step", [])
        intervals = [round(steps[e] - steps[e - 1], 2) for e in sorted(steps)[1:] if e - 1 in steps]
        print(f"seconds between global steps beside the host: {intervals}; steps {steps}; host {host_swarm(url)}")
        # the views show what the ledger holds, written every second (LEDGER_INTERVAL): give it two writes
        deadline = time.monotonic() + 2.5
        status = volunteer.status() or status
        while status.get("local_only_samples", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            status = volunteer.status() or status
        return Run(steps, window_end, status, host_swarm(url).get("swarm", {}))
    finally:
        if volunteer is not None:
            volunteer.stop()
        host.stop()


def test_a_lone_volunteer_beside_a_host_steps_without_waiting_out_the_window(beside_host: Run) -> None:
    """Alone but for the host, global steps follow one another at the volunteer's own pace: several of them fit in
    one matchmaking window (a round with the host would end at the window's end: one step per window at most),
    and the host was in no averaging round."""
    steps = sorted(beside_host.steps)
    assert steps[-1] - steps[0] >= STEPS, f"global steps seen within one {WINDOW} s window: {beside_host.steps}"
    assert beside_host.host.get("gradient_rounds") == 0, beside_host.host


def test_a_lone_volunteer_beside_a_host_gains_no_swarm_credit(beside_host: Run) -> None:
    """Nobody else trained: every sample the volunteer put into a global step is local-only, none credited."""
    status = beside_host.status
    assert status["swarm_samples"] == 0, status
    assert status["local_only_samples"] > 0, status


GONE_WINDOW = 8.0
"""The matchmaking window of the departed-peer test: four global steps of it fit in the record's minute."""


def test_rounds_with_nobody_but_the_host_earn_no_credit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two volunteers train beside the host; one is killed (no goodbye), and its progress record stays in the DHT
    for a minute: the lone volunteer and the host both count it, so every global step of the lone one averages with
    the host alone (after the window). Those steps are local-only now; hivemind's group of two made them swarm
    work. The host being in those rounds is checked too, so that the test cannot pass for want of them."""
    isolate_environment(monkeypatch, tmp_path)
    root = _project(tmp_path, GONE_WINDOW)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = _host(tmp_path, root, port)
    volunteers: list[Volunteer] = []
    try:
        address = wait_for(lambda: (host_swarm(url).get("peers") or [None])[0], 90, "the host's address", [host])
        a = Volunteer(tmp_path, "a", project=str(root), peers=address)
        volunteers.append(a)
        b = Volunteer(tmp_path, "b", project=str(root), peers=address)
        volunteers.append(b)
        a.wait_status(lambda s: s["swarm_samples"] > 0, 150, "a global step credited with b", [b])
        b.proc.kill()  # gone without a goodbye: its progress record stays until it expires
        gone = a.status()["local_epoch"]
        # from gone + 2 on, every step began after the kill and was judged (at a's next batch) after it; b's record
        # lives 60 s after its last report, and a's steps beside the host alone took 10.8 s each here (window 8 s)
        before = a.wait_status(lambda s: s["local_epoch"] >= gone + 2, 6 * GONE_WINDOW, "steps after b left", [])
        host_before, started = host_swarm(url).get("swarm", {}), time.monotonic()
        after = a.wait_status(lambda s: s["local_epoch"] >= gone + 4, 6 * GONE_WINDOW, "two more steps alone", [])
        host_after, steps = host_swarm(url).get("swarm", {}), after["local_epoch"] - before["local_epoch"]
        print(f"lone beside the host, b's record alive: {(time.monotonic() - started) / steps:.2f} s per global step")
    finally:
        for volunteer in volunteers:
            volunteer.stop()
        host.stop()

    assert host_after["gradient_rounds"] > host_before["gradient_rounds"], (host_before, host_after)
    assert after["swarm_samples"] == before["swarm_samples"], (before, after)
    assert after["local_only_samples"] > before["local_only_samples"], (before, after)
