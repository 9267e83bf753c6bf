"""The TUI attached over HTTP: StatusClient against a stdlib server that serves a FakeSource."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.tui.fakes import FakeSource, events, snapshot
from tests.tui.helpers import screen_text, wait_for
from tui.app import VolunteerApp
from tui.widgets import Banner, EventLog
from volunteer.stats import Command, event_to_dict
from volunteer.status_client import StatusClient

pytestmark = pytest.mark.anyio


class StatusServer(ThreadingHTTPServer):
    """The status API in front of any SnapshotSource, as the contract describes it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, source: FakeSource, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), StatusHandler)
        self.source = source

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left


class StatusHandler(BaseHTTPRequestHandler):
    server: StatusServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/status":
            self._answer(200, self.server.source.latest().to_dict())
        elif url.path == "/events":
            since = int(parse_qs(url.query).get("since", ["0"])[0])
            self._answer(200, {"events": [event_to_dict(e) for e in self.server.source.events_since(since)]})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            self.server.source.send(Command(body.get("command")))
        except ValueError as error:
            self._answer(400, {"error": str(error)})
            return
        self._answer(200, {"ok": True})


@contextmanager
def serving(source: FakeSource, port: int = 0) -> Iterator[StatusServer]:
    server = StatusServer(source, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_attach_reads_sends_survives_a_restart_of_the_server() -> None:
    source = FakeSource([snapshot()], events())
    with serving(source) as server:
        port = server.server_address[1]
        client = StatusClient(f"127.0.0.1:{port}", timeout=0.5)
        # Not faster: with the server in this process, fast polling keeps Pilot's idle wait busy.
        app = VolunteerApp(client, poll_interval=0.1, attach=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.snapshot == snapshot(), "the snapshot over HTTP")
            await wait_for(pilot, lambda: app.query_one(EventLog).last_seq == 4, "the events over HTTP")
            await pilot.press("p")
            await wait_for(pilot, lambda: source.commands == [Command.PAUSE], "PAUSE over HTTP")

            server.shutdown()
            server.server_close()
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
