"""The dashboard attached to a real headless session's real status endpoint: it shows it and drives it."""

from __future__ import annotations

import time

import pytest

from tests.integration.volunteers import Volunteer
from tests.tui.helpers import screen_text
from tui.app import VolunteerApp
from volunteer.control_token import read_token
from volunteer.stats import State
from volunteer.status_client import StatusClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(pilot, condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{screen_text(pilot.app)}")
        await pilot.pause(0.2)


async def test_attach_shows_and_controls_a_running_headless_volunteer(tmp_path):
    volunteer = Volunteer(tmp_path, "ada")
    try:
        volunteer.wait_training()
        # as 'volunteer attach' does: the session's control token is in its data directory
        token = read_token(volunteer.data_dir / "control.token")
        app = VolunteerApp(StatusClient(volunteer.url, token=token), attach=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None and app.snapshot.state == State.TRAINING, "training")
            await _until(pilot, lambda: "ada" in screen_text(app) and "TRAINING" in screen_text(app), "the screen")
            await pilot.press("p")
            await _until(pilot, lambda: volunteer.status()["state"] == "paused", "the session to pause")
            await _until(pilot, lambda: "PAUSED" in screen_text(app), "PAUSED on screen")
            await pilot.press("p")
            await _until(pilot, lambda: volunteer.status()["state"] == "training", "the session to resume")
            await pilot.press("q")  # attached: quitting detaches (with a choice while training)
            await pilot.pause(0.5)
            if app.is_running:
                await pilot.press("d")
            await _until(pilot, lambda: not app.is_running, "the dashboard to close", timeout=10)
        assert volunteer.status()["state"] == "training", "detaching leaves the session training"
    finally:
        volunteer.stop()
