"""Print the image's dependency layer: pyproject's runtime dependencies and its ``gpu`` extra, torch pinned to the
installed build.

Run by the Dockerfile before the source is copied, so that a change to the code does not reinstall the
dependencies. The base image's torch is a CUDA build (``2.13.0+cu126``); left as ``torch>=2.4,<3``, a resolver
could replace it with another wheel, so the line becomes ``torch==<installed version>``, which pip finds
already satisfied. The build stops here, with a message, when the base image's torch is outside the range
pyproject allows.

Usage: python3 requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; every image this runs in has 3.11 or newer
    tomllib = None  # type: ignore[assignment]

IMAGE_EXTRA = "gpu"
"""The optional-dependencies group the image installs besides the runtime dependencies."""
PINNED = "torch"
"""The package the base image provides and pip must keep."""


def requirement_name(requirement: str) -> str:
    """The normalised project name at the start of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot read a package name in {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def satisfies(version: str, requirement: str) -> bool | None:
    """Whether ``version`` meets ``requirement``; None when ``packaging`` is not there to tell."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return None
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def requirements(dependencies: Sequence[str], installed: Callable[[str], str | None] = installed_version) -> list[str]:
    """The lines of the requirements file; raises SystemExit when the installed torch does not fit."""
    lines = []
    for dependency in dependencies:
        if requirement_name(dependency) != PINNED:
            lines.append(dependency)
            continue
        version = installed(PINNED)
        if version is None:
            print(
                f"note: {PINNED} is not installed in this image; pip will choose one for {dependency!r}",
                file=sys.stderr,
            )
            lines.append(dependency)
            continue
        if satisfies(version, dependency) is False:
            raise SystemExit(
                f"error: the base image has {PINNED} {version}, but pyproject.toml asks for {dependency!r}; "
                "choose a base image whose torch fits (--build-arg BASE_IMAGE=...)"
            )
        lines.append(f"{PINNED}=={version}")
    return lines


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: requirements.py PYPROJECT", file=sys.stderr)
        return 2
    if tomllib is None:
        print("error: reading pyproject.toml needs Python 3.11 or newer (tomllib)", file=sys.stderr)
        return 1
    with open(argv[0], "rb") as f:
        project = tomllib.load(f)["project"]
    # the image is the GPU client: it takes the gpu extra too (NVML for the dashboard's GPU utilisation)
    dependencies = [*project["dependencies"], *project.get("optional-dependencies", {}).get(IMAGE_EXTRA, [])]
    print("\n".join(requirements(dependencies)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
