"""The image's helper scripts: the dependency layer (docker/requirements.py) and the swarm slots (volunteer-swarm)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from volunteer.swarm.multiaddrs import validate_peer_address

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


requirements = load("requirements")
swarm = load("swarm_entrypoint")


# --- requirements.py ----------------------------------------------------------------------------------------


def test_requirements_keep_every_dependency_and_pin_the_installed_torch() -> None:
    import torch

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = requirements.requirements(dependencies)
    assert f"torch=={torch.__version__}" in lines
    assert [line for line in lines if not line.startswith("torch")] == [
        d for d in dependencies if not d.startswith("torch")
    ]


def test_requirements_run_as_the_dockerfile_runs_them() -> None:
    pytest.importorskip("tomllib", reason="requirements.py reads pyproject.toml with Python 3.11's tomllib")
    result = subprocess.run(
        [sys.executable, "docker/requirements.py", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("torch==") for line in lines)
    assert any(line.startswith("hivemind") for line in lines)


def test_a_base_image_torch_outside_the_range_stops_the_build() -> None:
    with pytest.raises(SystemExit, match="BASE_IMAGE"):
        requirements.requirements(["torch>=2.4,<3"], installed=lambda name: "1.13.1+cu117")


def test_without_torch_installed_the_range_is_kept() -> None:
    assert requirements.requirements(["torch>=2.4,<3", "lightning>=2.6"], installed=lambda name: None) == [
        "torch>=2.4,<3",
        "lightning>=2.6",
    ]


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("torch>=2.4,<3", "torch"),
        ("Torch >= 2", "torch"),
        ("huggingface_hub>=1.0", "huggingface-hub"),
        ("torchvision", "torchvision"),
    ],
)
def test_requirement_names(requirement: str, name: str) -> None:
    assert requirements.requirement_name(requirement) == name


# --- volunteer-swarm ----------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("VOLUNTEER_INITIAL_PEERS", "INITIAL_PEERS", "VOLUNTEER_SWARM_WAIT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


@pytest.fixture
def listening() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections, standing in for a replica's hivemind port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def hold(root: Path, n: int, maddr: str | None = None) -> int:
    """Act as a live replica in slot n: hold its lock and publish its address."""
    (root / "slots").mkdir(parents=True, exist_ok=True)
    fd = os.open(swarm.slot_lock(root, n), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if maddr:
        swarm.slot_maddr(root, n).write_text(maddr + "\n")
    return fd


PEER_ID = "QmcbsAeBaPMHJxf1Wr7P7rGH58uXWDsN68fFRBzxAjLjp2"


def test_slots_are_claimed_lowest_first_and_freed_with_their_holder(root: Path) -> None:
    first, fd0 = swarm.claim_slot(root)
    second, fd1 = swarm.claim_slot(root)
    assert (first, second) == (0, 1)
    assert swarm.slot_alive(root, 0) and swarm.slot_alive(root, 1)
    assert os.get_inheritable(fd0), "the lock must survive exec into the client"
    os.close(fd0)
    assert not swarm.slot_alive(root, 0)
    again, fd0 = swarm.claim_slot(root)
    assert again == 0
    os.close(fd0)
    os.close(fd1)


def test_the_fixed_port_comes_from_the_listening_addresses() -> None:
    assert swarm.tcp_port("/ip4/0.0.0.0/tcp/31337 /ip4/0.0.0.0/udp/31337/quic-v1") == 31337
    with pytest.raises(SystemExit, match="fixed TCP port"):
        swarm.tcp_port("/ip4/0.0.0.0/tcp/0")
    with pytest.raises(SystemExit):
        swarm.tcp_port(None)


def test_identity_is_created_once_and_gives_a_valid_peer_address(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    peer_id = swarm.ensure_identity(path)
    assert path.stat().st_size >= 64
    assert swarm.ensure_identity(path) == peer_id
    validate_peer_address(f"/ip4/172.18.0.2/tcp/31337/p2p/{peer_id}")


def test_only_live_answering_replicas_are_joined(root: Path, listening: int) -> None:
    live = f"/ip4/127.0.0.1/tcp/{listening}/p2p/{PEER_ID}"
    fds = [hold(root, 0, live), hold(root, 2, f"/ip4/127.0.0.1/tcp/1/p2p/{PEER_ID}")]  # 2 holds, answers nothing
    swarm.slot_maddr(root, 3).write_text(live)  # 3 published once, but holds no lock: gone
    try:
        assert swarm.live_peers(root, me=1) == [live]
        assert swarm.live_peers(root, me=0) == []
    finally:
        for fd in fds:
            os.close(fd)


def test_slot_zero_alone_becomes_the_bootstrap_without_waiting(root: Path) -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError("slot 0 must not wait")

    assert swarm.choose_peers(root, 0, wait=60, sleep=no_sleep) == []


def test_a_joiner_waits_for_a_live_replica_then_gives_up(root: Path) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(SystemExit, match="no live replica"):
        swarm.choose_peers(root, 1, wait=10, sleep=sleep, clock=lambda: now[0])
    assert now[0] >= 10


def run_helper(monkeypatch: pytest.MonkeyPatch, root: Path, port: int, args: list[str]) -> tuple[list, dict]:
    """main() as a replica on 127.0.0.1 with hivemind port ``port``; returns the exec call it would make."""
    calls: list = []
    monkeypatch.setenv("VOLUNTEER_HOME", str(root))
    monkeypatch.setenv("VOLUNTEER_HOST_MADDRS", f"/ip4/0.0.0.0/tcp/{port} /ip4/0.0.0.0/udp/{port}/quic-v1")
    monkeypatch.setenv("VOLUNTEER_SWARM_WAIT", "5")
    monkeypatch.setattr(swarm, "own_ip", lambda: "127.0.0.1")
    monkeypatch.setattr(swarm.time, "sleep", lambda s: None)
    swarm.main(args, execute=lambda file, argv, environ: calls.append((file, argv, environ)))
    (call,) = calls
    return call, call[2]


def test_a_swarm_of_two_replicas(root: Path, listening: int, monkeypatch: pytest.MonkeyPatch) -> None:
    (file, argv, _), first = run_helper(monkeypatch, root, listening, ["--project", "demo"])
    assert (file, argv) == ("volunteer", ["volunteer", "--project", "demo"])
    assert first["VOLUNTEER_HOME"] == str(root / "peer-0")
    assert "VOLUNTEER_INITIAL_PEERS" not in first, "the first replica is the bootstrap"
    bootstrap = swarm.slot_maddr(root, 0).read_text().strip()
    assert bootstrap.startswith(f"/ip4/127.0.0.1/tcp/{listening}/p2p/")
    validate_peer_address(bootstrap)
    assert swarm.slot_alive(root, 0), "the first replica's slot stays held (by the fd passed through exec)"

    _, second = run_helper(monkeypatch, root, listening, [])
    assert second["VOLUNTEER_HOME"] == str(root / "peer-1")
    assert second["VOLUNTEER_INITIAL_PEERS"] == bootstrap
    assert (root / "peer-1" / "identity.key").exists()


def test_given_initial_peers_win(root: Path, listening: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = hold(root, 0)  # a live slot 0 that never publishes: without the flag this replica would wait
    try:
        peers = f"/ip4/203.0.113.5/tcp/31337/p2p/{PEER_ID}"
        _, environ = run_helper(monkeypatch, root, listening, ["--initial-peers", peers])
    finally:
        os.close(fd)
    assert environ["VOLUNTEER_HOME"] == str(root / "peer-1")
    assert "VOLUNTEER_INITIAL_PEERS" not in environ
