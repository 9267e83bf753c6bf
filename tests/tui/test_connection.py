"""A source that goes away (attach mode, server gone): a banner, bounded retries, recovery."""

from __future__ import annotations

import pytest

from tests.tui.fakes import T0, FakeSource, events, snapshot
from tests.tui.helpers import screen_text, wait_for, wait_for_screen, widget_text
from tui.app import MAX_RETRY_DELAY, VolunteerApp, retry_delay
from tui.screens import FailureScreen
from tui.widgets import Banner, EventLog
from volunteer.stats import Command, Event

pytestmark = pytest.mark.anyio

FAST = 0.02


def test_retry_delay_doubles_and_is_bounded() -> None:
    delays = [retry_delay(attempt, 0.25) for attempt in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == MAX_RETRY_DELAY == 5.0
    assert retry_delay(10_000, 0.25) == MAX_RETRY_DELAY


async def test_a_lost_source_shows_a_banner_keeps_polling_and_recovers() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        source.failing = "cannot reach the volunteer status endpoint at http://127.0.0.1:8471/status"
        await wait_for(pilot, lambda: app.disconnected, "the disconnected state")
        await pilot.pause()
        banner = widget_text(app, "#banner")
        assert "disconnected, retrying" in banner
        assert "http://127.0.0.1:8471/status" in banner
        assert "DISCONNECTED" in screen_text(app)
        assert "42" in widget_text(app, "#swarm")  # the last figures stay, marked stale by the header
        calls = source.latest_calls
        await wait_for(pilot, lambda: source.latest_calls >= calls + 2, "more tries")
        await pilot.press("p")  # nothing can be sent while disconnected
        source.failing = None
        source.push(snapshot(time=T0 + 1, global_epoch=43))
        await wait_for(pilot, lambda: not app.disconnected, "the reconnection")
        await wait_for(pilot, lambda: app.snapshot.global_epoch == 43)
        await pilot.pause()
        assert not app.query_one(Banner).display
        assert "TRAINING" in screen_text(app)
        assert any(n.title == "reconnected" for n in app._notifications)
    assert source.commands == []


async def test_an_unreachable_source_at_start_waits_for_it() -> None:
    source = FakeSource([snapshot()])
    source.failing = "cannot reach the volunteer status endpoint at http://127.0.0.1:8471/status"
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.disconnected)
        await pilot.pause()
        assert "waiting for the first snapshot" in widget_text(app, "#you")
        await pilot.press("q")  # quitting needs no session
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == []


async def test_a_command_lost_on_the_way_is_reported() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=1.0)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        source.failing = "cannot reach the volunteer status endpoint at http://127.0.0.1:8471/control"
        await pilot.press("f")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), "an error")
        error = next(n for n in app._notifications if n.severity == "error")
        assert error.title == "could not finish" and "/control" in error.message
    assert source.commands == [] or source.commands == [Command.FINISH]


async def test_an_unexpected_source_error_becomes_a_failure_screen() -> None:
    class BrokenSource(FakeSource):
        def latest(self):  # type: ignore[no-untyped-def]
            raise KeyError("state")

    app = VolunteerApp(BrokenSource(), poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, FailureScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "this screen stopped reading the session: 'state'" in text
        assert "Traceback" not in text
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert app.return_code == 1


async def test_a_restarted_session_numbers_its_events_anew() -> None:
    source = FakeSource([snapshot()], events())
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test(size=(100, 40)) as pilot:
        log = app.query_one(EventLog)
        await wait_for(pilot, lambda: log.last_seq == 4, "the first session's events")
        source.restart(snapshot(time=T0 + 60, uptime=3.0), Event(1, T0 + 58, "joined", "joined again"))
        await wait_for(pilot, lambda: app.snapshot.uptime == 3.0, "the new session")
        await wait_for(pilot, lambda: log.last_seq == 1, "the new session's events")
        await pilot.pause()
        text = widget_text(app, "#log")
        assert "the session restarted" in text and text.endswith("joined again")
        assert any(n.title == "restarted" for n in app._notifications)


async def test_events_are_asked_for_only_when_the_snapshot_says_there_are_new_ones() -> None:
    source = FakeSource([snapshot(last_event_seq=4)], events())
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test(size=(100, 40)) as pilot:
        log = app.query_one(EventLog)
        await wait_for(pilot, lambda: log.last_seq == 4, "the first events")
        calls, polls = source.events_calls, source.latest_calls
        await wait_for(pilot, lambda: source.latest_calls >= polls + 5, "more polls")
        assert source.events_calls == calls, "nothing new: no request for events"
        source.add_events(Event(5, T0 + 1, "recovered", "back in the swarm"))
        source.push(snapshot(time=T0 + 1, last_event_seq=5))
        await wait_for(pilot, lambda: log.last_seq == 5, "the new event")
        await pilot.pause()
        assert widget_text(app, "#log").endswith("back in the swarm")


async def test_a_source_that_does_not_number_its_events_is_asked_every_poll() -> None:
    source = FakeSource([snapshot()], events())  # last_event_seq None: an older server
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: source.events_calls >= 5, "events asked for on every poll")
        source.add_events(Event(5, T0 + 1, "recovered", "back in the swarm"))
        await wait_for(pilot, lambda: app.query_one(EventLog).last_seq == 5, "the new event")
