"""What a project may contain: Python source, its manifest and data, within limits; nothing compiled or native.

Consent is given to what runs, so what runs must be exactly what the volunteer is shown. Python imports more
than ``.py`` files: a ``__pycache__/*.pyc`` (whose unchecked-hash form is never compared with its source), a
native extension (``model.abi3.so`` is imported before ``model.py``), a ``.pth`` file in a site folder. A
project therefore ships Python *source* only: a repository holding any of those is refused, by name, before
anything of it is downloaded, and the project's package is imported by a loader that reads ``.py`` files only
and never writes bytecode (:mod:`volunteer.project.loader`). Every other file (``peers.txt``, a README, data)
is data: only the project's own, consented code can read it.

The limits below bound what a stranger's repository can make a volunteer download before consent, and how
long the consent list can be. They are documented in docs/projects.md.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from volunteer.errors import ProjectError

MAX_FILES = 10_000
"""Files in a Hub project's repository (its listing is read before consent, and no further)."""
MAX_CODE_FILES = 500
"""Python files in a project."""
MAX_CODE_FILE_BYTES = 1_000_000
"""Bytes in one Python file."""
MAX_CODE_BYTES = 10_000_000
"""Bytes in all Python files together: what is downloaded before consent."""
MAX_MANIFEST_BYTES = 65_536
"""Bytes in ``volunteer.toml``."""
MAX_PROJECT_BYTES = 20_000_000_000
"""Bytes in a Hub project's whole repository, downloaded after consent."""

