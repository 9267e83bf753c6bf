"""What ``--project`` names: the built-in demo, a local folder, or a Hub repository at a revision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from volunteer.errors import ProjectError

BUILTIN = "demo"
DEFAULT_REVISION = "main"

_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HUB_REPO = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_ID_FORMS = "demo, a folder (./my-project or /path/to/it), org/name or org/name@revision"


@dataclass(frozen=True)
class ProjectRef:
    """A parsed project id."""

    text: str
    """The id as typed."""
    kind: Literal["builtin", "local", "hub"]
    repo: str
    """"demo", the folder's absolute path, or the Hub repo id."""
    revision: str = ""
    """Hub only: the branch, tag or commit sha asked for ("main" when none was)."""

    @property
    def pinned(self) -> bool:
        """Whether the revision is a full commit sha, so its content can never change."""
        return bool(_SHA.match(self.revision))


def parse_project_id(text: str) -> ProjectRef:
    """Parse ``demo``, a folder path, ``org/name`` or ``org/name@revision``.

    A path that starts with ``/``, ``.`` or ``~`` is always a folder; a single word is a folder when one by that
    name exists here (``demo`` is always the built-in demo: write ``./demo`` for a folder called demo); anything
    of the form ``org/name`` is a Hub repository (write ``./org/name`` for such a folder).

    Raises:
        ProjectError: when the id has none of these forms.
    """
    raw = text
    text = text.strip()
    if not text:
        raise ProjectError("--project is empty", f"name a project: {_ID_FORMS}")
    if text == BUILTIN:
        return ProjectRef(raw, "builtin", BUILTIN)
    if text.startswith(("/", ".", "~")):
        return ProjectRef(raw, "local", str(_folder(text)))
    if "/" not in text and "@" not in text:
        if Path(text).is_dir():
            return ProjectRef(raw, "local", str(_folder(text)))
        raise ProjectError(
            f"unknown project {text!r}: it is not a folder here, nor a Hub repository id",
            f"use {_ID_FORMS}; a Hub repository id has an owner, like my-lab/{text}",
        )
    repo, at, revision = text.partition("@")
    if at and not revision.strip():
        raise ProjectError(
            f"project id {text!r} ends with '@' but names no revision",
            f"write {repo}@<branch, tag or commit sha>, or just {repo} for its main branch",
        )
    if not _HUB_REPO.match(repo) or "--" in repo or ".." in repo or len(repo) > 96:
        raise ProjectError(
            f"{repo!r} is not a Hugging Face Hub repository id",
            f"write org/name (letters, digits, '-', '_', '.'), e.g. my-lab/mnist; for a folder, start the path with "
            f"./ (./{text}); accepted forms: {_ID_FORMS}",
        )
    if at and re.search(r"\s", revision):
        raise ProjectError(
            f"revision {revision!r} in {text!r} contains spaces", "write a branch, tag or commit sha without spaces"
        )
    return ProjectRef(raw, "hub", repo, revision if at else DEFAULT_REVISION)


def _folder(text: str) -> Path:
    path = Path(text).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ProjectError(
            f"project folder {text!r} does not exist",
            f"check the path; or use another form: {_ID_FORMS}",
        ) from None
    if not resolved.is_dir():
        raise ProjectError(
            f"project path {text!r} is a file, not a folder",
            "name the folder that holds volunteer.toml, not a file in it",
        )
    return resolved
