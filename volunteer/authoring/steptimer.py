"""The Lightning callback ``volunteer check`` times training steps with (imported only when training)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import lightning as L


class StepTimer(L.Callback):
    """Times every training step (forward, backward, optimizer) and keeps its loss."""

    def __init__(self) -> None:
        self.steps = 0
        self.durations: list[float] = []
        """Seconds per step, from the batch's start to its end (data loading not included)."""
        self.losses: list[float] = []
        self.skipped: list[int] = []
        """Steps whose training_step returned no loss."""
        self._started = 0.0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.durations.append(time.perf_counter() - self._started)
        self.steps += 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            self.skipped.append(self.steps)
            return
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.losses.append(float(loss.detach()) if hasattr(loss, "detach") else float(loss))
