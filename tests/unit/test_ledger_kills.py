"""Credit survives ``kill -9`` at any moment: the session, its ledger and a simulated training process.

The training process is played by a seeded random walk of the strategy's counters (batches, global steps,
settled rounds); a kill is an exception raised at a moment drawn from the same seed, either between two
messages or just before a ledger write lands. After each kill, the next session reads the same ledger.
"""

from __future__ import annotations

import json
import random

import pytest

import volunteer.ledger
from volunteer.contribution.session import Session
from volunteer.datadir import DataDir
from volunteer.ledger import Counters
from volunteer.protocol import TrainingStats
from volunteer.settings import Settings
from volunteer.stats import State

SEED = 20261205
KILLS = 25
BATCH = 16


class Killed(BaseException):
    """The process is gone: nothing after this point runs (not even ``finally`` blocks that write)."""


class Worker:
    """A training process's credit counters as the strategy keeps them: computed = credited + local + pending."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.samples = self.swarm = self.local_only = self.pending = self.steps = 0
        self.judging: list[int] = []

    def advance(self) -> None:
        roll = self.rng.random()
        if roll < 0.6:
            self.samples += BATCH
            self.pending += BATCH
            self.steps += 1
        elif roll < 0.8 and self.pending:  # a global step: its round is judged later
            self.judging.append(self.pending)
            self.pending = 0
        elif roll < 0.95 and self.judging:  # a round ended, with others or alone
            settled = self.judging.pop(0)
            if self.rng.random() < 0.7:
                self.swarm += settled
            else:
                self.local_only += settled
        elif self.pending:  # a step alone, or a jump after loading the swarm's state
            self.local_only += self.pending
            self.pending = 0

    def stats(self) -> TrainingStats:
        counters = Counters(self.samples, self.steps, self.swarm, self.local_only, float(self.steps))
        return TrainingStats(
            state=State.TRAINING,
            counters=counters,
            pending_samples=self.pending + sum(self.judging),
            samples_per_second=10.0,
        )


def _on_disk(path) -> dict:
    return json.loads(path.read_text())


def test_shown_credit_is_on_disk_and_every_sample_is_accounted_after_kills_at_random_moments(tmp_path, monkeypatch):
    rng = random.Random(SEED)
    settings = Settings(project="demo", status_port=0)
    data_dir = DataDir.open(tmp_path / "data")
    moments = {"left": 0}  # moments left before the kill
    write = volunteer.ledger.atomic_write_json
    path = None

    def moment(where: str) -> None:
        """One moment at which the process may die; a reader of /status may have seen the latest snapshot."""
        shown = session.latest()
        if path is not None and path.exists():
            disk = _on_disk(path)
            assert shown.swarm_samples <= disk["swarm_samples"], f"credit shown but not written ({where}, {log})"
            assert shown.total_samples <= disk["samples"], f"samples shown but not written ({where}, {log})"
        if session.ledger is not None:  # this session's figures are the written ones too
            assert shown.total_samples - shown.session_samples == session.ledger.base.totals.samples, log
        moments["left"] -= 1
        if moments["left"] == 0:
            raise Killed(where)

    def write_or_die(target, data):
        moment("before a ledger write lands")
        write(target, data)

    monkeypatch.setattr(volunteer.ledger, "atomic_write_json", write_or_die)
    log: list[str] = []  # the kills so far, for the failure message
    computed_before = 0  # samples of earlier sessions that a ledger write had recorded
    for kill in range(KILLS):
        session = Session(settings, data_dir)
        session._prepare()  # reads the ledger the last kill left
        path = session.ledger.path
        totals = session.ledger.base.totals
        assert totals.samples == totals.swarm_samples + totals.local_only_samples, f"unaccounted samples ({log})"
        assert totals.samples >= computed_before, f"samples lost ({log})"
        worker = Worker(rng)
        events = rng.randrange(1, 120)
        moments["left"] = rng.randrange(1, 2 * events)
        log.append(f"kill {kill}: {events} events, at moment {moments['left']}")
        try:
            for _ in range(events):
                worker.advance()
                session._on_stats(worker.stats())
                if rng.random() < 0.3:
                    session._last_ledger_save = -1e9  # LEDGER_INTERVAL has passed
                session._tick()
                moment("between two messages")
            session._save_ledger()  # the moment may fall after the last message: die before writing
            moment("after the last write")
        except Killed as e:
            log[-1] += f" ({e})"
        moments["left"] = -1  # a session that outlived its moment dies here, having written what it wrote
        if path.exists():
            computed_before = _on_disk(path)["samples"]

    session = Session(settings, data_dir)
    session._prepare()
    totals = session.ledger.base.totals
    assert totals.samples == totals.swarm_samples + totals.local_only_samples >= computed_before > 0
    shown = session.latest()
    assert (shown.total_samples, shown.swarm_samples, shown.local_only_samples) == (
        totals.samples,
        totals.swarm_samples,
        totals.local_only_samples,
    )


@pytest.mark.parametrize(
    ("counts", "recovered"),
    [
        ((6112, 0, 4096), 2016),  # issue 22: a session killed with 2,016 samples in a step not yet judged
        ((1000, 600, 500), 0),  # more settled than computed (a torn read of the counters, before the fix)
        ((1000, 600, 400), 0),
    ],
)
def test_the_next_session_counts_unsettled_samples_local_only(tmp_path, counts, recovered):
    from volunteer.ledger import LedgerFile

    samples, swarm, local_only = counts
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run_id": "run", "samples": samples, "steps": 10, "swarm_samples": swarm,
                                "local_only_samples": local_only, "compute_seconds": 1.0, "sessions": 1,
                                "first_seen": 1.0, "updated": 1.0}))  # fmt: skip
    ledger = LedgerFile(path, "run")
    totals = ledger.base.totals
    assert totals.samples == totals.swarm_samples + totals.local_only_samples
    assert totals.swarm_samples == swarm, "credit is never taken away"
    assert totals.local_only_samples == local_only + recovered and ledger.recovered == recovered
    ledger.save()
    assert json.loads(path.read_text())["local_only_samples"] == local_only + recovered


def test_a_ledger_that_cannot_be_written_shows_no_new_credit_and_says_so_once_per_credit(tmp_path, monkeypatch):
    session = Session(Settings(project="demo", status_port=0), DataDir.open(tmp_path / "data"))
    session._prepare()

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(volunteer.ledger, "atomic_write_json", disk_full)
    worker = Worker(random.Random(SEED))
    worker.samples = worker.swarm = 512
    for _ in range(3):  # the training process reports every half second; the credit stays the same
        session._on_stats(worker.stats())
    errors = [e for e in session.events_since(0) if e.kind == "error"]
    assert len(errors) == 1 and "No space left on device" in errors[0].message
    assert session.latest().swarm_samples == 0, "credit shown that the ledger does not hold"
