"""This machine's all-time contribution to one swarm, kept across sessions, crashes and restarts.

The ledger separates samples that went into global steps the swarm took (``swarm_samples``) from samples
computed while this peer was alone or out of sync (``local_only_samples``): credit must match what the
volunteer saw. It is rewritten atomically, so ``kill -9`` at any moment leaves the previous version.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from volunteer.datadir import atomic_write_json, read_json
from volunteer.errors import DataDirError

LEDGER_VERSION = 1


@dataclass(frozen=True)
class Counters:
    """Contribution counters of one training process (or their sum)."""

    samples: int = 0
    steps: int = 0
    swarm_samples: int = 0
    local_only_samples: int = 0
    compute_seconds: float = 0.0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            samples=self.samples + other.samples,
            steps=self.steps + other.steps,
            swarm_samples=self.swarm_samples + other.swarm_samples,
            local_only_samples=self.local_only_samples + other.local_only_samples,
            compute_seconds=self.compute_seconds + other.compute_seconds,
        )


@dataclass(frozen=True)
class Ledger:
    """What one data directory has contributed to one run, all time."""

    run_id: str
    peer_id: str = ""
    totals: Counters = Counters()
    sessions: int = 0
    first_seen: float = 0.0
    updated: float = 0.0

    def to_dict(self) -> dict:
        return {
            "version": LEDGER_VERSION,
            "run_id": self.run_id,
            "peer_id": self.peer_id,
            "sessions": self.sessions,
            "first_seen": self.first_seen,
            "updated": self.updated,
            **dataclasses.asdict(self.totals),
        }

    @classmethod
    def from_dict(cls, data: dict, path: Path) -> Ledger:
        try:
            totals = Counters(
                samples=int(data["samples"]),
                steps=int(data["steps"]),
                swarm_samples=int(data["swarm_samples"]),
                local_only_samples=int(data["local_only_samples"]),
                compute_seconds=float(data["compute_seconds"]),
            )
            return cls(
                run_id=str(data["run_id"]),
                peer_id=str(data.get("peer_id", "")),
                totals=totals,
                sessions=int(data["sessions"]),
                first_seen=float(data["first_seen"]),
                updated=float(data["updated"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataDirError(
                f"contribution ledger {str(path)!r} is damaged (field {e})",
                f"move it aside (mv {path} {path}.bad); a new ledger starts from zero",
            ) from None


class LedgerFile:
    """Loads a ledger, counts a new session, and saves session progress on top of the earlier totals."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        data = read_json(path, "contribution ledger")
        now = time.time()
        if data is None:
            previous = Ledger(run_id=run_id, first_seen=now, updated=now)
        else:
            previous = Ledger.from_dict(data, path)
        self.base = previous
        self.current = dataclasses.replace(previous, sessions=previous.sessions + 1, updated=now)
        self._written: Ledger | None = None

    def update(self, session: Counters, peer_id: str = "") -> Ledger:
        """The ledger with this session's counters added to the totals from before it (not yet saved)."""
        self.current = dataclasses.replace(
            self.current,
            totals=self.base.totals + session,
            peer_id=peer_id or self.current.peer_id,
            updated=time.time(),
        )
        return self.current

    def save(self) -> None:
        """Write the current ledger if it changed since the last write."""
        if self._written is not None and dataclasses.replace(self._written, updated=0) == dataclasses.replace(
            self.current, updated=0
        ):
            return
        try:
            atomic_write_json(self.path, self.current.to_dict())
        except OSError as e:
            raise DataDirError(
                f"cannot write the contribution ledger {str(self.path)!r}: {e.strerror or e}",
                "free some disk space or fix the data directory's permissions",
            ) from None
        self._written = self.current
