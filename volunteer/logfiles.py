"""Log files that stay bounded: the training, session and host logs a volunteer leaves running for weeks.

The processes writing them (Lightning, hivemind, p2pd) write to a raw file descriptor, so a logging handler
cannot rotate them. Instead a file is rotated when it is opened (``log`` → ``log.1`` → ``log.2`` ...), and a
thread in the writing process copies a file that has grown past :data:`MAX_BYTES` to ``log.1`` and truncates it
in place ("copytruncate", as logrotate does): writers open with ``O_APPEND``, so they go on at the new end. Lines
written between the copy and the truncation are lost; everything else is kept, at most
``MAX_BYTES * (BACKUPS + 1)`` bytes a log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

MAX_BYTES = 20 * 2**20
BACKUPS = 3
CHECK_INTERVAL = 30.0


def _shift(path: Path, backups: int) -> None:
    """``log.N-1`` → ``log.N`` ... ``log.1`` → ``log.2``; the oldest is dropped."""
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))


def rotate(path: str | os.PathLike, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
    """Before a new writer opens ``path``: move it to ``path.1`` if it is over ``max_bytes``."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > max_bytes:
            _shift(path, backups)
            os.replace(path, path.with_name(f"{path.name}.1"))


def trim(path: str | os.PathLike, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> bool:
    """Copy ``path`` to ``path.1`` and truncate it, if it is over ``max_bytes``, while writers keep it open."""
    path = Path(path)
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    _shift(path, backups)
    with open(path, "rb") as source, open(path.with_name(f"{path.name}.1"), "wb") as copy:
        shutil.copyfileobj(source, copy, 2**20)
    os.truncate(path, 0)
    return True


def keep_trimmed(path: str | os.PathLike, interval: float = CHECK_INTERVAL, **limits: int) -> threading.Event:
    """Trim ``path`` every ``interval`` seconds from a daemon thread, until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(OSError):
                trim(path, **limits)

    threading.Thread(target=loop, name="volunteer-log-trim", daemon=True).start()
    return stop


def open_append_fd(path: str | os.PathLike) -> int:
    """A rotated, bounded log file opened for appending (``O_APPEND``), as a raw file descriptor."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rotate(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    keep_trimmed(path)
    return fd
