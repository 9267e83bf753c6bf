"""Projects from outside the image: a Hub project through ``HF_ENDPOINT`` (the test Hub server, reached over the
host's network), and a project folder whose model does not fit in Docker's default 64 MB ``/dev/shm``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.docker.conftest import ROOT, docker
from tests.support.hubserver import HubServer
from tests.support.projects import project_files

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def test_hub_project_through_hf_endpoint(image: str, names) -> None:
    volume = names("hub-data")
    with HubServer() as hub:
        repo = hub.add_repo("lab/tiny")
        sha = repo.commit(project_files())
        # --network host: the container reaches the test Hub on the host's 127.0.0.1; its own ports must then
        # not clash with the host's, so hivemind takes a free port and the status endpoint is off
        result = docker(
            "run", "--rm", "--network", "host", "--shm-size=1g", "-v", f"{volume}:/data",
            "-e", f"HF_ENDPOINT={hub.url}", "-e", "VOLUNTEER_HOST_MADDRS=/ip4/127.0.0.1/tcp/0",
            image, "--project", "lab/tiny", "--trust", "--max-steps", "20", "--status-port", "0",
            timeout=300, check=False,
        )  # fmt: skip
        logs = result.stdout + result.stderr
        assert result.returncode == 0, logs[-3000:]
        assert "Traceback" not in logs
        assert any(path.startswith("/lab/tiny/resolve/") for _, path, _ in hub.requests)
        assert "[stopped]" in logs
    # the snapshot is cached in the volume at the commit main pointed to
    listing = docker(
        "run", "--rm", "--network", "none", "-v", f"{volume}:/data", "--entrypoint", "ls", image,
        "/data/hf/hub/models--lab--tiny/snapshots",
    ).stdout.split()  # fmt: skip
    assert listing == [sha]
    docker("volume", "rm", volume, check=False)


@pytest.fixture
def big_project(tmp_path: Path) -> Path:
    """The demo's MLP with 4096 hidden units: 16.9 M parameters, 64.5 MiB each copy in fp32."""
    root = tmp_path / "big"
    root.mkdir()
    shutil.copy(ROOT / "volunteer" / "demo" / "model.py", root / "model.py")
    manifest = (ROOT / "volunteer" / "demo" / "volunteer.toml").read_text()
    manifest = manifest.replace("hidden_dim = 128", "hidden_dim = 4096").replace('file = "peers.txt"', "")
    (root / "volunteer.toml").write_text(manifest.replace('run_id = "volunteer-demo"', 'run_id = "big-test"'))
    root.chmod(0o755)
    for path in root.iterdir():
        path.chmod(0o644)
    return root


def test_a_model_too_big_for_dockers_default_shm_stops_with_the_fix(image: str, big_project: Path, names) -> None:
    mount = ["-v", f"{big_project}:/project:ro"]
    # no --shm-size: Docker's 64 MB
    result = docker("run", "--rm", *mount, image, "--project", "/project", timeout=300, check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors[0].startswith("error: /dev/shm has 64 MB free of 64 MB, but training this model (16.9 M parameters)")
    assert errors[1].startswith("hint: give the container more shared memory: docker run --shm-size=512m")
    assert "restart" not in result.stdout, "refused at once, not after six crashed training processes"

    doctor = docker("run", "--rm", *mount, image, "doctor", "--project", "/project", timeout=300, check=False)
    assert doctor.returncode == 1
    assert "FAIL  shm" in doctor.stdout and "--shm-size=512m" in doctor.stdout

    doctor = docker(
        "run", "--rm", "--shm-size=512m", *mount, image, "doctor", "--project", "/project", timeout=300, check=False
    )
    assert "ok    shm" in doctor.stdout, doctor.stdout
