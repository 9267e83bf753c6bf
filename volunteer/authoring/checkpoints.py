"""Checkpoints of the swarm's model that ``volunteer host`` saves: one file per global step, the last few kept.

A checkpoint is a ``torch.save`` dictionary: the LightningModule's ``state_dict`` (``model``), the optimizer's
state with hivemind's ``local_epoch`` (``optimizer``), and where it came from. It is written to a temporary
file and renamed, so a crash never leaves a torn checkpoint; a host that starts with no peer holding newer
state resumes from the latest one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from volunteer.datadir import safe_name

CHECKPOINT_FORMAT = 1


def checkpoint_name(run_id: str, global_step: int) -> str:
    return f"{safe_name(run_id)}-step{global_step:08d}.pt"


def list_checkpoints(folder: Path, run_id: str) -> list[tuple[int, Path]]:
    """The run's checkpoints in ``folder`` as (global step, path), oldest first."""
    pattern = re.compile(re.escape(safe_name(run_id)) + r"-step(\d{8})\.pt$")
    found = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(folder: Path, run_id: str, global_step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``global_step`` (atomically), then keep only the newest ``keep``.

    Raises:
        OSError: the folder cannot be written.
    """
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint_name(run_id, global_step)
    data = {"format": CHECKPOINT_FORMAT, "run_id": run_id, "global_step": global_step, "time": time.time(), **state}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    for _, old in list_checkpoints(folder, run_id)[: -max(keep, 1)]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise ValueError(f"{path} is not a volunteer host checkpoint")
    return data
