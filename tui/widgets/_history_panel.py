"""Training history: loss and samples/s over time, as sparklines."""

from __future__ import annotations

import math
from collections import deque
from statistics import fmean

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from tui import format as fmt
from volunteer.stats import Snapshot

HISTORY_POINTS = 600
"""Points kept per series: ten minutes at one snapshot a second."""


class HistoryPanel(Vertical):
    """Loss and this machine's samples/s since this screen opened, one point per new snapshot."""

    BORDER_TITLE = "History"

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The newest snapshot; each one newer than the last recorded adds a point."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._losses: deque[float] = deque(maxlen=HISTORY_POINTS)
        self._speeds: deque[float] = deque(maxlen=HISTORY_POINTS)
        self._last_time: float | None = None

    def compose(self) -> ComposeResult:
        yield Label(id="loss-label", classes="series-label")
        yield Sparkline([], summary_function=fmean, id="loss-spark")
        yield Label(id="speed-label", classes="series-label")
        yield Sparkline([], summary_function=fmean, id="speed-spark")

    def on_mount(self) -> None:
        self._show()

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.record(snapshot)

    def record(self, snapshot: Snapshot) -> None:
        """Add a point for ``snapshot`` unless it is not newer than the last point."""
        if self._last_time is not None and snapshot.time <= self._last_time:
            return
        self._last_time = snapshot.time
        loss = snapshot.loss_smoothed if snapshot.loss_smoothed is not None else snapshot.loss
        # a sparkline scales to its extremes: a NaN or an infinity would leave nothing to draw
        if loss is not None and math.isfinite(loss) and abs(loss) < 1e300:
            self._losses.append(float(loss))
        if math.isfinite(snapshot.samples_per_second) and abs(snapshot.samples_per_second) < 1e300:
            self._speeds.append(float(snapshot.samples_per_second))
        if self.is_mounted:
            self._show()

    def clear(self) -> None:
        """Forget every point."""
        self._losses.clear()
        self._speeds.clear()
        self._last_time = None
        if self.is_mounted:
            self._show()

    @property
    def losses(self) -> tuple[float, ...]:
        """The recorded loss series, oldest first."""
        return tuple(self._losses)

    @property
    def speeds(self) -> tuple[float, ...]:
        """The recorded samples/s series, oldest first."""
        return tuple(self._speeds)

    def _show(self) -> None:
        losses, speeds = list(self._losses), list(self._speeds)
        loss_label = f"Loss {fmt.loss(losses[-1])}" if losses else "Loss —"
        if len(losses) > 1:
            loss_label += f"  (min {fmt.loss(min(losses))} · max {fmt.loss(max(losses))})"
        speed_label = f"Samples/s {fmt.rate(speeds[-1])}" if speeds else "Samples/s —"
        if len(speeds) > 1:
            speed_label += f"  (max {fmt.rate(max(speeds))})"
        self.query_one("#loss-label", Label).update(loss_label)
        self.query_one("#speed-label", Label).update(speed_label)
        # One point draws as a full block, which reads as "maximum": wait for a second one.
        self.query_one("#loss-spark", Sparkline).data = losses if len(losses) > 1 else []
        self.query_one("#speed-spark", Sparkline).data = speeds if len(speeds) > 1 else []
