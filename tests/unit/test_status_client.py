"""StatusClient against a tiny stdlib HTTP server that speaks the status API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from volunteer.stats import (
    Command,
    DeviceInfo,
    ErrorInfo,
    Event,
    LeaderboardEntry,
    ProjectInfo,
    Snapshot,
    State,
    event_to_dict,
)
from volunteer.status_client import DEFAULT_URL, StatusClient, normalize_url

SNAPSHOT = Snapshot(
    state=State.TRAINING,
    time=1_700_000_000.0,
    project=ProjectInfo("demo", "demo", "", "run-1", 256, ("model.py",)),
    peer_id="QmPeer",
    nickname="ada",
    device=DeviceInfo("cuda", "NVIDIA T4", 1024.0, 15_360.0, 55.0),
    session_samples=10,
    swarm_samples=8,
    local_only_samples=2,
    loss=1.5,
    leaderboard=(LeaderboardEntry("QmPeer", "ada", 8, 1.0, 1_700_000_000.0, True),),
    last_error=ErrorInfo("no peers", "check INITIAL_PEERS"),
    join_addresses=("/ip4/127.0.0.1/tcp/1/p2p/QmPeer",),
)
EVENTS = [Event(1, 1.0, "joined", "joined"), Event(2, 2.0, "state_loaded", "loaded"), Event(3, 3.0, "x", "y")]


class FakeStatusServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StatusHandler)
        self.mode = "ok"
        """ok, error500, garbage or slow."""
        self.commands: list[str] = []
        self.event_queries: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        # The slow-server test's client gives up first; the late answer's broken pipe is expected.
        pass

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class StatusHandler(BaseHTTPRequestHandler):
    server: FakeStatusServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        if self.server.mode == "slow":
            time.sleep(0.5)
        payload = b"<html>not json</html>" if self.server.mode == "garbage" else json.dumps(body).encode()
        if self.server.mode == "error500":
            status, payload = 500, b'{"error": "the session crashed"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/status":
            self._answer(200, SNAPSHOT.to_dict())
        elif url.path == "/events":
            since = parse_qs(url.query)["since"][0]
            self.server.event_queries.append(since)
            self._answer(200, {"events": [event_to_dict(e) for e in EVENTS if e.seq > int(since)]})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        command = body.get("command")
        if command not in {c.value for c in Command} or command == "trust":
            # The fake refuses "trust" to exercise the 400 path with a command the client can build.
            self._answer(400, {"error": f"unknown command {command!r}"})
            return
        self.server.commands.append(command)
        self._answer(200, {"ok": True})


@pytest.fixture
def server() -> Iterator[FakeStatusServer]:
    httpd = FakeStatusServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client(server: FakeStatusServer) -> Iterator[StatusClient]:
    with StatusClient(server.url, timeout=2.0) as status:
        yield status


def test_latest_round_trips_the_snapshot(client: StatusClient) -> None:
    assert client.latest() == SNAPSHOT


def test_events_since_passes_the_sequence_number(client: StatusClient, server: FakeStatusServer) -> None:
    assert client.events_since(0) == EVENTS
    assert client.events_since(2) == EVENTS[2:]
    assert client.events_since(3) == []
    assert server.event_queries == ["0", "2", "3"]


def test_send_posts_the_command_value(client: StatusClient, server: FakeStatusServer) -> None:
    client.send(Command.PAUSE)
    client.send(Command.FINISH)
    assert server.commands == ["pause", "finish"]


def test_a_refused_command_raises_value_error_with_the_servers_reason(client: StatusClient) -> None:
    with pytest.raises(ValueError, match="unknown command 'trust'"):
        client.send(Command.TRUST)


def test_an_unreachable_endpoint_raises_connection_error_naming_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed again: nothing listens there.
    with StatusClient(f"http://127.0.0.1:{port}", timeout=1.0) as status:
        with pytest.raises(ConnectionError, match=f"http://127.0.0.1:{port}/status"):
            status.latest()
        with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}/control"):
            status.send(Command.STOP)


def test_a_server_error_raises_connection_error(client: StatusClient, server: FakeStatusServer) -> None:
    server.mode = "error500"
    with pytest.raises(ConnectionError, match=r"/events answered 500: the session crashed"):
        client.events_since(0)


def test_a_slow_server_times_out_as_connection_error(server: FakeStatusServer) -> None:
    server.mode = "slow"
    with (
        StatusClient(server.url, timeout=0.1) as status,
        pytest.raises(ConnectionError, match=r"within 0\.1s"),
    ):
        status.latest()


def test_an_answer_that_is_not_json_raises_value_error(client: StatusClient, server: FakeStatusServer) -> None:
    server.mode = "garbage"
    with pytest.raises(ValueError, match="did not answer JSON"):
        client.latest()


def test_the_client_recovers_when_the_server_answers_again(client: StatusClient, server: FakeStatusServer) -> None:
    server.mode = "error500"
    with pytest.raises(ConnectionError):
        client.latest()
    server.mode = "ok"
    assert client.latest() == SNAPSHOT


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (None, DEFAULT_URL),
        ("", DEFAULT_URL),
        ("localhost", "http://localhost:8471"),
        ("10.0.0.2:9000", "http://10.0.0.2:9000"),
        ("http://127.0.0.1:8471/", "http://127.0.0.1:8471"),
        ("https://example.org/volunteer/", "https://example.org:443/volunteer"),
        ("[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_normalize_url(typed: str | None, expected: str) -> None:
    assert normalize_url(typed) == expected


def test_normalize_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="http://"):
        normalize_url("ftp://127.0.0.1")


def test_default_client_points_at_the_local_default_port() -> None:
    assert StatusClient().base_url == "http://127.0.0.1:8471"


def test_status_client_loads_no_heavy_or_ui_modules() -> None:
    code = (
        "import sys, volunteer.status_client\n"
        "bad = [m for m in ('torch', 'lightning', 'hivemind', 'textual', 'tui') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("typed", ["::::", "ftp://x", "http://[::1", "http://host:99999", "a b", "h:port"])
def test_normalize_url_raises_value_error_for_what_is_not_a_status_url(typed: str) -> None:
    with pytest.raises(ValueError, match="status URL"):
        normalize_url(typed)


def test_commands_carry_the_token_and_without_it_are_refused_clearly() -> None:
    from volunteer.status_client import ControlRefused
    from volunteer.status_server import StatusServer

    class Source:
        def __init__(self) -> None:
            self.commands: list[Command] = []

        def latest(self) -> Snapshot:
            return SNAPSHOT

        def events_since(self, seq: int) -> list[Event]:
            return []

        def send(self, command: Command) -> None:
            self.commands.append(command)

    source = Source()
    server = StatusServer(source, "127.0.0.1", 0, token="the-token").start()
    try:
        with StatusClient(server.url, token="the-token") as status:
            status.send(Command.TRUST)
        with StatusClient(server.url) as status:
            assert status.latest() == SNAPSHOT  # reading needs no token
            with pytest.raises(ControlRefused, match="control token"):
                status.send(Command.STOP)
        with StatusClient(server.url, token="not-the-token") as status, pytest.raises(ControlRefused):
            status.send(Command.STOP)
    finally:
        server.stop()
    assert source.commands == [Command.TRUST]
