"""The Docker docs stay true: every volunteer flag and variable their commands use exists."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from volunteer import doctor
from volunteer.settings import RUN_OPTIONS, parse_run_args, settings_from_namespace

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docker" / "README.md", ROOT / "docs" / "docker.md"]
IMAGE_ENV = {"VOLUNTEER_HOME", "VOLUNTEER_HOST_MADDRS", "VOLUNTEER_SWARM_WAIT", "VOLUNTEER_TEST_BASE_IMAGE"}


def commands(path: Path) -> list[list[str]]:
    """The shell commands in a Markdown file's bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(shlex.split(line, comments=True))
    return found


DOCKER_OPTIONS_WITH_VALUE = {
    "--name", "-v", "--volume", "-p", "--publish", "-e", "--env", "--gpus", "--restart", "--user", "-u",
    "--network", "--entrypoint", "--index", "-w", "--workdir", "--mount", "--tmpfs",
}  # fmt: skip


def volunteer_args(words: list[str]) -> list[str] | None:
    """What a 'docker run IMAGE ARGS' or 'docker exec CONTAINER volunteer ARGS' passes to the volunteer CLI."""
    if "docker" not in words or "--entrypoint" in words:
        return None
    rest = words[words.index("docker") + 1 :]
    if not rest or rest[0] not in ("run", "exec"):
        return None
    i = 1
    while i < len(rest) and rest[i].startswith("-"):
        i += 2 if rest[i] in DOCKER_OPTIONS_WITH_VALUE else 1
    target, args = rest[i], rest[i + 1 :]  # the image (run) or the container (exec)
    if target == "...":  # "docker run ...": a placeholder for the reader's own command
        return None
    if rest[0] == "run":
        assert target == "volunteer", f"docker run of {target!r}: the docs build the image as 'volunteer'"
    else:
        assert args[:1] == ["volunteer"], f"docker exec runs {args[:1]}"
        args = args[1:]
    return [a for a in args if a not in ("do", "done", ";")]


def all_volunteer_commands() -> list[tuple[str, list[str]]]:
    return [
        (path.name, args) for path in DOCS for words in commands(path) if (args := volunteer_args(words)) is not None
    ]


def test_the_docs_show_volunteer_commands() -> None:
    found = all_volunteer_commands()
    assert len(found) >= 10
    assert any(args[:1] == ["doctor"] for _, args in found)
    assert any(args[:1] == ["attach"] for _, args in found)


@pytest.mark.parametrize(("doc", "args"), all_volunteer_commands())
def test_every_command_parses(doc: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags and values as the client itself would parse them (multiaddresses included)."""
    for name in [n for n in os.environ if n.startswith("VOLUNTEER_")]:
        monkeypatch.delenv(name)
    args = [a.replace("<id>", "org/name") for a in args]
    if args[:1] == ["attach"]:
        return
    if args[:1] == ["doctor"]:
        settings_from_namespace(doctor.build_parser().parse_args(args[1:]))
    else:
        parse_run_args(args)


def test_every_volunteer_variable_exists() -> None:
    known = {option.env for option in RUN_OPTIONS} | IMAGE_ENV
    for path in [*DOCS, ROOT / "docker" / "compose.yaml", ROOT / "Dockerfile"]:
        used = set(re.findall(r"\bVOLUNTEER_[A-Z_]+\b", path.read_text()))
        assert used <= known, f"{path.name}: unknown variables {used - known}"


def test_both_docs_give_the_exact_build_and_run_commands() -> None:
    for path in DOCS:
        text = path.read_text()
        assert "docker build -t volunteer ." in text
        assert (
            "docker run --gpus all --shm-size=1g -it --name volunteer -v volunteer-data:/data volunteer --project <id>"
            in text
        )
        assert "docker logs -f volunteer" in text
        assert "docker exec -it volunteer volunteer attach" in text
        assert "docker stop volunteer" in text


def test_every_client_run_raises_shared_memory() -> None:
    """Docker's 64 MB /dev/shm holds models of about 7.9 M parameters only: every run of the client says more."""
    docs = [*DOCS, ROOT / "README.md", ROOT / "docs" / "authors.md"]
    runs = [
        words
        for path in docs
        for words in commands(path)
        if words[:2] == ["docker", "run"] and "..." not in words and "--entrypoint" not in words
    ]
    assert len(runs) >= 15
    for words in runs:
        assert any(w.startswith("--shm-size=") or w == "--ipc=host" for w in words), " ".join(words)
