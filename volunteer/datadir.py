"""The data directory: Hub cache, identity, consent records, peer cache and contribution ledger.

Every file in it is written atomically (temporary file, fsync, rename), so a crash or ``kill -9`` leaves
either the old content or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from volunteer.constants import ENV_PREFIX, env
from volunteer.errors import DataDirError

LASTING = ("identity.key", "consent.json", "ledger")
"""What must outlive a cache cleaner: the peer identity, consent records and the all-time ledger."""


def explicit_data_dir() -> Path | None:
    """``VOLUNTEER_HOME``, when set: then one folder holds everything (Docker's ``/data``)."""
    explicit = env(ENV_PREFIX + "HOME")
    return Path(explicit).expanduser() if explicit else None


def default_data_dir() -> Path:
    """``VOLUNTEER_HOME``, else the user data directory (``$XDG_DATA_HOME/volunteer``, ``~/.local/share/volunteer``)."""
    return explicit_data_dir() or platformdirs.user_data_path("volunteer", appauthor=False)


def default_cache_dir() -> Path:
    """The user cache directory (``$XDG_CACHE_HOME/volunteer``, ``~/.cache/volunteer``): peer lists, nothing lasting.

    It is also where versions before 0.2 kept everything; :meth:`DataDir.open` moves what lasts out of it once.
    """
    return platformdirs.user_cache_path("volunteer", appauthor=False)


def safe_name(name: str) -> str:
    """A file-name-safe form of a run id or repo id."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "_"


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory. Create with :meth:`open`, which checks it is writable.

    ``root`` holds what must last (identity, consent, ledger, logs); ``cache`` what can be fetched again (peer
    lists). A ``--data-dir`` (or ``VOLUNTEER_HOME``) is both; by default they are the user's data and cache
    directories, so a cache cleaner never takes a volunteer's identity or contribution record.
    """

    root: Path
    cache: Path
    explicit: bool = True
    """Whether the user chose the folder (``--data-dir``/``VOLUNTEER_HOME``) rather than the defaults."""

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, name: str = "") -> DataDir:
        """Open (and create) a data directory.

        Args:
            path: ``--data-dir``; ``None`` means ``VOLUNTEER_HOME`` or the user's data and cache directories.
            name: A sub-folder of the defaults for another role (``volunteer host`` uses ``host``); unused with
                an explicit path.
        """
        chosen = Path(path).expanduser() if path is not None else explicit_data_dir()
        if chosen is not None:
            root = cache = chosen
        else:
            root, cache = default_data_dir() / name, default_cache_dir() / name
        _writable(root)
        if chosen is None:
            _writable(cache)
            _move_lasting(cache, root)
        return cls(root.resolve(), cache.resolve(), explicit=chosen is not None)

    @property
    def hub_cache(self) -> Path:
        """Where project snapshots are cached: ``HF_HUB_CACHE`` or ``HF_HOME/hub`` when set (the Docker image
        sets ``HF_HOME=/data/hf``, shared by every peer of a compose swarm); else ``hub/`` in an explicit data
        directory; else Hugging Face's own cache, shared with the user's other Hub tools."""
        explicit = env("HF_HUB_CACHE")
        if explicit:
            return Path(explicit).expanduser()
        home = env("HF_HOME")
        if home:
            return Path(home).expanduser() / "hub"
        if self.explicit:
            return self.root / "hub"
        xdg_cache = env("XDG_CACHE_HOME")
        return (Path(xdg_cache).expanduser() if xdg_cache else Path.home() / ".cache") / "huggingface" / "hub"

    @property
    def consent_file(self) -> Path:
        return self.root / "consent.json"

    @property
    def identity_file(self) -> Path:
        return self.root / "identity.key"

    def peers_cache(self, run_id: str) -> Path:
        return self.cache / "peers" / f"{safe_name(run_id)}.txt"

    def ledger_file(self, run_id: str) -> Path:
        return self.root / "ledger" / f"{safe_name(run_id)}.json"

    @property
    def control_token_file(self) -> Path:
        """The running session's control token (see :mod:`volunteer.control_token`)."""
        return self.root / "control.token"

    @property
    def lock_file(self) -> Path:
        return self.root / "volunteer.lock"

    def check_identity(self) -> Path:
        """The identity file's path; a clear error when it exists but cannot be used."""
        path = self.identity_file
        if path.exists():
            try:
                data = path.read_bytes()
            except OSError as e:
                raise DataDirError(
                    f"identity file {str(path)!r} is unreadable: {e.strerror or e}",
                    f"fix its permissions (it must be readable by this user), or delete it to get a new peer "
                    f"id: rm {path}",
                ) from None
            if len(data) < 64:
                raise DataDirError(
                    f"identity file {str(path)!r} is damaged ({len(data)} bytes)",
                    f"delete it to get a new peer id: rm {path}",
                )
        return path

    @contextlib.contextmanager
    def lock(self):
        """Hold the data directory for this process: two clients sharing one identity would clash."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            path = self.lock_file
            raise DataDirError(
                f"lock file {str(path)!r} cannot be opened: {e.strerror or e}",
                f"it must be a plain file writable by this user: remove it (rm -r {path}) if no volunteer is running",
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise DataDirError(
                    f"data directory {str(self.root)!r} is in use by another volunteer (pid {holder})",
                    "stop that one first, or give this one its own --data-dir",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield self
        finally:
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, what: str) -> Any | None:
    """Parse a JSON file of ours; ``None`` when absent; a clear error when damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        fix = f"it must be a file: remove the folder (rm -r {path})" if path.is_dir() else "fix the file's permissions"
        raise DataDirError(f"{what} {str(path)!r} is unreadable: {e.strerror or e}", fix) from None
    except UnicodeDecodeError as e:
        raise DataDirError(
            f"{what} {str(path)!r} is damaged: it is not UTF-8 text (byte {e.start})",
            f"move it aside (mv {path} {path}.bad) and start again; volunteer writes a fresh one",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataDirError(
            f"{what} {str(path)!r} is damaged: {e.msg} at line {e.lineno}",
            f"move it aside (mv {path} {path}.bad) and start again; volunteer writes a fresh one",
        ) from None
    except (RecursionError, ValueError) as e:  # nested too deep, or a number too long to convert
        raise DataDirError(
            f"{what} {str(path)!r} is damaged: {type(e).__name__}",
            f"move it aside (mv {path} {path}.bad) and start again; volunteer writes a fresh one",
        ) from None


def _writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise DataDirError(
            f"data directory {str(root)!r} is not writable: {e.strerror or e}",
            "choose a writable directory with --data-dir (or VOLUNTEER_HOME); in Docker, make sure the "
            "volume mounted at /data belongs to the container's user (uid 1000)",
        ) from None


def _move_lasting(old: Path, new: Path) -> None:
    """Move identity, consent and ledger from where earlier versions kept them (the cache) to the data directory.

    Only what the new place lacks is moved, so running it again (or an older client writing the cache again)
    never overwrites a newer record.
    """
    if old.resolve() == new.resolve():
        return
    moved = []
    for name in LASTING:
        source, target = old / name, new / name
        if not source.exists() or target.exists():
            continue
        try:
            shutil.move(str(source), str(target))
        except OSError as e:
            raise DataDirError(
                f"cannot move {str(source)!r} to the data directory {str(new)!r}: {e.strerror or e}",
                f"move it by hand (mv {source} {target}), or keep using the old place with --data-dir {old}",
            ) from None
        moved.append(name)
    if moved:
        print(f"note: moved {', '.join(moved)} from {old} to {new}, where cache cleaners leave them", file=sys.stderr)
