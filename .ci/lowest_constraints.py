"""Print pip constraints that pin the project's direct dependencies to the lowest versions pyproject.toml allows.

``--build`` prints the build system's floors (setuptools), the rest the runtime dependencies'. pip has no "lowest"
resolution of its own; uv's ``--resolution lowest-direct`` does this, but uv does not see the CPU torch wheel these
machines keep on disk. torch is left out: PyPI offers only CUDA builds of the older releases, several GB each, so the
lowest-versions job runs on the CPU torch that the README's commands install.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

SKIPPED = {"torch", "wheel"}


def lowest_pins(requirements: list[str]) -> list[str]:
    """``name==floor`` for each requirement that applies here; exits naming one without a lower bound."""
    pins = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name in SKIPPED or (requirement.marker and not requirement.marker.evaluate()):
            continue
        floors = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
        if not floors:
            sys.exit(f"{requirement.name} has no lower bound in pyproject.toml: give it one (>=)")
        pins.append(f"{requirement.name}=={max(floors, key=Version)}")
    return pins


if __name__ == "__main__":
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    if "--build" in sys.argv[1:]:
        print("\n".join(lowest_pins(pyproject["build-system"]["requires"])))
    else:
        print("\n".join(lowest_pins(pyproject["project"]["dependencies"])))
