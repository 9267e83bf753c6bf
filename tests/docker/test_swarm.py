"""docker/compose.yaml, the file users run: three volunteers train together, and after ``docker kill`` of the
bootstrap replica the other two go on training together.

Runs the file with ``docker compose`` or Debian's ``docker-compose`` (1.29); where neither is installed, starts the
file's service three times with plain ``docker run`` on a network of its own, as compose would.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.docker.conftest import ROOT, Container, docker, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
LINE = re.compile(r" training +\| peers (\d+) \| step (\d+) \| .*\| credited ([\d,]+),")


def compose_cli() -> list[str] | None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def last_training(container: Container) -> tuple[int, int, int] | None:
    """(peers, global step, swarm samples) of the newest training line."""
    found = LINE.findall(container.logs())
    if not found:
        return None
    peers, step, swarm = found[-1]
    return int(peers), int(step), int(swarm.replace(",", ""))


def start_with_compose(cli: list[str], project: str) -> list[Container]:
    command = [*cli, "-p", project, "-f", str(COMPOSE_FILE), "up", "-d", "--scale", "volunteer=3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    names = [docker("inspect", "--format", "{{.Name}}", i).stdout.strip().lstrip("/") for i in ids]
    return [Container(n) for n in names]


def start_with_docker_run(names, image: str) -> list[Container]:
    """The compose file's one service, run three times as compose runs it: a network and a shared volume."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["volunteer"]
    network, volume = names("swarm-net"), names("swarm-data")
    docker("network", "create", network)
    options = ["--network", network, "--shm-size", service["shm_size"], "--entrypoint", service["entrypoint"][0]]
    for key, value in service["environment"].items():
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
        options += ["-e", f"{key}={default.group(1) if default else value}"]
    (mount,) = service["volumes"]
    options += ["-v", mount.replace("swarm-data:", f"{volume}:")]
    containers = []
    for n in range(service["deploy"]["replicas"]):
        name = names(f"swarm-{n}")
        docker("run", "-d", "--name", name, *options, image, *service["entrypoint"][1:])
        containers.append(Container(name))
    return containers


def test_compose_swarm_survives_killing_its_bootstrap(image: str, names) -> None:
    cli = compose_cli()
    project = names("swarm")
    containers = start_with_compose(cli, project) if cli else start_with_docker_run(names, image)
    try:
        assert len(containers) == 3

        def all_together():
            lines = [last_training(c) for c in containers]
            return all(line is not None and line[0] == 3 for line in lines)

        wait_for(
            "three replicas training as one swarm", all_together, timeout=300, interval=2,
            detail=lambda: "\n".join(c.logs()[-1500:] for c in containers),
        )  # fmt: skip
        (bootstrap,) = [c for c in containers if "as its bootstrap peer" in c.logs()]
        survivors = [c for c in containers if c is not bootstrap]
        docker("kill", bootstrap.name)
        step_at_kill = max(last_training(c)[1] for c in survivors)
        swarm_at_kill = [last_training(c)[2] for c in survivors]

        def two_go_on():
            lines = [last_training(c) for c in survivors]
            return all(
                line[0] == 2 and line[1] >= step_at_kill + 1 and line[2] > before
                for line, before in zip(lines, swarm_at_kill, strict=True)
            )

        wait_for(
            "the two survivors to take global steps together", two_go_on, timeout=240, interval=2,
            detail=lambda: "\n".join(c.logs()[-1500:] for c in survivors),
        )  # fmt: skip
        assert not bootstrap.state()["Running"]
    finally:
        if cli:
            subprocess.run(
                [*cli, "-p", project, "-f", str(COMPOSE_FILE), "down", "-v", "-t", "15"],
                capture_output=True,
                timeout=180,
            )
        docker("rm", "-f", "-v", *[c.name for c in containers], check=False)
