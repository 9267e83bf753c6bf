"""Headless output for ``docker logs``: one line per interval and one per event, as text or JSON lines.

Numbers may be anything (NaN, infinities, absurd sizes) and event messages may come from a project or a
peer: text lines show them without terminal control characters or line breaks (no forged log lines), JSON
lines are strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import TextIO

from volunteer.stats import Event, Snapshot, clean_text, json_safe

MAX_MESSAGE = 2000
"""Characters of one event message written at most."""


def _when(timestamp: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    except (OverflowError, ValueError, OSError):
        return "????-??-?? ??:??:??"


def _int(value: int) -> str:
    return f"{value:,}" if abs(value) < 10**18 else ("≥1e18" if value > 0 else "≤-1e18")


def _float(value: float, spec: str) -> str:
    try:
        value = float(value)
    except OverflowError:  # an int beyond every float
        value = math.inf if value > 0 else -math.inf
    if not math.isfinite(value) or abs(value) >= 1e18:
        return str(value) if not math.isfinite(value) else f"{value:.3g}"
    return format(value, spec)


def format_status(s: Snapshot) -> str:
    """One concise line: state, peers, global step, throughput, loss, and the all-time contribution in the words
    of docs/tui.md: samples *computed*, of which *credited* (in the swarm's global steps) and *local-only*."""
    parts = [f"{s.state.value:<12}", f"peers {_int(s.num_peers)}", f"step {_int(s.global_epoch)}"]
    if s.target_batch_size:
        parts.append(f"{_int(s.samples_accumulated)}/{_int(s.target_batch_size)} samples")
    rate, swarm = _float(s.samples_per_second, ",.1f"), _float(s.swarm_samples_per_second, ",.1f")
    parts.append(f"{rate} samples/s (swarm {swarm})")
    if s.loss_smoothed is not None:
        parts.append(f"loss {_float(s.loss_smoothed, '.4f')}")
    parts.append(
        f"credited {_int(s.swarm_samples)}, local-only {_int(s.local_only_samples)} of {_int(s.total_samples)} computed"
    )
    if s.transfer is not None:
        parts.append(f"downloading {s.transfer.describe()}")
    if s.wire is not None:
        parts.append(f"net {s.wire.describe()}")
        if s.wire.cap:
            parts.append(clean_text(s.wire.cap, MAX_MESSAGE))
    return " | ".join(parts)


def _round(value: float) -> float | None:
    try:
        value = float(value)
    except OverflowError:
        return None
    return round(value, 3) if math.isfinite(value) else None


class HeadlessLog:
    """Writes status and event lines to a stream, as text or JSON lines."""

    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        self.json = log_format == "json"
        self.stream = stream or sys.stdout

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away; training goes on
            pass

    def status(self, snapshot: Snapshot) -> None:
        if self.json:
            data = {
                "type": "status",
                "time": snapshot.time,
                "state": snapshot.state.value,
                "peer_id": snapshot.peer_id,
                "network_mode": snapshot.network_mode,
                "peers": snapshot.num_peers,
                "global_epoch": snapshot.global_epoch,
                "local_epoch": snapshot.local_epoch,
                "samples_accumulated": snapshot.samples_accumulated,
                "target_batch_size": snapshot.target_batch_size,
                "samples_per_second": _round(snapshot.samples_per_second),
                "swarm_samples_per_second": _round(snapshot.swarm_samples_per_second),
                "loss": snapshot.loss_smoothed,
                "session_samples": snapshot.session_samples,
                "swarm_samples": snapshot.swarm_samples,
                "local_only_samples": snapshot.local_only_samples,
                "total_samples": snapshot.total_samples,
                "transfer": dataclasses.asdict(snapshot.transfer) if snapshot.transfer is not None else None,
                "wire": dataclasses.asdict(snapshot.wire) if snapshot.wire is not None else None,
            }
            self._write(json.dumps(json_safe(data), allow_nan=False))
        else:
            self._write(f"{_when(snapshot.time)} {format_status(snapshot)}")

    def event(self, event: Event) -> None:
        kind, message = clean_text(event.kind, 40), clean_text(event.message, MAX_MESSAGE)
        if self.json:
            line = {"type": "event", "time": event.time, "event": kind, "message": message}
            self._write(json.dumps(json_safe(line), allow_nan=False))
        else:
            self._write(f"{_when(event.time)} [{kind}] {message}")

    def text(self, message: str) -> None:
        """A block of text (the join instructions); in JSON mode, one event line."""
        if self.json:
            self._write(json.dumps({"type": "event", "time": time.time(), "event": "info", "message": message}))
        else:
            self._write(message)
