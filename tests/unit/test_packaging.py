"""What the package declares: its license file and the lower bounds the lowest-versions CI job installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_license_file_matches_the_declared_license():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_lowest_versions_job_pins_every_direct_dependency_but_torch():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = subprocess.run(
        [sys.executable, ".ci/lowest_constraints.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pinned = {Requirement(pin).name for pin in pins}
    wanted = {
        Requirement(line).name
        for line in pyproject["project"]["dependencies"]
        if not Requirement(line).marker or Requirement(line).marker.evaluate()
    } - {"torch"}
    assert pinned == wanted
    assert all("==" in pin for pin in pins)
    build = subprocess.run(
        [sys.executable, ".ci/lowest_constraints.py", "--build"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert build == ["setuptools==77.0.3"]


def test_the_image_installs_the_gpu_extra_for_nvml():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    assert any(Requirement(line).name == "nvidia-ml-py" for line in gpu)
    command = [sys.executable, "docker/requirements.py", "pyproject.toml"]
    lines = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert set(gpu) <= set(lines)
