"""``docker run -d``: trains headless, healthy, as uid 1000, writing only to /data (and /tmp); stops within 10 s with
its ledger written; a new container on the same volume, read-only this time, keeps the peer id and the totals."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.docker.conftest import docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

# a health check every 2 s instead of the image's 30 s, so that the test need not wait half a minute
FAST_HEALTH = ("--health-interval=2s", "--health-start-period=5m")


def ledger(image: str, volume: str) -> dict:
    out = docker(
        "run", "--rm", "--network", "none", "-v", f"{volume}:/data", "--entrypoint", "cat", image,
        "/data/ledger/volunteer-demo.json",
    ).stdout  # fmt: skip
    return json.loads(out)


def stop_within_docker_default(container) -> float:
    started = time.monotonic()
    docker("stop", container.name, timeout=60)  # Docker's default: SIGKILL after 10 s
    elapsed = time.monotonic() - started
    state = container.state()
    assert state["ExitCode"] == 0, container.logs()[-3000:]
    assert not state["OOMKilled"]
    assert elapsed < 10, f"docker stop took {elapsed:.1f} s: Docker would have killed it"
    print(f"docker stop {container.name}: {elapsed:.1f} s, exit 0")
    return elapsed


def contributed(logs: str) -> int:
    """Samples the session computed, from its stop line."""
    found = re.findall(r"\[stopped\] stopped \(\w+\); this session computed ([\d,]+) samples", logs)
    assert found, logs[-3000:]
    return int(found[-1].replace(",", ""))


def peer_id(logs: str) -> str:
    found = re.findall(r"\[joined\] peer (\w+) ", logs)
    assert found, logs[-3000:]
    return found[-1]


def test_headless_run_stop_and_restart_read_only(run, names, image: str) -> None:
    volume = names("data")
    # docs/docker.md: docker run -d --restart unless-stopped --name volunteer --shm-size=1g -v volunteer-data:/data ...
    first = run("headless", "--restart", "unless-stopped", "--shm-size=1g", *FAST_HEALTH, "-v", f"{volume}:/data")
    first.wait_training(lines=2)
    first.wait_healthy()
    assert "healthy: state is training" in first.exec("python3", "-m", "volunteer.healthcheck").stdout
    # not root: the client (under tini, PID 1) and what docker exec runs are uid 1000
    assert first.exec("stat", "-c", "%u", "/proc/1").stdout.strip() == "1000"
    assert first.exec("id", "-u").stdout.strip() == "1000"
    # nothing written outside /data (a volume, not in the diff) except sockets and scratch files in /tmp
    changed = [line.split(" ", 1)[1] for line in docker("diff", first.name).stdout.splitlines()]
    assert all(path == "/tmp" or path.startswith("/tmp/") for path in changed), changed
    logs = first.logs()
    assert "Traceback" not in logs

    stop_within_docker_default(first)
    logs = first.logs()
    samples, peer = contributed(logs), peer_id(logs)
    record = ledger(image, volume)
    assert record["samples"] == samples > 0, "the ledger holds every sample of the session"
    assert record["peer_id"] == peer and record["sessions"] == 1
    docker("rm", first.name)

    # a new container on the same volume, with a read-only root file system and a tmpfs for /tmp
    second = run("readonly", "--read-only", "--tmpfs", "/tmp", "--shm-size=1g", *FAST_HEALTH, "-v", f"{volume}:/data")
    lines = second.wait_training(lines=1)
    second.wait_healthy()
    assert peer_id(second.logs()) == peer, "the same identity"
    computed = int(re.search(r" of ([\d,]+) computed", lines[-1]).group(1).replace(",", ""))
    assert computed >= samples, "all-time totals carry on from the first container's"
    stop_within_docker_default(second)
    second_samples = contributed(second.logs())
    record = ledger(image, volume)
    assert record["peer_id"] == peer and record["sessions"] == 2
    assert record["samples"] == samples + second_samples
