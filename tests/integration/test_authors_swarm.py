"""From an empty folder to a swarm that newcomers find, with real processes on 127.0.0.1 and the local Hub.

init -> check -> publish -> ``volunteer host`` (a real auxiliary peer) writes its address into the peers file
on the Hub -> a volunteer started from the published project alone (no --initial-peers) joins through it -> a
reset peers file is repaired -> a second volunteer joins the same way and they train together, the host helping
to average -> both leave -> a newcomer still finds the swarm through the refreshed list, and takes the model's
state from the host.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.procs import Proc, wait_for
from tests.integration.volunteers import Volunteer, free_port
from tests.support.hubserver import HubServer
from tests.support.projects import isolate_environment
from volunteer.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "hf_lab_writer"
REPO = "lab/spirals"
DEAD_PEER = "/ip4/127.0.0.1/tcp/9/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
FAST = {  # a global step every few seconds on two CPU cores
    "target_batch_size = 4096": "target_batch_size = 512",
    "batch_size = 64 ": "batch_size = 16 ",
    "matchmaking_time = 5.0": "matchmaking_time = 3.5",
    "averaging_timeout = 30.0": "averaging_timeout = 15.0",
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    with HubServer() as server:
        server.add_writer(TOKEN, "lab")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def _peers_on_hub(hub: HubServer) -> list[str]:
    text = hub.repos[REPO].files().get("peers.txt", b"").decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _event_messages(volunteer: Volunteer) -> list[str]:
    return [f"[{e['kind']}] {e['message']}" for e in volunteer.events()]


def test_from_init_to_a_swarm_that_newcomers_find(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    # 1. init, made fast for two CPU cores; check; publish
    assert main(["init", "spirals", "--repo", REPO, "--run-id", "spirals-e2e"]) == 0
    manifest = tmp_path / "spirals" / "volunteer.toml"
    text = manifest.read_text()
    for old, new in FAST.items():
        assert old in text
        text = text.replace(old, new)
    manifest.write_text(text)
    assert main(["check", "spirals", "--steps", "3"]) == 0
    assert main(["publish", "spirals", "--repo", REPO, "--endpoint", hub.url, "--check-steps", "0"]) == 0
    out = capsys.readouterr().out
    published = hub.repos[REPO].refs["main"]
    assert f"volunteer --project {REPO}@{published}" in out and _peers_on_hub(hub) == []

    procs: list[Proc] = []
    volunteers: list[Volunteer] = []
    env = {"HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        # 2. the host, pinned to the published commit, keeps main's peers file fresh
        peers_port = free_port()
        host = Proc.python(
            "volunteer",
            "host",
            "--project",
            f"{REPO}@{published}",
            "--trust",
            "--endpoint",
            hub.url,
            "--data-dir",
            str(tmp_path / "host"),
            "--host-maddrs",
            "/ip4/127.0.0.1/tcp/0",
            "--peers-port",
            str(peers_port),
            "--peers-bind",
            "127.0.0.1",
            "--refresh-every",
            "2s",
            "--drop-after",
            "2",
            "--log-every",
            "5s",
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--checkpoint-every",
            "5s",
            "--state-every",
            "1s",
            log=tmp_path / "host.log",
            env=env,
        )
        procs.append(host)
        swarm_url = f"http://127.0.0.1:{peers_port}"

        def swarm() -> dict:
            status, body = _get(swarm_url + "/swarm")
            return json.loads(body) if status == 200 else {}

        own = wait_for(lambda: swarm().get("addresses"), 90, "the host to come up", procs)
        wait_for(lambda: _peers_on_hub(hub) == own, 30, "the host to write its address on the Hub", procs)
        first_write = hub.repos[REPO].refs["main"]
        assert hub.repos[REPO].messages[first_write] == "volunteer host: peers.txt lists 1 address"
        assert _get(swarm_url + "/peers") == (200, "\n".join(own) + "\n")

        # 3. a volunteer started from the published project only: it finds the host through the peers file
        a = Volunteer(tmp_path, "a", project=REPO, extra=("--endpoint", hub.url))
        volunteers.append(a)
        a.wait_training(90)
        assert any("joined through 1 initial peer(s)" in m for m in _event_messages(a)), _event_messages(a)

        # 4. somebody resets the peers file to a machine that is gone: the host repairs it, then drops that one
        hub.repos[REPO].commit({"peers.txt": f"# edited by hand\n{DEAD_PEER}\n"}, message="hand edit")
        wait_for(lambda: _peers_on_hub(hub)[:1] == own, 30, "the host to put itself back first", procs)
        wait_for(lambda: _peers_on_hub(hub) == own, 30, "the host to drop the dead peer", procs)
        assert "removed " + DEAD_PEER in host.output()

        # 5. a second volunteer, from the published project alone; they train together, the host averaging
        b = Volunteer(tmp_path, "b", project=REPO, extra=("--endpoint", hub.url))
        volunteers.append(b)
        b.wait_training(90)
        b.wait_status(lambda s: s["num_peers"] >= 2, 60, "both volunteers in the swarm", volunteers)
        epoch = b.status()["global_epoch"]
        for v in (a, b):
            v.wait_status(lambda s, e=epoch: s["global_epoch"] >= e + 2, 90, "global steps together", volunteers)
        board = wait_for(
            lambda: {e["nickname"] for e in swarm().get("leaderboard", [])} >= {"a", "b"} and swarm(),
            30,
            "the host to see both on the leaderboard",
            procs,
        )
        wait_for(lambda: swarm()["swarm"]["averaging_rounds"] >= 1, 60, "the host to help averaging", procs)
        assert board["swarm"]["volunteers_seen"] >= 2
        assert re.search(r"\[averaged\] helped average (gradients|parameters) with \d+ peers", host.output())

        # 6. everyone leaves; a newcomer later finds the swarm through the list and takes the state from the host
        reached = max(v.status()["global_epoch"] for v in (a, b))
        for v in (a, b):
            v.proc.signal(signal.SIGTERM)
        for v in (a, b):
            wait_for(lambda v=v: v.proc.popen.poll() is not None, 15, f"{v.name} to leave")
        wait_for(lambda: swarm()["swarm"]["state_epoch"] >= reached - 1, 30, "the host to hold the latest state", procs)
        checkpoints = sorted((tmp_path / "checkpoints").glob("spirals-e2e-step*.pt"))
        assert checkpoints, host.output()[-3000:]
        c = Volunteer(tmp_path, "c", project=REPO, extra=("--endpoint", hub.url))
        volunteers.append(c)
        c.wait_training(90)
        loaded = [m for m in _event_messages(c) if m.startswith("[state_loaded]")]
        assert loaded, _event_messages(c)
        step = int(re.search(r"global step (\d+)", loaded[0]).group(1))
        assert step >= reached - 1

        # 7. the host leaves cleanly within 10 s of SIGTERM
        t0 = time.monotonic()
        host.signal(signal.SIGTERM)
        code = wait_for(lambda: host.popen.poll() is not None and [host.popen.returncode], 15, "the host to exit")
        assert code == [0] and time.monotonic() - t0 < 10, host.output()[-3000:]
        assert "[stopped] the host left the swarm" in host.output()
    finally:
        for v in volunteers:
            v.stop()
        for p in procs:
            p.stop()
    print(f"end to end in {time.monotonic() - started:.0f} s", file=sys.stderr)


def test_host_refuses_to_update_the_peers_file_without_write_access(hub: HubServer, tmp_path: Path) -> None:
    """No token that may write: the host stops at its first update with the error and the way out."""
    assert main(["init", "spirals", "--repo", REPO]) == 0
    assert main(["publish", "spirals", "--repo", REPO, "--endpoint", hub.url, "--check-steps", "0"]) == 0
    hub.add_writer("hf_reader_only")  # known, may write nowhere
    env = {"HF_TOKEN": "hf_reader_only", "HF_HOME": str(tmp_path / "hf-home")}
    host = Proc.python(
        "volunteer",
        "host",
        "--project",
        REPO,
        "--trust",
        "--endpoint",
        hub.url,
        "--data-dir",
        str(tmp_path / "host"),
        "--host-maddrs",
        "/ip4/127.0.0.1/tcp/0",
        log=tmp_path / "host.log",
        env=env,
    )
    try:
        code = wait_for(lambda: host.popen.poll() is not None and [host.popen.returncode], 90, "the host to stop")
        lines = [line for line in host.output().splitlines() if line.startswith(("error:", "hint:"))]
        assert code == [2], host.output()[-3000:]
        assert lines[0] == f"error: the access token may not update the peers file of {REPO} (HTTP 403)"
        assert (
            lines[1].startswith("hint: use a token with write access to lab") and "--no-update-peers-file" in lines[1]
        )
    finally:
        host.stop()
