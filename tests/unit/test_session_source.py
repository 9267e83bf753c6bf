"""The session as a SnapshotSource: its snapshots say which event is the newest."""

from __future__ import annotations

from volunteer.contribution.session import Session
from volunteer.datadir import DataDir
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


def test_a_download_under_way_is_in_the_snapshots_and_the_log(tmp_path, monkeypatch):
    import io
    import time

    import volunteer.contribution.session as session_module
    from volunteer.contribution.headless_log import HeadlessLog
    from volunteer.transfer import TransferMeter

    monkeypatch.setattr(session_module, "SNAPSHOT_INTERVAL", 0.02)
    monkeypatch.setattr(session_module, "LOG_INTERVAL", 0.05)
    stream = io.StringIO()
    session = Session(Settings(data_dir=str(tmp_path)), DataDir.open(str(tmp_path)))
    session.out = HeadlessLog("text", stream)
    meter = TransferMeter()
    with session._showing(meter):
        meter.start("project files", 10_000_000)
        meter.set_done(2_500_000)
        deadline = time.monotonic() + 10
        while session.latest().transfer is None and time.monotonic() < deadline:
            time.sleep(0.01)
        shown = session.latest().transfer
        assert shown is not None and shown.done_bytes == 2_500_000 and shown.total_bytes == 10_000_000
        while "[downloading]" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert session.latest().transfer is None, "a finished download leaves the snapshot"
    assert "[downloading] downloading project files 2.5 of 10.0 MB (25%)" in stream.getvalue()
