"""The Dockerfile builds with the classic builder and with BuildKit offline, into the same image."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.docker.conftest import LABELS, PREFIX, ROOT, build_args, docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CONFIG_KEYS = ("User", "Entrypoint", "Cmd", "Env", "WorkingDir", "Volumes", "ExposedPorts", "StopSignal", "Healthcheck")
CONTENT = (
    "python3 -m pip list --format=freeze 2>/dev/null | sort; "
    "stat -c '%a %U %n' /usr/local/bin/volunteer-swarm /usr/bin/tini /data /data/hf; "
    "find /opt/volunteer /usr/local/lib/python3*/dist-packages/volunteer /usr/local/lib/python3*/dist-packages/tui "
    "-name '*.py' -exec sha256sum {} + | sort"
)


def config(image: str) -> dict:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)


def content(image: str) -> str:
    return docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", CONTENT).stdout


def buildkit_cli() -> str:
    """A docker CLI that builds with BuildKit on its own: Debian's 20.10 has it built in, newer ones need buildx."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError("no docker CLI")


def test_labels_user_and_healthcheck(image: str, base_image: str) -> None:
    cfg = config(image)
    labels = cfg["Labels"]
    prefix = "org.opencontainers.image."
    for name, value in LABELS.items():
        assert labels[prefix + name.lower()] == value
    assert labels[prefix + "base.name"] == base_image
    assert labels[prefix + "title"] == "volunteer"
    assert cfg["User"] == "1000:1000"
    assert cfg["Healthcheck"]["Test"] == ["CMD", "python3", "-m", "volunteer.healthcheck"]


def test_buildkit_builds_the_same_image_offline(image: str, base_image: str) -> None:
    """No '# syntax=' frontend to pull, no BuildKit-only flag: both builders give the same configuration and files."""
    tag = f"{PREFIX}-buildkit:latest"
    cli = buildkit_cli()
    started = time.monotonic()
    result = docker_with(cli, "build", "-t", tag, "--network", "host", *build_args(base_image), str(ROOT))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"BuildKit build: {time.monotonic() - started:.0f} s")
    try:
        classic, buildkit = config(image), config(tag)
        for key in CONFIG_KEYS:
            assert classic.get(key) == buildkit.get(key), key
        assert classic["Labels"] == buildkit["Labels"]
        files = content(image)
        assert "volunteer==0.1.0" in files and "/volunteer/shm.py" in files
        assert files == content(tag)
    finally:
        docker("image", "rm", tag, check=False)


def docker_with(cli: str, *args: str):
    import subprocess

    return subprocess.run(
        [cli, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
