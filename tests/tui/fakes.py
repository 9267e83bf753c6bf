"""A scripted SnapshotSource and deterministic snapshots for the TUI tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from volunteer.stats import (
    Command,
    DeviceInfo,
    ErrorInfo,
    Event,
    LeaderboardEntry,
    ProjectInfo,
    Snapshot,
    State,
)

T0 = 1_700_000_000.0
"""A fixed snapshot time: nothing on screen may depend on the wall clock."""

PROJECT = ProjectInfo(
    name="tiny-shakespeare",
    repo="volunteer-ml/tiny-shakespeare",
    revision="3f2a9c1d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1",
    run_id="shakespeare-v1",
    target_batch_size=4096,
    files=("project.toml", "model.py", "data.py"),
)

SELF_ID = "QmSelfPeer0000000000000000000000000000000000abcd"


def leaderboard() -> tuple[LeaderboardEntry, ...]:
    return (
        LeaderboardEntry("QmAlice00000000000000000000000000000000000000a1", "alice", 812_340, 95.2, T0 - 1),
        LeaderboardEntry(SELF_ID, "you-too", 50_000, 42.1, T0, is_self=True),
        LeaderboardEntry("QmBob0000000000000000000000000000000000000000b2", "bob", 120_500, 31.7, T0 - 12),
        LeaderboardEntry("QmCarol00000000000000000000000000000000000000c3", "carol", 9_870, 0.0, T0 - 700),
    )


def snapshot(**changes: object) -> Snapshot:
    """A training snapshot with every figure set, at time ``T0``; ``changes`` override fields."""
    base = Snapshot(
        state=State.TRAINING,
        time=T0,
        project=PROJECT,
        peer_id=SELF_ID,
        nickname="you-too",
        device=DeviceInfo(
            kind="cuda", name="NVIDIA A100", memory_used_mb=12_288, memory_total_mb=40_960, utilization=87
        ),
        session_samples=1_234,
        session_steps=120,
        total_samples=56_789,
        total_steps=4_500,
        swarm_samples=50_000,
        local_only_samples=6_000,
        samples_per_second=42.1,
        loss=2.3456,
        loss_smoothed=2.3141,
        learning_rate=3e-4,
        uptime=3_723,
        reconnects=0,
        global_epoch=42,
        local_epoch=42,
        num_peers=4,
        samples_accumulated=2_580,
        target_batch_size=4096,
        swarm_samples_per_second=169.0,
        eta_next_step=9.0,
        leaderboard=leaderboard(),
    )
    return base.replace(**changes)


def history(points: int = 30) -> list[Snapshot]:
    """A deterministic run of snapshots one second apart, loss falling and speed rising."""
    return [
        snapshot(
            time=T0 - points + i,
            loss_smoothed=3.2 - 0.9 * i / points + (0.05 if i % 3 == 0 else 0.0),
            samples_per_second=30.0 + 12.0 * i / points + (2.0 if i % 4 == 0 else 0.0),
            session_samples=1_234 - (points - i) * 40,
        )
        for i in range(points)
    ] + [snapshot()]


def events() -> list[Event]:
    return [
        Event(1, T0 - 3600, "joined", "joined the swarm through 2 initial peers"),
        Event(2, T0 - 3590, "state_loaded", "loaded the swarm's state at epoch 12"),
        Event(3, T0 - 600, "reconnecting", "lost the swarm: no peers answered"),
        Event(4, T0 - 570, "recovered", "back in the swarm at epoch 38"),
    ]


class FakeSource:
    """Serves a script of snapshots (one per poll, then the last forever) and records sent commands."""

    def __init__(self, snapshots: Iterable[Snapshot] = (), events: Iterable[Event] = ()) -> None:
        self._lock = threading.Lock()
        self._script = list(snapshots)
        self._current = self._script.pop(0) if self._script else snapshot()
        self._events = list(events)
        self.commands: list[Command] = []
        self.latest_calls = 0
        self.events_calls = 0
        self.failing: str | None = None
        """While set, every call raises ConnectionError with this message."""
        self.refuse: str | None = None
        """While set, ``send`` raises ValueError with this message (an unknown command)."""

    def latest(self) -> Snapshot:
        with self._lock:
            self.latest_calls += 1
            if self.failing:
                raise ConnectionError(self.failing)
            current = self._current
            if self._script:
                self._current = self._script.pop(0)
            return current

    def events_since(self, seq: int) -> list[Event]:
        with self._lock:
            self.events_calls += 1
            if self.failing:
                raise ConnectionError(self.failing)
            return [event for event in self._events if event.seq > seq]

    def send(self, command: Command) -> None:
        with self._lock:
            if self.failing:
                raise ConnectionError(self.failing)
            if self.refuse:
                raise ValueError(self.refuse)
            self.commands.append(command)

    @property
    def drained(self) -> bool:
        """True once every scripted snapshot has been served."""
        with self._lock:
            return not self._script

    def push(self, *snapshots: Snapshot) -> None:
        """Serve these next, in order."""
        with self._lock:
            self._script.extend(snapshots)

    def add_events(self, *events: Event) -> None:
        with self._lock:
            self._events.extend(events)

    def restart(self, first: Snapshot, *events: Event) -> None:
        """Behave like a restarted session: serve ``first`` next and number events anew."""
        with self._lock:
            self._script = [first]
            self._events = list(events)


def failed(message: str = "the project's training_step raised ZeroDivisionError", hint: str | None = None):
    return snapshot(
        state=State.FAILED,
        last_error=ErrorInfo(message, hint or "fix model.py in the project, or ask its authors"),
    )
