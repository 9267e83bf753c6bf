"""docker/compose.yaml: one scaled volunteer service that forms a swarm, checked without a Docker engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from volunteer.settings import RUN_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def service(compose: dict) -> dict:
    return compose["services"]["volunteer"]


def test_one_volunteer_service(compose: dict) -> None:
    # no top-level 'name': Debian's docker-compose (1.29) refuses the file with it; the docs pass -p instead
    assert set(compose) <= {"services", "volumes", "networks"}
    assert list(compose["services"]) == ["volunteer"]


def test_shared_memory_is_raised_from_dockers_64_mb(service: dict) -> None:
    from volunteer.shm import DOCKER_DEFAULT

    size = service["shm_size"]
    units = {"m": 2**20, "g": 2**30}
    assert int(size[:-1]) * units[size[-1]] >= 8 * DOCKER_DEFAULT


def test_builds_the_repository_image(service: dict) -> None:
    context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()


def test_is_scaled_and_scalable(service: dict) -> None:
    assert service["deploy"]["replicas"] >= 2
    # a fixed container name or published host port would stop 'docker compose up --scale volunteer=N'
    assert "container_name" not in service
    assert "ports" not in service


def test_replicas_share_one_persistent_named_volume_at_data(compose: dict, service: dict) -> None:
    mounts = [v.split(":") for v in service["volumes"]]
    assert [m[1] for m in mounts] == ["/data"]
    volume = mounts[0][0]
    assert not volume.startswith((".", "/")), "a named volume, so identities persist and belong to uid 1000"
    assert volume in compose["volumes"]


def test_entrypoint_is_the_slot_helper_under_tini(service: dict) -> None:
    entrypoint = service["entrypoint"]
    assert entrypoint == ["/usr/bin/tini", "--", "volunteer-swarm"]
    dockerfile = DockerfileParser(path=str(ROOT / "Dockerfile"))
    image_entrypoint = json.loads(next(i["value"] for i in dockerfile.structure if i["instruction"] == "ENTRYPOINT"))
    assert entrypoint[:2] == image_entrypoint[:2]
    # installed executable by a RUN: COPY --chmod needs BuildKit, which the classic builder lacks
    assert any(
        i["instruction"] == "RUN"
        and "install -m 0755 docker/swarm_entrypoint.py /usr/local/bin/volunteer-swarm" in i["value"]
        for i in dockerfile.structure
    )


def test_environment_uses_only_real_settings(service: dict) -> None:
    known = {option.env for option in RUN_OPTIONS}
    environment = service["environment"]
    assert set(environment) <= known, set(environment) - known
    assert environment["VOLUNTEER_PROJECT"].startswith("${VOLUNTEER_PROJECT:-")
    assert "VOLUNTEER_HOME" not in environment, "the slot helper chooses each replica's data directory"


def test_stops_gracefully_and_restarts_after_a_failure(service: dict) -> None:
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace and int(grace.group(1)) >= 10
    assert service["restart"] == "on-failure"
