"""What the host knows of the swarm, and how it says it: the latest report of its hivemind process, everyone it
has seen, and its output lines (text or JSON, like the headless client's)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from volunteer.protocol import CheckpointSaved, HostSwarm
from volunteer.stats import LeaderboardEntry

FRESH_SECONDS = 30.0
"""A volunteer whose leaderboard record is older than this is not counted as training now."""


@dataclass
class SwarmView:
    """What the host knows of the swarm: the latest report of its hivemind process, and everyone it has seen."""

    peer_id: str = ""
    addresses: tuple[str, ...] = ()
    swarm: HostSwarm = field(default_factory=HostSwarm)
    """The hivemind process's latest report."""
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every volunteer seen since the host started, by peer id: nickname, samples (highest seen), last seen."""
    checkpoints: list[CheckpointSaved] = field(default_factory=list)

    @property
    def leaderboard(self) -> tuple[LeaderboardEntry, ...]:
        return self.swarm.leaderboard

    def fresh(self, now: float | None = None) -> list[LeaderboardEntry]:
        now = time.time() if now is None else now
        return [e for e in self.leaderboard if now - e.last_seen < FRESH_SECONDS]

    def update(self, report: HostSwarm) -> None:
        self.swarm = report
        for entry in report.leaderboard:
            known = self.seen.setdefault(entry.peer_id, {"nickname": entry.nickname, "samples": 0})
            known.update(
                nickname=entry.nickname,
                samples=max(known["samples"], entry.samples),
                last_seen=max(known.get("last_seen", 0.0), entry.last_seen),
            )

    def summary(self) -> dict[str, Any]:
        fresh = self.fresh()
        figures = {name: value for name, value in asdict(self.swarm).items() if name != "leaderboard"}
        return {
            **figures,
            "volunteers_training": len(fresh),
            "swarm_samples_per_second": sum(e.samples_per_second for e in fresh),
            "volunteers_seen": len(self.seen),
            "samples_seen": sum(v["samples"] for v in self.seen.values()),
        }


class HostLog:
    """The host's output: an event or status line at a time, as text or JSON lines (like the headless client)."""

    def __init__(self, log_format: str = "text", stream: TextIO | None = None) -> None:
        self.json = log_format == "json"
        self.stream = stream or sys.stdout

    def write(self, kind: str, text: str, **data: Any) -> None:
        now = time.time()
        if self.json:
            line = json.dumps(
                {"type": kind, "time": now, **data}
                if data
                else {"type": "event", "time": now, "event": kind, "message": text}
            )
        else:
            line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))} [{kind}] {text}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away; the host goes on
            pass
