"""``status-endpoint.json`` in the data directory: where a running session's status endpoint really listens.

A headless session listens on ``--status-port`` (8471 by default), but the dashboard mode runs its session on a
free port it picks, and ``--status-port``/``VOLUNTEER_STATUS_PORT`` move it. The session records its endpoint
here while it runs, so that the container's health check and ``volunteer attach`` find it without being told the
port. Standard library only: the health check imports this every half minute.

    {"url": "http://127.0.0.1:43121", "pid": 17}
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from volunteer.datadir import atomic_write_text, default_data_dir

FILE_NAME = "status-endpoint.json"


def endpoint_path(root: Path | None = None) -> Path:
    return (root if root is not None else default_data_dir()) / FILE_NAME


def record(root: Path, url: str, pid: int | None = None) -> Path:
    """Record that this process serves its status at ``url``; returns the file's path."""
    path = endpoint_path(root)
    atomic_write_text(path, json.dumps({"url": url, "pid": os.getpid() if pid is None else pid}) + "\n")
    return path


def forget(root: Path, url: str) -> None:
    """Remove the record, if it still names ``url`` (a newer session may have replaced it)."""
    path = endpoint_path(root)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("url") == url:
            path.unlink()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded_url(root: Path | None = None) -> str | None:
    """The URL a live session recorded in the data directory, or None (no record, damaged, or its process is gone)."""
    try:
        data = json.loads(endpoint_path(root).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not _alive(data.get("pid")):
        return None
    return data["url"]
