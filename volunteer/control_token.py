"""The per-session secret that ``POST /control`` requires: a random token in a 0600 file in the data directory.

The session that serves the status endpoint writes ``<data_dir>/control.token`` when it starts and removes it
when it ends. Whoever can read that file (this user, and root) can pause, stop or trust the session; other
local users and web pages cannot, although ``GET /status`` stays readable on 127.0.0.1. The dashboard hands
the token to the session it starts in :data:`CONTROL_TOKEN_ENV`, which the session takes out of its
environment at once so that project code does not inherit it. ``volunteer attach`` reads the file.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from volunteer.constants import CONTROL_TOKEN_ENV, env
from volunteer.datadir import DataDir, atomic_write_text

TOKEN_BYTES = 32
"""Random bytes in a token (its text is URL-safe base64, 43 characters)."""

MAX_TOKEN_CHARS = 256
"""A token file or header longer than this is not ours."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def take_token_from_env() -> str | None:
    """The token the dashboard chose for this session, removed from the environment; None when not given."""
    token = env(CONTROL_TOKEN_ENV)
    os.environ.pop(CONTROL_TOKEN_ENV, None)
    return token.strip() if token else None


def write_token(data_dir: DataDir, token: str) -> Path:
    """Write ``token`` to the data directory's token file, readable by this user only."""
    path = data_dir.control_token_file
    atomic_write_text(path, token + "\n")  # mkstemp creates the file 0600, and the rename keeps that
    os.chmod(path, 0o600)
    return path


def read_token(data_dir: DataDir | Path) -> str | None:
    """The token in the data directory (or at a token file's path); None when absent or unreadable."""
    path = data_dir.control_token_file if isinstance(data_dir, DataDir) else Path(data_dir)
    try:
        with open(path, encoding="ascii") as f:
            token = f.read(MAX_TOKEN_CHARS + 1).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if token and len(token) <= MAX_TOKEN_CHARS else None


def remove_token(data_dir: DataDir, token: str) -> None:
    """Remove the token file if it still holds ``token`` (a later session may have replaced it)."""
    current = read_token(data_dir)
    if current is not None and same_token(current, token):
        with contextlib.suppress(OSError):
            data_dir.control_token_file.unlink()


def same_token(given: str | None, expected: str) -> bool:
    """Compare in constant time, so response times do not reveal how much of a guess was right."""
    if not given or len(given) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
