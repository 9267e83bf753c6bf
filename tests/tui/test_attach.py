"""The TUI attached over HTTP: StatusClient against the real status endpoint serving a FakeSource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.tui.fakes import FakeSource, events, snapshot
from tests.tui.helpers import screen_text, wait_for
from tui.app import VolunteerApp
from tui.widgets import Banner, EventLog
from volunteer.stats import Command
from volunteer.status_client import StatusClient
from volunteer.status_server import StatusServer

pytestmark = pytest.mark.anyio


TOKEN = "the-session-token"


@contextmanager
def serving(source: FakeSource, port: int = 0) -> Iterator[StatusServer]:
    server = StatusServer(source, "127.0.0.1", port, token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


async def test_attach_reads_sends_survives_a_restart_of_the_server() -> None:
    source = FakeSource([snapshot()], events())
    with serving(source) as server:
        port = server.port
        client = StatusClient(f"127.0.0.1:{port}", timeout=0.5, token=TOKEN)
        # Not faster: with the server in this process, fast polling keeps Pilot's idle wait busy.
        app = VolunteerApp(client, poll_interval=0.1, attach=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.snapshot == snapshot(), "the snapshot over HTTP")
            await wait_for(pilot, lambda: app.query_one(EventLog).last_seq == 4, "the events over HTTP")
            await pilot.press("p")
            await wait_for(pilot, lambda: source.commands == [Command.PAUSE], "PAUSE over HTTP")

            server.stop()
            await wait_for(pilot, lambda: app.disconnected, "the disconnected banner")
            await pilot.pause()
            assert f"127.0.0.1:{port}" in screen_text(app)

            with serving(source, port):
                await wait_for(pilot, lambda: not app.disconnected, "the reconnection")
                await pilot.pause()
                assert not app.query_one(Banner).display
                await pilot.press("q", "d")
                await wait_for(pilot, lambda: app.return_code is not None, "the app to detach")
        client.close()
    assert source.commands == [Command.PAUSE]


async def test_attached_without_the_token_the_dashboard_shows_but_commands_are_refused() -> None:
    source = FakeSource([snapshot()], events())
    with serving(source) as server:
        client = StatusClient(server.url, timeout=0.5)
        app = VolunteerApp(client, poll_interval=0.1, attach=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.snapshot == snapshot(), "the snapshot over HTTP")
            await pilot.press("p")
            await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), "the refusal")
            error = next(n for n in app._notifications if n.severity == "error")
            assert error.title == "could not pause" and "control token" in error.message
            await pilot.press("q", "d")
            await wait_for(pilot, lambda: app.return_code is not None, "the app to detach")
        client.close()
    assert source.commands == []