SOURCE_SUFFIX = ".py"
BYTECODE_SUFFIXES = (".pyc", ".pyo")
NATIVE_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
BYTECODE_FOLDER = "__pycache__"
# folders a local project folder may hold without them being part of the project (they are never published)
LOCAL_SKIPPED_DIRS = {BYTECODE_FOLDER, ".git", ".venv", "venv", "node_modules"}
_VERSIONED_NATIVE = re.compile(r"\.so(\.\d+)+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
DOCS = "docs/projects.md#what-a-project-may-contain"


@dataclass(frozen=True)
class Contents:
    """A project's files, sorted into what runs and the rest."""

    code: tuple[str, ...]
    """Every Python file (``/``-separated, sorted): what consent covers, with the manifest."""
    code_bytes: int = 0
    data: tuple[str, ...] = ()
    """Files that are neither code nor the manifest (a Hub project downloads them after consent)."""
    data_bytes: int = 0

    @property
    def data_files(self) -> int:
        return len(self.data)


def refusal(path: str) -> str | None:
    """Why a file at ``path`` (relative, ``/``-separated) may not be in a project, or ``None`` when it may."""
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else path
    lowered = name.lower()
    if BYTECODE_FOLDER in parts[:-1]:
        return "compiled Python in a __pycache__ folder"
    if lowered.endswith(BYTECODE_SUFFIXES):
        return "compiled Python bytecode"
    if lowered.endswith(NATIVE_SUFFIXES) or _VERSIONED_NATIVE.search(lowered):
        return "a native library or extension module"
    if lowered.endswith(".pth"):
        return "a .pth file (Python runs the import lines in it)"
    return None


def unsafe_name(path: str) -> str | None:
    """Why ``path`` cannot be shown or stored honestly (control characters, escapes, odd parts), or ``None``."""
    if _CONTROL.search(path):
        return "its name contains control characters"
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")) or "\\" in path:
        return "its path is not a plain relative path"
    return None


def sort_files(
    files: Iterable[tuple[str, int]], where: Callable[[str], str], manifest_name: str, *, count_all: bool
) -> Contents:
    """Check a project's files (path and size) against the rules and limits; sort them into code and data.

    Args:
        files: Every file of the project, by path relative to its root.
        where: How messages name a file (``org/name@1a2b3c4:model.py``).
        manifest_name: ``volunteer.toml``.
        count_all: Apply :data:`MAX_FILES` to all files (a Hub repository), not only to the code.

    Raises:
        ProjectError: a refused file, a name that cannot be shown, or a limit exceeded; the hint names the fix.
    """
    label = where("").rstrip(":")
    code: list[tuple[str, int]] = []
    data: list[str] = []
    data_bytes = total = 0
    for count, (path, size) in enumerate(files, start=1):
        if count_all and count > MAX_FILES:
            raise ProjectError(
                f"{label}: the repository holds more than {MAX_FILES:,} files",
                f"a project holds at most {MAX_FILES:,} files (see {DOCS}): put large data in a dataset repository "
                "that the code downloads",
            )
        bad = unsafe_name(path)
        if bad:
            raise ProjectError(
                f"{label}: the project holds a file whose name cannot be shown safely ({path!r}): {bad}",
                "rename the file to a plain name (letters, digits, '-', '_', '.', '/' between folders)",
            )
        why = refusal(path)
        if why:
            raise ProjectError(
                f"{where(path)}: the project holds {why}, which would run without being shown for consent",
                f"a project ships Python source only (see {DOCS}): delete {path} from the repository and publish "
                "the .py source instead",
            )
        total += size
        if path == manifest_name:
            if size > MAX_MANIFEST_BYTES:
                raise ProjectError(
                    f"{where(path)}: the manifest is {size:,} bytes, more than the {MAX_MANIFEST_BYTES:,} allowed",
                    f"keep {manifest_name} to settings (see {DOCS}); put data in files the code reads",
                )
        elif path.endswith(SOURCE_SUFFIX):
            if size > MAX_CODE_FILE_BYTES:
                raise ProjectError(
                    f"{where(path)}: the Python file is {size:,} bytes, more than the {MAX_CODE_FILE_BYTES:,} allowed",
                    f"split it, or move data out of the code into a data file (see {DOCS})",
                )
            code.append((path, size))
        else:
            data.append(path)
            data_bytes += size
    code_bytes = sum(size for _, size in code)
    if len(code) > MAX_CODE_FILES:
        raise ProjectError(
            f"{label}: the project holds {len(code):,} Python files, more than the {MAX_CODE_FILES:,} allowed",
            f"publish only the project's own code (see {DOCS}); dependencies are installed by volunteers, not shipped",
        )
    if code_bytes > MAX_CODE_BYTES:
        raise ProjectError(
            f"{label}: the project's Python files hold {code_bytes:,} bytes, more than the {MAX_CODE_BYTES:,} allowed",
            f"publish only the project's own code (see {DOCS}); move data out of .py files",
        )
    if count_all and total > MAX_PROJECT_BYTES:
        raise ProjectError(
            f"{label}: the repository holds {total / 1e9:,.1f} GB, more than the {MAX_PROJECT_BYTES / 1e9:,.0f} GB "
            "allowed",
            "put large data in a dataset repository that the code downloads as it needs it",
        )
    return Contents(
        code=tuple(sorted(path for path, _ in code)),
        code_bytes=code_bytes,
        data=tuple(sorted(data)),
        data_bytes=data_bytes,
    )


def walk_snapshot(root: Path, inside: Path, where: Callable[[str], str]) -> list[tuple[str, int]]:
    """Every file of a downloaded Hub snapshot as (path, size); refuses links that leave ``inside``.

    huggingface_hub's cache links each file of a snapshot to a blob of the same repository (``inside``); a link
    anywhere else was not made by it. A ``__pycache__`` folder of plain files was written by an earlier client
    importing the project (this one never writes bytecode): it is removed, never read.

    Raises:
        ProjectError: a link that leads out of the repository's cache folder.
    """
    found: list[tuple[str, int]] = []
    allowed = inside.resolve()
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        for name in list(dirs):
            path = here / name
            if name == BYTECODE_FOLDER and not path.is_symlink() and _plain_files_only(path):
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
            elif path.is_symlink():
                _check_link(path, root, allowed, where)
                dirs.remove(name)  # never followed; it is checked as a link above
                found.append((path.relative_to(root).as_posix(), 0))
        for name in names:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                _check_link(path, root, allowed, where)
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            found.append((relative, size))
    return sorted(found)


def walk_folder(root: Path) -> list[tuple[str, int]]:
    """The files of a local project folder as (path, size), without caches, environments and dot-folders."""
    found: list[tuple[str, int]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in LOCAL_SKIPPED_DIRS and not d.startswith("."))
        here = Path(folder)
        for name in names:
            path = here / name
            if name.endswith(BYTECODE_SUFFIXES):
                continue  # left by the author's own tools; never read, never published
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            found.append((path.relative_to(root).as_posix(), size))
    return sorted(found)


def _plain_files_only(folder: Path) -> bool:
    try:
        return all(entry.is_file(follow_symlinks=False) for entry in os.scandir(folder))
    except OSError:
        return False


def _check_link(path: Path, root: Path, allowed: Path, where: Callable[[str], str]) -> None:
    relative = path.relative_to(root).as_posix()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        target = None
    if target is None or not (target == allowed or allowed in target.parents):
        raise ProjectError(
            f"{where(relative)}: is a link that leads out of the project's snapshot",
            f"the cached snapshot has been tampered with: delete {root} and run again to download it afresh",
        )
