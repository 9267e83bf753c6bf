"""Consent to run a project's code: asked once per (project, commit), remembered in the data directory.

A Hub project's code runs on the volunteer's machine with the volunteer's rights, so the first time a commit
of it is about to be imported, the volunteer must agree: with ``--trust`` (``VOLUNTEER_TRUST=1``), or in the
TUI's dialog. A new commit with new code asks again; a new commit whose code and manifest are byte for byte
those already agreed to (a host refreshing ``peers.txt``, say) does not. The built-in demo ships with
volunteer, and a local folder was chosen by the volunteer on their own disk: both are trusted.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from volunteer.datadir import DataDir, atomic_write_json, read_json
from volunteer.errors import DataDirError, TrustError

if TYPE_CHECKING:
    from volunteer.project.prepared import ResolvedProject

CONSENT_FORMAT = 1


def consent_key(project: ResolvedProject) -> str:
    """What consent is given to: the repository where it lives, including the Hub's address."""
    return f"{project.endpoint}/{project.repo}" if project.endpoint else project.repo


def code_digest(project: ResolvedProject) -> str:
    """A digest of what runs: every code file and the manifest, by path and content."""
    from volunteer.project.manifest import MANIFEST_NAME

    digest = hashlib.sha256()
    for name in sorted({*project.files, MANIFEST_NAME}):
        path = project.root / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def describe_code(project: ResolvedProject) -> str:
    """Every file that will run, and what else comes with them: what consent is asked for, in one line."""
    count = len(project.files)
    text = f"{count} Python file{'s' if count != 1 else ''}: {', '.join(project.files)}" if count else "no Python files"
    if project.data_files:
        text += (
            f"; also {project.data_files} data file{'s' if project.data_files != 1 else ''} "
            f"({project.data_bytes / 1e6:,.1f} MB) that the code may read"
        )
    return text


def needs_consent(project: ResolvedProject) -> bool:
    return project.kind == "hub"


def _load(data_dir: DataDir) -> dict[str, Any]:
    data = read_json(data_dir.consent_file, "consent file")
    if data is None:
        return {"format": CONSENT_FORMAT, "projects": {}}
    if not isinstance(data, dict) or not isinstance(data.get("projects"), dict):
        path = data_dir.consent_file
        raise DataDirError(
            f"consent file {str(path)!r} is damaged: it has no 'projects' table",
            f"move it aside (mv {path} {path}.bad); volunteer asks again before running any project's code",
        )
    return data


def is_trusted(data_dir: DataDir, project: ResolvedProject) -> bool:
    """Whether the volunteer has already agreed to run this project at this commit."""
    if not needs_consent(project):
        return True
    record = _load(data_dir)["projects"].get(consent_key(project))
    if not isinstance(record, dict):
        return False
    if project.revision in record:
        return True
    digest = code_digest(project)
    return any(isinstance(entry, dict) and entry.get("digest") == digest for entry in record.values())


def remember_consent(data_dir: DataDir, project: ResolvedProject, how: str) -> None:
    """Record that the volunteer agreed to run ``project`` at its commit (``how``: "--trust" or "asked")."""
    if not needs_consent(project):
        return
    data = _load(data_dir)
    commits = data["projects"].get(consent_key(project))
    if not isinstance(commits, dict):
        commits = data["projects"][consent_key(project)] = {}
    commits[project.revision] = {
        "name": project.manifest.name,
        "files": list(project.files),
        "digest": code_digest(project),
        "how": how,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    data["format"] = CONSENT_FORMAT
    try:
        atomic_write_json(data_dir.consent_file, data)
    except OSError as e:
        raise DataDirError(
            f"cannot record consent in {str(data_dir.consent_file)!r}: {e.strerror or e}",
            "fix the data directory's permissions (--data-dir / VOLUNTEER_HOME)",
        ) from None


def require_consent(
    project: ResolvedProject,
    data_dir: DataDir,
    *,
    trust: bool,
    ask: Callable[[ResolvedProject], bool] | None,
) -> str:
    """Make sure the volunteer agreed to run ``project``'s code; return how ("builtin", "remembered", ...).

    Raises:
        TrustError: when there is no remembered consent, no ``--trust``, and ``ask`` is missing or says no.
    """
    if not needs_consent(project):
        return project.kind
    if is_trusted(data_dir, project):
        return "remembered"
    if trust:
        remember_consent(data_dir, project, "--trust")
        return "--trust"
    if ask is not None and ask(project):
        remember_consent(data_dir, project, "asked")
        return "asked"
    declined = " was declined" if ask is not None else " has not been given"
    raise TrustError(
        f"consent to run project {project.manifest.name!r} ({project.repo} at commit {project.revision[:12]}: "
        f"{describe_code(project)}){declined}",
        f"read the code ({project.endpoint}/{project.repo}/tree/{project.revision}), then run again with --trust "
        "(or VOLUNTEER_TRUST=1) to let this commit's code run on this machine; consent is remembered for this "
        "code: a later commit asks again only if the code or the manifest changed",
    )
