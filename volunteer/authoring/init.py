"""``volunteer init DIR``: a new project folder, ready for ``volunteer check`` without a change.

The scaffold (``volunteer/templates/project``) is a small, complete project: a manifest, a LightningModule, a
LightningDataModule with data generated from a seed, an empty peers file and a README for the Hub. Authors
replace the model and data with theirs; every file says what its rules are.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from volunteer import __version__
from volunteer.authoring.options import repo_id
from volunteer.errors import ConfigError
from volunteer.settings import ArgumentParser

TEMPLATE_SUFFIX = ".tmpl"
RENAMED = {"gitignore": ".gitignore"}
"""Template files stored under another name (setuptools leaves dot-files out of package data)."""
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
PLACEHOLDER_REPO = "your-org/{name}"


@dataclass(frozen=True)
class Scaffold:
    """What ``init`` wrote."""

    root: Path
    files: tuple[str, ...]
    name: str
    run_id: str
    repo: str


def template_files() -> dict[str, str]:
    """The scaffold's files, by the name they get in a project, with ``$placeholders`` still in them."""
    folder = resources.files("volunteer") / "templates" / "project"
    files: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith((".", "__")):
            continue
        name = entry.name.removesuffix(TEMPLATE_SUFFIX)
        files[RENAMED.get(name, name)] = entry.read_text(encoding="utf-8")
    return files


def default_run_id(folder_name: str) -> str:
    """``"My Spirals!"`` -> ``"my-spirals-v1"``: a valid run id from a folder's name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder_name).strip("-_.").lower()[:90] or "project"
    return f"{stem}-v1"


def create_project(
    root: Path, *, name: str | None = None, run_id: str | None = None, repo: str | None = None
) -> Scaffold:
    """Write the scaffold into ``root`` (created; it must not exist, or be empty).

    Raises:
        ConfigError: ``root`` is a file or a folder with files in it, or ``name``/``run_id`` are unusable.
        ProjectError: ``repo`` is not a Hub repository id.
    """
    root = root.expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{str(root)!r} is a file", "name a new folder for the project: volunteer init my-project")
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(
            f"folder {str(root)!r} already exists and is not empty",
            "name a new (or empty) folder: init never overwrites files ('volunteer check' validates a project)",
        )
    folder_name = root.resolve().name
    given = name if name is not None else folder_name
    name = given.strip()
    if not name or len(name) > 100 or "\n" in name:
        raise ConfigError(f"--name {given!r} is not a usable project name", 'one line, e.g. --name "MNIST together"')
    run_id = run_id if run_id is not None else default_run_id(folder_name)
    if not _RUN_ID.match(run_id):
        raise ConfigError(
            f"--run-id {run_id!r} is not a run id",
            'use letters, digits, "_", "-" and "." (at most 100, first a letter or digit), e.g. --run-id mnist-v1',
        )
    if repo is not None:
        repo = repo_id("--repo", repo)
    shown_repo = repo or PLACEHOLDER_REPO.format(name=default_run_id(folder_name).removesuffix("-v1"))

    values = {
        "name": json.dumps(name, ensure_ascii=False),
        "run_id": json.dumps(run_id),
        "run_id_plain": run_id,
        "version": json.dumps(__version__),
        "title": name,
        "repo": shown_repo,
    }
    rendered = {file: string.Template(text).substitute(values) for file, text in template_files().items()}
    try:
        root.mkdir(parents=True, exist_ok=True)
        for file, text in rendered.items():
            (root / file).write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"cannot write the project into {str(root)!r}: {e.strerror or e}", "choose a folder you can write to"
        ) from None
    return Scaffold(root=root, files=tuple(sorted(rendered)), name=name, run_id=run_id, repo=shown_repo)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer init",
        description="Create a new project folder: a manifest (volunteer.toml), a LightningModule (model.py), a "
        "data module (data.py), a peers file and a README. It passes 'volunteer check' as it is; replace the model "
        "and data with yours.",
    )
    parser.add_argument("folder", metavar="DIR", help="the folder to create (it must not exist, or be empty)")
    parser.add_argument("--name", help="the project's name shown to volunteers (default: the folder's name)")
    parser.add_argument("--run-id", dest="run_id", help="the swarm's run id (default: <folder>-v1)")
    parser.add_argument(
        "--repo", metavar="ORG/NAME", help="the Hub repository it will be published to (for the README)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    scaffold = create_project(Path(args.folder), name=args.name, run_id=args.run_id, repo=args.repo)
    shown = args.folder.rstrip("/") or "."
    here = shown if shown.startswith(("/", ".", "~")) else f"./{shown}"
    steps = [
        (f"volunteer check {shown}", "import it and train a few steps on this machine"),
        (f"volunteer --project {here}", "train on it yourself"),
        (f"volunteer publish {shown} --repo {scaffold.repo}", "upload it to the Hub"),
        (f"volunteer host --project {scaffold.repo}", "keep a stable peer online"),
    ]
    width = max(len(command) for command, _ in steps)
    print(f"created project {scaffold.name!r} (run id {scaffold.run_id}) in {shown}/: {', '.join(scaffold.files)}")
    print("next:")
    for command, what in steps:
        print(f"  {command.ljust(width)}   # {what}")
    return 0
