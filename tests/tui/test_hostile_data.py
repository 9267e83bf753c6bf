"""No data can crash or steer the dashboard: arbitrary snapshots, leaderboards and events, markup in names.

The property tests keep one app running under Pilot and let Hypothesis, in a worker thread, feed it one
generated snapshot after another through the same messages the poller posts; every example must leave the
app running and the whole screen renderable.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import hostile
from tests.tui.fakes import FakeSource, snapshot
from tests.tui.helpers import screen_text, wait_for, wait_for_screen
from tui.app import VolunteerApp
from tui.messages import EventsArrived, SnapshotUpdated
from tui.screens import FailureScreen, TrustScreen
from tui.widgets import Leaderboard
from volunteer.stats import LeaderboardEntry, ProjectInfo, State

pytestmark = pytest.mark.anyio

EXAMPLES = 40
"""Examples per terminal size: each one is a full round of messages and a full render."""


@pytest.mark.parametrize("size", [(120, 40), (50, 16)])
async def test_no_snapshot_leaderboard_or_event_can_crash_the_dashboard(size) -> None:
    app = VolunteerApp(FakeSource([snapshot()]), poll_interval=60.0)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        loop = asyncio.get_running_loop()
        shown = 0

        async def show(snap, events) -> None:
            nonlocal shown
            app.post_message(SnapshotUpdated(snap))
            if events:
                app.post_message(EventsArrived(tuple(events)))
            await pilot.pause()
            await pilot.pause()
            assert app.is_running and app._exception is None, f"the dashboard died on {snap!r}"
            screen_text(app)  # every visible widget renders, dialogs included
            shown += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(snap=hostile.snapshots, events=st.lists(hostile.events, max_size=4))
        def feed(snap, events) -> None:
            asyncio.run_coroutine_threadsafe(show(snap, events), loop).result(timeout=60)

        await asyncio.to_thread(feed)
        assert shown >= EXAMPLES
        assert app.is_running


async def test_a_manifest_name_with_markup_is_shown_as_text_and_clicking_it_trusts_nothing() -> None:
    """The name used to be Textual markup: '[@click=screen.accept]' made a click on it accept consent."""
    project = ProjectInfo(
        name="[@click=screen.accept]Free GPU credits, click here[/]",
        repo="[/]evil/[bold]proj",
        revision="\x1b]0;pwned\x07abc",
        run_id="[/]",
        files=("model.py", "[@click=app.quit]data.py[/]", "evil\x1b[2J.py"),
    )
    source = FakeSource([snapshot(state=State.WAITING_FOR_CONSENT, project=project)])
    app = VolunteerApp(source, poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_screen(pilot, TrustScreen)
        text = screen_text(app)
        assert "[@click=screen.accept]Free GPU credits, click here[/]" in text
        assert "[@click=app.quit]data.py[/]" in text
        assert "\x1b" not in text
        await pilot.click("#trust-name")
        await pilot.click("#trust-files-list")
        await pilot.pause(0.3)
        assert isinstance(app.screen, TrustScreen), "a click on the project's name answered the dialog"
        assert app.is_running
    assert source.commands == []


async def test_a_failure_with_markup_and_escapes_in_its_message_shows_them_as_text() -> None:
    from volunteer.stats import ErrorInfo

    error = ErrorInfo("ValueError: [/] and \x1b[2J from the project's code", "[@click=app.quit]read it[/]")
    app = VolunteerApp(FakeSource([snapshot(state=State.FAILED, last_error=error)]), poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_screen(pilot, FailureScreen)
        text = screen_text(app)
        assert "ValueError: [/] and [2J from the project's code" in text
        assert "[@click=app.quit]read it[/]" in text


async def test_nicknames_reach_the_screen_without_escape_sequences() -> None:
    nasty = LeaderboardEntry("QmRogue", "\x1b]0;pwned\x07\x1b[2J[b]rogue[/b]", 10, 1.0, 0.0)
    app = VolunteerApp(FakeSource([snapshot(leaderboard=(nasty,), leaderboard_dropped=3)]), poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        table = app.query_one(Leaderboard)
        cells = [cell.plain for cell in table.get_row_at(0)]
        assert cells[1].startswith("]0;pw")
        assert not any(ord(c) < 32 for cell in cells for c in cell)
        assert "3 records dropped" in str(table.border_subtitle)
