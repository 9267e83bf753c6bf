"""What the host knows of the swarm, and how it says it: the latest report of its hivemind process, everyone it
has seen, and its output lines (text or JSON, like the headless client's)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, fields
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
    global_epoch: int = 0
    state_epoch: int = 0
    num_peers: int = 0
    num_clients: int = 0
    samples_accumulated: int = 0
    target_batch_size: int = 0
    eta_next_step: float | None = None
    averaging_rounds: int = 0
    """Averaging rounds (of gradients or parameters) the host took part in."""
    gradient_rounds: int = 0
    parameter_rounds: int = 0
    last_group_size: int = 0
    leaderboard: tuple[LeaderboardEntry, ...] = ()
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every volunteer seen since the host started, by peer id: nickname, samples (highest seen), last seen."""
    checkpoints: list[CheckpointSaved] = field(default_factory=list)

    def fresh(self, now: float | None = None) -> list[LeaderboardEntry]:
        now = time.time() if now is None else now
        return [e for e in self.leaderboard if now - e.last_seen < FRESH_SECONDS]

    def update(self, report: HostSwarm) -> None:
        for name in (f.name for f in fields(report)):
            setattr(self, name, getattr(report, name))
        for entry in self.leaderboard:
            known = self.seen.setdefault(entry.peer_id, {"nickname": entry.nickname, "samples": 0})
            known.update(
                nickname=entry.nickname,
                samples=max(known["samples"], entry.samples),
                last_seen=max(known.get("last_seen", 0.0), entry.last_seen),
            )

    def summary(self) -> dict[str, Any]:
        fresh = self.fresh()
        return {
            "global_epoch": self.global_epoch,
            "state_epoch": self.state_epoch,
            "num_peers": self.num_peers,
            "num_clients": self.num_clients,
            "samples_accumulated": self.samples_accumulated,
            "target_batch_size": self.target_batch_size,
            "eta_next_step": self.eta_next_step,
            "volunteers_training": len(fresh),
            "swarm_samples_per_second": sum(e.samples_per_second for e in fresh),
            "volunteers_seen": len(self.seen),
            "samples_seen": sum(v["samples"] for v in self.seen.values()),
            "averaging_rounds": self.averaging_rounds,
            "gradient_rounds": self.gradient_rounds,
            "parameter_rounds": self.parameter_rounds,
            "last_group_size": self.last_group_size,
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
