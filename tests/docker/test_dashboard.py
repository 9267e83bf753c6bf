"""``docker run -it``: the dashboard in a real terminal (tmux) shows training; the container's health check and
``docker exec ... volunteer attach`` find its session, which the dashboard mode serves on a port of its own."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.docker.conftest import Container, docker, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def test_dashboard_health_and_attach(image: str, names) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    name, volume, session = names("dashboard"), names("dashboard-data"), names("tmux")
    attach_session = names("tmux-attach")
    command = (
        f"docker run -it --name {name} --shm-size=1g --health-interval=2s -v {volume}:/data {image} --project demo"
    )
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "45", command)
    container = Container(name)
    try:
        wait_for(
            "the dashboard to show training",
            lambda: "TRAINING" in screen(session) and "samples/s" in screen(session),
            timeout=240,
            detail=lambda: screen(session),
        )
        # the session behind the dashboard listens on a port it picked, not 8471: the check must find it anyway
        recorded = container.exec("cat", "/data/status-endpoint.json").stdout
        assert ":8471" not in recorded
        container.wait_healthy()
        assert "healthy: state is training" in container.exec("python3", "-m", "volunteer.healthcheck").stdout

        tmux(
            "new-session", "-d", "-s", attach_session, "-x", "140", "-y", "45",
            f"docker exec -it {name} volunteer attach",
        )  # fmt: skip
        wait_for(
            "volunteer attach to show the session",
            lambda: "TRAINING" in screen(attach_session) and "samples/s" in screen(attach_session),
            timeout=120,
            detail=lambda: screen(attach_session),
        )
        assert "no volunteer answers" not in screen(attach_session)
        tmux("kill-session", "-t", attach_session)

        # q asks, y stops: the container exits 0
        tmux("send-keys", "-t", session, "q")
        time.sleep(1)
        tmux("send-keys", "-t", session, "y")
        wait_for("the container to exit", lambda: not container.state()["Running"], timeout=30)
        assert container.state()["ExitCode"] == 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        subprocess.run(["tmux", "kill-session", "-t", attach_session], capture_output=True)
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", volume, check=False)
