"""The image, built by a real Docker engine once per test session, and containers started from it.

Skipped, with the reason, where no engine answers or no base image is at hand. The base image is
``VOLUNTEER_TEST_BASE_IMAGE``, else the CPU base that ``docker/build-cpu-base.sh`` builds (``.ci/run`` runs it),
else the Dockerfile's own CUDA base when the engine already has it. Everything the tests create is named
``volunteer-test-<pid>-...`` and removed at the end; the image they build is ``volunteer`` (the docs' name).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_BASE = "volunteer-cpu-base:bookworm-torch2.13.0"
CUDA_BASE = "pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime"
IMAGE = "volunteer"
PREFIX = f"volunteer-test-{os.getpid()}"
BUILD_TIMEOUT = 900
LABELS = {
    "REVISION": "0123456789abcdef0123456789abcdef01234567",
    "CREATED": "2026-01-02T03:04:05Z",
    "SOURCE": "https://example.org/volunteer.git",
    "URL": "https://example.org/volunteer",
}


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker command (.ci/run installs docker.io and starts dockerd)"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer 'docker info' within 30 s"
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        return f"no Docker engine answers ({said[-1] if said else f'docker info exited {result.returncode}'})"
    return None


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False, timeout=30).returncode == 0


def build_args(base: str) -> list[str]:
    args = ["--build-arg", f"BASE_IMAGE={base}"]
    for name, value in LABELS.items():
        args += ["--build-arg", f"{name}={value}"]
    return args


def wait_for(
    what: str,
    condition: Callable[[], object],
    timeout: float,
    interval: float = 1.0,
    detail: Callable[[], str] | None = None,
) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what`` (and ``detail()``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{detail()}" if detail else "")
            )
        time.sleep(interval)


@dataclass
class Container:
    name: str

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self) -> dict:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)

    def health(self) -> str | None:
        return (self.state().get("Health") or {}).get("Status")

    def exec(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *args, timeout=timeout, check=check)

    def training_lines(self) -> list[str]:
        return [line for line in self.logs().splitlines() if " training " in line and "| step " in line]

    def wait_training(self, timeout: float = 240, lines: int = 1) -> list[str]:
        def ready():
            state = self.state()
            if not state["Running"]:
                raise AssertionError(f"{self.name} exited {state['ExitCode']}:\n{self.logs()[-3000:]}")
            found = self.training_lines()
            return found if len(found) >= lines else None

        return wait_for(f"{self.name} to train", ready, timeout)  # type: ignore[return-value]

    def wait_healthy(self, timeout: float = 120) -> None:
        wait_for(
            f"{self.name} to become healthy (health: {self.health()})", lambda: self.health() == "healthy", timeout
        )


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"Docker tests skipped: {problem}")


@pytest.fixture(scope="session")
def base_image(engine: None) -> str:
    chosen = os.environ.get("VOLUNTEER_TEST_BASE_IMAGE")
    if chosen:
        if not image_exists(chosen):
            pytest.skip(f"Docker tests skipped: VOLUNTEER_TEST_BASE_IMAGE={chosen} is not in the engine")
        return chosen
    for candidate in (CPU_BASE, CUDA_BASE):
        if image_exists(candidate):
            return candidate
    pytest.skip(
        f"Docker tests skipped: no base image ({CPU_BASE} or {CUDA_BASE}); build one with docker/build-cpu-base.sh"
    )


@pytest.fixture(scope="session")
def image(base_image: str) -> str:
    """``volunteer``, built with the classic builder (layers cached by the engine between sessions)."""
    previous = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    started = time.monotonic()
    docker(
        "build", "-t", IMAGE, "--network", "host", *build_args(base_image), str(ROOT),
        timeout=BUILD_TIMEOUT, env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    print(f"built {IMAGE} from {base_image} in {time.monotonic() - started:.0f} s")
    if previous and previous != docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        docker("image", "rm", previous, check=False)  # the image this build replaced: keep the disk from filling
    return IMAGE


@pytest.fixture(scope="session")
def names(engine: None) -> Iterator[Callable[[str], str]]:
    """Names for containers, volumes and networks; all of them are removed at the end of the session."""

    def name(what: str) -> str:
        return f"{PREFIX}-{what}"

    yield name
    cleanup()


def cleanup() -> None:
    containers = docker("ps", "-aq", "--filter", f"name={PREFIX}-", check=False).stdout.split()
    if containers:
        docker("rm", "-f", "-v", *containers, check=False, timeout=120)
    for kind in ("volume", "network"):
        found = docker(kind, "ls", "-q", "--filter", f"name={PREFIX}-", check=False).stdout.split()
        if found:
            docker(kind, "rm", *found, check=False)
    images = docker("image", "ls", "-q", f"{PREFIX}-*", check=False).stdout.split()
    if images:
        docker("image", "rm", "-f", *set(images), check=False)


@pytest.fixture
def run(image: str, names: Callable[[str], str]) -> Iterator[Callable[..., Container]]:
    """``run(name, *docker_run_options, args=[...])``: a detached container of the image."""
    started: list[str] = []

    def start(name: str, *options: str, args: tuple[str, ...] = ("--project", "demo")) -> Container:
        full = names(name)
        docker("run", "-d", "--name", full, *options, image, *args)
        started.append(full)
        return Container(full)

    yield start
    if started:
        docker("rm", "-f", "-v", *started, check=False, timeout=120)
