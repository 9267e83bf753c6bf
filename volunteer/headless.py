"""Headless output for ``docker logs``: one line per interval and one per event, as text or JSON lines."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import TextIO

from volunteer.stats import Event, Snapshot


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_status(s: Snapshot) -> str:
    """One concise line: state, peers, global step, throughput, loss, and the all-time contribution in the words
    of docs/tui.md: samples *computed*, of which *credited* (in the swarm's global steps) and *local-only*."""
    parts = [f"{s.state.value:<12}", f"peers {s.num_peers}", f"step {s.global_epoch}"]
    if s.target_batch_size:
        parts.append(f"{s.samples_accumulated}/{s.target_batch_size} samples")
    parts.append(f"{s.samples_per_second:,.1f} samples/s (swarm {s.swarm_samples_per_second:,.1f})")
    if s.loss_smoothed is not None:
        parts.append(f"loss {s.loss_smoothed:.4f}")
    parts.append(f"credited {s.swarm_samples:,}, local-only {s.local_only_samples:,} of {s.total_samples:,} computed")
    if s.transfer is not None:
        parts.append(f"downloading {s.transfer.describe()}")
    return " | ".join(parts)


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
                "peers": snapshot.num_peers,
                "global_epoch": snapshot.global_epoch,
                "local_epoch": snapshot.local_epoch,
                "samples_accumulated": snapshot.samples_accumulated,
                "target_batch_size": snapshot.target_batch_size,
                "samples_per_second": round(snapshot.samples_per_second, 3),
                "swarm_samples_per_second": round(snapshot.swarm_samples_per_second, 3),
                "loss": snapshot.loss_smoothed,
                "session_samples": snapshot.session_samples,
                "swarm_samples": snapshot.swarm_samples,
                "local_only_samples": snapshot.local_only_samples,
                "total_samples": snapshot.total_samples,
                "transfer": dataclasses.asdict(snapshot.transfer) if snapshot.transfer is not None else None,
            }
            self._write(json.dumps(data))
        else:
            self._write(f"{_when(snapshot.time)} {format_status(snapshot)}")

    def event(self, event: Event) -> None:
        if self.json:
            self._write(
                json.dumps({"type": "event", "time": event.time, "event": event.kind, "message": event.message})
            )
        else:
            self._write(f"{_when(event.time)} [{event.kind}] {event.message}")

    def text(self, message: str) -> None:
        """A block of text (the join instructions); in JSON mode, one event line."""
        if self.json:
            self._write(json.dumps({"type": "event", "time": time.time(), "event": "info", "message": message}))
        else:
            self._write(message)
