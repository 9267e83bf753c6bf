"""The session as a SnapshotSource: its snapshots say which event is the newest."""

from __future__ import annotations

from volunteer.datadir import DataDir
from volunteer.session import Session
from volunteer.settings import Settings


def test_snapshots_carry_the_newest_event_number(tmp_path):
    session = Session(Settings(data_dir=str(tmp_path)), DataDir.open(str(tmp_path)))
    assert session.latest().last_event_seq == 0
    session.event("joined", "joined the swarm", echo=False)
    session.event("state_loaded", "loaded the swarm's state", echo=False)
    latest = session.latest()
    assert latest.last_event_seq == 2
    assert [event.seq for event in session.events_since(latest.last_event_seq - 1)] == [2]
    assert session.latest() == latest, "nothing new: the same snapshot"
