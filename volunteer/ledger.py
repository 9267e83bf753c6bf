"""This machine's all-time contribution to one swarm, kept across sessions, crashes and restarts.

The ledger separates samples that went into global steps the swarm took (``swarm_samples``) from samples
computed while this peer was alone or out of sync (``local_only_samples``): credit must match what the
volunteer saw. It is rewritten atomically, so ``kill -9`` at any moment leaves the previous version, and the
session shows all-time figures only once they are written (see :attr:`LedgerFile.saved`).

While a session runs, ``samples`` counts samples whose global step has not ended yet: they are neither credited
nor local-only. A session that ends normally counts them local-only; one killed outright cannot, so the next
session does it when it reads the ledger (:attr:`LedgerFile.recovered`): nobody can know whether they were credited.

A ledger that cannot be read back (not JSON, not UTF-8, a count that is negative, fractional or not finite)
is never overwritten: it is renamed aside (``<run>.json.damaged-<time>``) with a warning, and counting starts
again from zero next to it.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
    def from_dict(cls, data: object, path: Path) -> Ledger:
        """Raises: DataDirError naming the field that is missing or out of range."""
        if not isinstance(data, dict):
            raise _damaged(path, "it is not a JSON object")
        try:
            totals = Counters(
                samples=_count(data, "samples"),
                steps=_count(data, "steps"),
                swarm_samples=_count(data, "swarm_samples"),
                local_only_samples=_count(data, "local_only_samples"),
                compute_seconds=_seconds(data, "compute_seconds"),
            )
            return cls(
                run_id=_text(data, "run_id"),
                peer_id=_text(data, "peer_id", ""),
                totals=totals,
                sessions=_count(data, "sessions"),
                first_seen=_seconds(data, "first_seen"),
                updated=_seconds(data, "updated"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise _damaged(path, f"field {e}") from None


MAX_COUNT = 2**62


def _count(data: dict, key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
        raise ValueError(f"{key!r} is {str(value)[:40]}, not a whole number from 0")
    return value


def _seconds(data: dict, key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key!r} is {str(value)[:40]}, not a finite number from 0")
    return float(value)


def _text(data: dict, key: str, default: str | None = None) -> str:
    value = data.get(key, default) if default is not None else data[key]
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError(f"{key!r} is not a short string")
    return value


def _damaged(path: Path, why: str) -> DataDirError:
    return DataDirError(
        f"contribution ledger {str(path)!r} is damaged ({why})",
        f"move it aside (mv {path} {path}.bad); a new ledger starts from zero",
    )


class LedgerFile:
    """Loads a ledger, counts a new session, and saves session progress on top of the earlier totals."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.warning: str | None = None
        """Set when a damaged ledger was set aside: say so to the volunteer."""
        now = time.time()
        try:
            data = read_json(path, "contribution ledger")
            previous = None if data is None else Ledger.from_dict(data, path)
        except DataDirError as e:
            if not path.is_file():
                raise  # unreadable, or not a file: nothing to set aside, and nothing may overwrite it
            self.warning = f"{e.message}; {self._set_aside(e)}"
            previous = None
        if previous is None:
            previous = Ledger(run_id=run_id, first_seen=now, updated=now)
        totals = previous.totals
        settled = totals.swarm_samples + totals.local_only_samples
        self.recovered = max(0, totals.samples - settled)
        """Samples the last session computed but never saw settled (it was killed): local-only from now on."""
        if totals.samples != settled:
            totals = dataclasses.replace(
                totals,
                samples=max(totals.samples, settled),
                local_only_samples=totals.local_only_samples + self.recovered,
            )
            previous = dataclasses.replace(previous, totals=totals)
        self.base = previous
        self.current = dataclasses.replace(previous, sessions=previous.sessions + 1, updated=now)
        self._written: Ledger | None = None

    @property
    def saved(self) -> Counters:
        """The totals a kill now would leave for the next session: the last ones written (or read)."""
        return (self._written or self.base).totals

    def _set_aside(self, error: DataDirError) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        try:
            os.replace(self.path, aside)
        except OSError as e:
            raise DataDirError(
                f"{error.message}, and it cannot be moved aside: {e.strerror or e}",
                error.hint or "move it aside by hand",
            ) from None
        return f"it was moved aside to {aside} and this run's contribution is counted from zero"

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
