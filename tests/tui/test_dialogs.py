"""The trust dialog and the failure screen follow the session's state."""

from __future__ import annotations

import pytest

from tests.tui.fakes import PROJECT, T0, FakeSource, events, failed, snapshot
from tests.tui.helpers import screen_text, wait_for, wait_for_screen
from tui.app import VolunteerApp
from tui.screens import FailureScreen, TrustScreen
from volunteer.stats import Command, State

pytestmark = pytest.mark.anyio

FAST = 0.02
CONSENT = snapshot(state=State.WAITING_FOR_CONSENT)


async def test_the_trust_dialog_shows_the_project_and_the_files_that_will_run() -> None:
    app = VolunteerApp(FakeSource([CONSENT]), poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "tiny-shakespeare" in text
        assert "volunteer-ml/tiny-shakespeare" in text
        assert PROJECT.revision in text  # the full sha: what exactly will run
        assert "Files that will run (3)" in text
        for name in PROJECT.files:
            assert name in text


async def test_file_names_in_the_trust_dialog_are_plain_text() -> None:
    import dataclasses

    hostile = ("[@click=screen.accept]model[/].py", "[/]", "[b]data.py")
    source = FakeSource([dataclasses.replace(CONSENT, project=dataclasses.replace(PROJECT, files=hostile))])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.pause()
        text = screen_text(app)
        for name in hostile:
            assert name in text, "shown exactly as named"
        await pilot.click("#trust-files-list")
        await pilot.pause()
        assert Command.TRUST not in source.commands and isinstance(app.screen, TrustScreen), "a click is not consent"


async def test_accepting_sends_trust_once() -> None:
    source = FakeSource([CONSENT])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.press("p")  # main-screen keys do nothing here
        await pilot.press("a")
        await wait_for(pilot, lambda: source.commands == [Command.TRUST], "TRUST")
        # The session may still say WAITING_FOR_CONSENT for a moment: the dialog must not come back.
        source.push(snapshot(time=T0 + 1, state=State.WAITING_FOR_CONSENT))
        await wait_for(pilot, lambda: app.snapshot.time == T0 + 1)
        await pilot.pause(0.05)
        assert not isinstance(app.screen, TrustScreen)
        source.push(snapshot(time=T0 + 2, state=State.CONNECTING))
        await wait_for(pilot, lambda: app.snapshot.state is State.CONNECTING)
        assert source.commands == [Command.TRUST]


async def test_accepting_by_mouse() -> None:
    source = FakeSource([CONSENT])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.click("#accept")
        await wait_for(pilot, lambda: source.commands == [Command.TRUST], "TRUST")


async def test_declining_stops_a_local_session_and_quits() -> None:
    source = FakeSource([CONSENT])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == [Command.STOP]


async def test_declining_when_attached_only_detaches() -> None:
    source = FakeSource([CONSENT])
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        await pilot.click("#decline")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert source.commands == []


async def test_consent_given_elsewhere_closes_the_dialog() -> None:
    source = FakeSource([CONSENT])
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, TrustScreen)
        source.push(snapshot(time=T0 + 1, state=State.CONNECTING))
        await wait_for(pilot, lambda: not isinstance(app.screen, TrustScreen), "the dialog to close")
        assert source.commands == []
        # A later consent request (a new project) asks again.
        source.push(snapshot(time=T0 + 2, state=State.WAITING_FOR_CONSENT))
        await wait_for_screen(pilot, TrustScreen)


async def test_a_failed_session_shows_what_to_do_never_a_traceback() -> None:
    source = FakeSource([snapshot(), failed()], events())
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, FailureScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "the session failed" in text
        assert "the project's training_step raised ZeroDivisionError" in text
        assert "hint: fix model.py in the project, or ask its authors" in text
        assert "Start it again: volunteer --project volunteer-ml/tiny-shakespeare" in text
        assert "50,000 so far" in text
        assert "back in the swarm at epoch 38" in text  # the latest events, for context
        assert "Traceback" not in text
        await pilot.press("p", "f", "l")  # nothing to pause or finish
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")
    assert app.return_code == 1
    assert source.commands == []


async def test_the_failure_screen_leaves_when_a_restarted_session_recovers() -> None:
    source = FakeSource([failed()])
    app = VolunteerApp(source, poll_interval=FAST, attach=True)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, FailureScreen)
        assert "Restart the headless volunteer" in screen_text(app)
        source.push(snapshot(time=T0 + 1, state=State.LOADING_STATE))
        await wait_for(pilot, lambda: not isinstance(app.screen, FailureScreen), "the main screen")
        assert "SYNCING" in screen_text(app)


async def test_a_failure_without_an_error_still_explains_itself() -> None:
    source = FakeSource([snapshot(state=State.FAILED)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, FailureScreen)
        await pilot.pause()
        assert "the session stopped without reporting an error" in screen_text(app)
