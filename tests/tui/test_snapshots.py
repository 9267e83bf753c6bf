"""SVG snapshots of the main screen and the dialogs, from deterministic data.

Refresh after a deliberate change of look: ``pytest tests/tui --snapshot-update``; nobody edits the SVGs.
"""

from __future__ import annotations

from textual.pilot import Pilot

from tests.tui.fakes import FakeSource, events, failed, history, snapshot
from tests.tui.helpers import wait_for, wait_for_screen
from tui.app import VolunteerApp
from tui.screens import FailureScreen, HelpScreen, QuitScreen, TrustScreen
from tui.widgets import EventLog, HistoryPanel
from volunteer.stats import ErrorInfo, State

FAST = 0.02


def app_for(*snapshots, attach: bool = False) -> VolunteerApp:  # type: ignore[no-untyped-def]
    return VolunteerApp(FakeSource(snapshots, events()), poll_interval=FAST, attach=attach)


async def settled(pilot: Pilot) -> None:
    """Wait for the (single, final) snapshot and the events, then replay a fixed history."""
    app = pilot.app
    assert isinstance(app, VolunteerApp)
    await wait_for(pilot, lambda: app.snapshot is not None and app.query_one(EventLog).last_seq == 4)
    # The poller may (rightly) skip snapshots when the UI lags; replaying keeps the SVG deterministic.
    panel = app.query_one(HistoryPanel)
    panel.clear()
    for point in history():
        panel.record(point)
    await pilot.pause()


def test_main_screen_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_for(snapshot()), terminal_size=(80, 24), run_before=settled)


def test_main_screen_120x40(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_for(snapshot()), terminal_size=(120, 40), run_before=settled)


def test_main_screen_with_an_error_banner_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    error = ErrorInfo("no peers answered for 60 s", "check VOLUNTEER_INITIAL_PEERS")
    app = app_for(snapshot(state=State.RECONNECTING, last_error=error, reconnects=3))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)


def test_trust_dialog_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await settled(pilot)
        await wait_for_screen(pilot, TrustScreen)

    app = app_for(snapshot(state=State.WAITING_FOR_CONSENT))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_quit_dialog_attached_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await settled(pilot)
        await pilot.press("q")
        await wait_for_screen(pilot, QuitScreen)

    assert snap_compare(app_for(snapshot(), attach=True), terminal_size=(80, 24), run_before=run_before)


def test_failure_screen_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await settled(pilot)
        await wait_for_screen(pilot, FailureScreen)

    assert snap_compare(app_for(failed()), terminal_size=(80, 24), run_before=run_before)


def test_help_screen_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await settled(pilot)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)

    assert snap_compare(app_for(snapshot()), terminal_size=(80, 24), run_before=run_before)
