"""Keys (and the mouse) drive the control interface: the commands a fake source receives."""

from __future__ import annotations

import pytest

from tests.tui.fakes import T0, FakeSource, snapshot
from tests.tui.helpers import screen_text, wait_for, wait_for_screen
from tui.app import ACTIVE_STATES, VolunteerApp
from tui.screens import HelpScreen, QuitScreen
from tui.widgets import StatusHeader
from volunteer.stats import Command, State

pytestmark = pytest.mark.anyio

FAST = 0.02


async def started(pilot, app: VolunteerApp) -> None:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
    # the footer rebuilds itself for the new state after the snapshot arrives: wait for that too
    await wait_for(pilot, lambda: _footer_settled(app), "the footer to show the session's keys")
    await pilot.pause()


def _footer_settled(app: VolunteerApp) -> bool:
    keys = [entry for entry in app.screen.query("FooterKey") if entry.is_mounted]
    state = app.snapshot.state if app.snapshot else None
    wanted = "resume" if state is State.PAUSED else "pause"
    live = any(entry.action == wanted and not entry.disabled for entry in keys)
    return live or state not in (ACTIVE_STATES | {State.PAUSED})


def footer_keys(app: VolunteerApp) -> str:
    return screen_text(app).splitlines()[-1]


def footer_key(app: VolunteerApp, key: str):  # type: ignore[no-untyped-def]
    """The footer's clickable entry for ``key`` (the footer rebuilds itself when bindings change)."""
    return next(entry for entry in app.screen.query("FooterKey") if entry.key == key)


async def test_p_pauses_and_then_resumes() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        assert "p Pause" in footer_keys(app)
        await pilot.press("p")
        await wait_for(pilot, lambda: source.commands == [Command.PAUSE], "PAUSE")
        source.push(snapshot(time=T0 + 1, state=State.PAUSED))
        await wait_for(pilot, lambda: app.snapshot.state is State.PAUSED)
        await pilot.pause()
        assert "p Resume" in footer_keys(app)
        assert "PAUSED" in screen_text(app)
        await pilot.press("p")
        await wait_for(pilot, lambda: source.commands == [Command.PAUSE, Command.RESUME], "RESUME")


async def test_p_sends_nothing_while_the_session_cannot_pause() -> None:
    source = FakeSource([snapshot(state=State.STARTING)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("p", "f")
        await pilot.pause(0.1)
        assert source.commands == []


async def test_f_finishes_then_quits_when_the_session_stops() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: source.commands == [Command.FINISH], "FINISH")
        assert app.finishing
        await pilot.pause()
        assert "finishing after this step" in screen_text(app)
        await pilot.press("f")  # asked once is enough
        source.push(snapshot(time=T0 + 1, state=State.STOPPING), snapshot(time=T0 + 2, state=State.STOPPED))
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert app.return_code == 0
    assert source.commands == [Command.FINISH]


async def test_q_while_training_asks_first_and_cancel_keeps_training() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("p")  # the main screen's keys are off while the dialog is up
        await pilot.press("n")
        assert not isinstance(app.screen, QuitScreen)
        await pilot.pause(0.1)
        assert source.commands == []
        assert app.return_code is None


async def test_q_then_y_stops_the_session_and_quits() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == [Command.STOP]
    assert app.return_code == 0


async def test_q_then_f_finishes_instead() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q", "f")
        await wait_for(pilot, lambda: source.commands == [Command.FINISH], "FINISH")
        assert app.return_code is None and app.finishing


async def test_attached_q_can_detach_and_leave_the_session_training() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q")
        assert "Detach" in screen_text(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == []


async def test_detach_is_not_offered_to_a_local_session() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q")
        assert "Detach" not in screen_text(app)
        await pilot.press("d")
        await pilot.pause(0.1)
        assert isinstance(app.screen, QuitScreen)


async def test_q_when_not_training_quits_at_once_and_stops_a_local_session() -> None:
    source = FakeSource([snapshot(state=State.PAUSED)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == [Command.STOP]


async def test_q_after_the_session_stopped_sends_nothing() -> None:
    source = FakeSource([snapshot(state=State.STOPPED)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        assert any("stopped" in n.message for n in app._notifications)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == []
    assert app.return_code == 0


async def test_mouse_clicks_work_on_the_footer_and_dialog_buttons() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.click(footer_key(app, "p"))
        await wait_for(pilot, lambda: source.commands == [Command.PAUSE], "PAUSE from a click")
        await pilot.click(footer_key(app, "q"))
        await wait_for_screen(pilot, QuitScreen)
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: not isinstance(app.screen, QuitScreen), "the dialog to close")
        await pilot.click(footer_key(app, "q"))
        await wait_for_screen(pilot, QuitScreen)
        await pilot.click("#stop")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == [Command.PAUSE, Command.STOP]


async def test_a_refused_command_shows_an_error_notification() -> None:
    source = FakeSource([snapshot()])
    source.refuse = "unknown command 'pause'"
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), "an error")
        error = next(n for n in app._notifications if n.severity == "error")
        assert error.title == "could not pause" and "unknown command" in error.message


async def test_question_mark_opens_help_explaining_every_figure() -> None:
    from tui.figures import KEYS, SECTIONS

    app = VolunteerApp(FakeSource([snapshot()]), poll_interval=FAST)
    async with app.run_test(size=(120, 200)) as pilot:
        await started(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        text = " ".join(screen_text(app).split())
        for section in SECTIONS:
            for figure in section.figures:
                assert figure.name in text
                assert " ".join(figure.meaning.split()[:6]) in text
        for key in KEYS:
            assert " ".join(key.meaning.split()[:4]) in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_header_colours_each_state() -> None:
    from tui.widgets._status_header import STATE_STYLES

    assert set(STATE_STYLES) == set(State)
    app = VolunteerApp(FakeSource([snapshot()]), poll_interval=FAST)
    async with app.run_test() as pilot:
        await started(pilot, app)
        header = app.query_one(StatusHeader)
        colours = {
            state: STATE_STYLES[state]
            for state in (State.TRAINING, State.LOADING_STATE, State.RECONNECTING, State.PAUSED, State.FAILED)
        }
        assert len(set(colours.values())) == len(colours)  # five states, five colours
        header.snapshot = snapshot(state=State.LOADING_STATE)
        await pilot.pause()
        assert "SYNCING" in screen_text(app)
