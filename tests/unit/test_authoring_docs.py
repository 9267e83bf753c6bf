"""Every command docs/authors.md tells an author to run parses as the CLI would parse it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.support.projects import isolate_environment
from volunteer.authoring import check, init, publish
from volunteer.authoring.host_options import parse_host_args
from volunteer.settings import parse_run_args

DOC = Path(__file__).resolve().parents[2] / "docs" / "authors.md"


def _commands() -> list[list[str]]:
    """The ``volunteer ...`` commands in the doc's bash blocks (after ``docker run ... volunteer`` too)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            words = shlex.split(line)
            if not words or words[0] not in ("volunteer", "docker"):
                continue
            if words[0] == "docker":
                if "volunteer" not in words[1:]:
                    continue
                words = words[words.index("volunteer", 1) :]
            commands.append(words[1:])
    return commands


COMMANDS = _commands()


def test_the_doc_has_each_command() -> None:
    used = {argv[0] if argv and not argv[0].startswith("-") else "run" for argv in COMMANDS}
    assert {"init", "check", "publish", "host", "run"} <= used


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_command_parses(argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    command, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("run", argv)
    if command == "host":
        parse_host_args(rest)
    elif command in ("init", "check", "publish"):
        module = {"init": init, "check": check, "publish": publish}[command]
        module.build_parser().parse_args(rest)
    else:
        parse_run_args(rest)
