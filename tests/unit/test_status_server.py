"""The status endpoint serves whatever SnapshotSource it is given, over real HTTP on 127.0.0.1.

It must be safe on a machine shared with other users and from a browser: commands need the session's token,
requests must name a loopback host and come from no web page, bodies are capped and sockets time out.
"""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request

import pytest

from volunteer import status_server
from volunteer.errors import ConfigError
from volunteer.stats import Command, Event, LeaderboardEntry, ProjectInfo, Snapshot, State
from volunteer.status_server import StatusServer, is_loopback_host

TOKEN = "s3cret-token-for-tests"


class FakeSource:
    def __init__(self) -> None:
        self.snapshot = Snapshot(
            state=State.TRAINING,
            time=1.0,
            peer_id="12D3KooWpeer",
            nickname="ada",
            project=ProjectInfo(name="Demo", repo="demo", run_id="run"),
            session_samples=640,
            swarm_samples=512,
            local_only_samples=128,
            total_samples=640,
            samples_per_second=100.5,
            loss=0.25,
            global_epoch=3,
            num_peers=2,
            samples_accumulated=100,
            target_batch_size=256,
            leaderboard=(LeaderboardEntry("12D3KooWpeer", "ada", 512, 100.5, 1.0, True),),
        )
        self.commands: list[Command] = []
        self.events = [Event(1, 1.0, "joined", "hello"), Event(2, 2.0, "paused", "paused")]

    def latest(self) -> Snapshot:
        return self.snapshot

    def events_since(self, seq: int) -> list[Event]:
        return [e for e in self.events if e.seq > seq]

    def send(self, command: Command) -> None:
        self.commands.append(command)


@pytest.fixture
def served():
    source = FakeSource()
    server = StatusServer(source, "127.0.0.1", 0, token=TOKEN).start()
    yield source, server.url
    server.stop()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def _post(url: str, body: dict, token: str | None = TOKEN, **headers: str) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **headers}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_status_round_trips_the_snapshot(served):
    source, url = served
    status, body = _get(url + "/status")
    assert status == 200
    assert Snapshot.from_dict(json.loads(body)) == source.snapshot


def test_events_since(served):
    _, url = served
    _, body = _get(url + "/events?since=1")
    assert [e["kind"] for e in json.loads(body)["events"]] == ["paused"]


def test_metrics_in_prometheus_text_format(served):
    _, url = served
    status, body = _get(url + "/metrics")
    text = body.decode()
    assert status == 200
    assert "volunteer_swarm_samples_total 512.0" in text
    assert "volunteer_local_only_samples_total 128.0" in text
    assert 'volunteer_state{state="training"} 1.0' in text
    assert "volunteer_peers 2.0" in text
    assert 'nickname="ada"' in text


def test_control_passes_commands_and_rejects_unknown_ones(served):
    source, url = served
    assert _post(url + "/control", {"command": "pause"}) == (200, {"ok": True})
    assert _post(url + "/control", {"command": "finish"})[0] == 200
    code, body = _post(url + "/control", {"command": "explode"})
    assert code == 400 and "pause" in body["error"]
    assert source.commands == [Command.PAUSE, Command.FINISH]


def test_a_busy_port_is_a_clear_error(served):
    _, url = served
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError) as info:
        StatusServer(FakeSource(), "127.0.0.1", port)
    assert "--status-port" in info.value.hint


# -- a shared machine and a browser ------------------------------------------------------------------------


def _raw(url: str, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``request`` as it is over a socket; the status code and the body of the answer."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _control(url: str, *headers: str, body: bytes = b'{"command": "trust"}', host: str = "127.0.0.1") -> bytes:
    lines = ["POST /control HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_command_without_the_token_is_refused_and_never_reaches_the_session(served):
    source, url = served
    for token in (None, "", "wrong", TOKEN[:-1], TOKEN + "x", "x" * 10_000):
        code, body = _post(url + "/control", {"command": "trust"}, token=token)
        assert code == 401, token
        assert "token" in body["error"]
    code, _ = _raw(url, _control(url, f"Authorization: Basic {TOKEN}", "Content-Length: 20"))
    assert code == 401
    assert source.commands == []


def test_a_session_without_a_token_takes_no_command_at_all():
    source = FakeSource()
    server = StatusServer(source, "127.0.0.1", 0).start()
    try:
        assert _post(server.url + "/control", {"command": "stop"})[0] == 403
        assert _get(server.url + "/status")[0] == 200
    finally:
        server.stop()
    assert source.commands == []


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8471", "127.0.0.1.evil.example", "10.0.0.2", "[2001:db8::1]:80", ""]
)
def test_a_request_naming_a_foreign_host_is_refused(served, host):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: it must not read or control anything."""
    source, url = served
    get = f"GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert _raw(url, get)[0] == 403
    post = _control(url, f"Authorization: Bearer {TOKEN}", "Content-Length: 20", host=host)
    assert _raw(url, post)[0] == 403
    assert source.commands == []


def test_a_request_without_a_host_is_refused(served):
    _, url = served
    assert _raw(url, b"GET /status HTTP/1.0\r\n\r\n")[0] == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:8471", "127.0.0.1:1", "127.9.9.9", "[::1]:80"])
def test_loopback_names_are_served(served, host):
    _, url = served
    code, body = _raw(url, f"GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert code == 200 and json.loads(body)["state"] == "training"


def test_is_loopback_host_refuses_what_is_not_a_plain_host():
    for bad in ("localhost@evil", "localhost/x", "localhost:port", "[::1", "127.0.0.1:99999", None, "a b"):
        assert not is_loopback_host(bad), bad


@pytest.mark.parametrize(
    "header",
    ["Origin: http://127.0.0.1:8471", "Origin: null", "Origin: https://evil.example", "Sec-Fetch-Site: cross-site"],
)
def test_a_request_from_a_web_page_is_refused_even_with_the_token(served, header):
    source, url = served
    get = f"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\nConnection: close\r\n\r\n".encode()
    assert _raw(url, get)[0] == 403
    assert _raw(url, _control(url, f"Authorization: Bearer {TOKEN}", "Content-Length: 20", header))[0] == 403
    assert source.commands == []


@pytest.mark.parametrize(
    ("length", "code"), [("-1", 400), ("abc", 400), ("99999999999999999999", 413), ("65537", 413), (None, 411)]
)
def test_a_bad_or_huge_content_length_is_refused_at_once(served, length, code):
    """``Content-Length: -1`` used to read an unbounded body; now nothing is read at all."""
    source, url = served
    headers = [f"Authorization: Bearer {TOKEN}"] + ([f"Content-Length: {length}"] if length is not None else [])
    started = time.monotonic()
    # the body is left unsent: a server that waited for it would run into the 10 s timeout below
    assert _raw(url, _control(url, *headers, body=b""), timeout=10)[0] == code
    assert time.monotonic() - started < 5
    assert source.commands == []


def test_a_silent_connection_is_closed(monkeypatch):
    monkeypatch.setattr(status_server._Handler, "timeout", 0.5)
    server = StatusServer(FakeSource(), "127.0.0.1", 0, token=TOKEN).start()
    try:
        port = server.port
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the blank line
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server, not by our 30 s timeout
            assert time.monotonic() - started < 25
    finally:
        server.stop()


def test_connections_are_capped_and_a_slot_frees_when_one_closes(monkeypatch):
    monkeypatch.setattr(status_server, "MAX_CONNECTIONS", 2)
    server = StatusServer(FakeSource(), "127.0.0.1", 0, token=TOKEN).start()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.3)  # both are being served (waiting for their request line)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as third:
            third.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert third.recv(1024) == b""  # closed at once: no slot
        idle.pop().close()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _get(server.url + "/status")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_status_is_strict_json_even_with_non_finite_numbers():
    source = FakeSource()
    source.snapshot = source.snapshot.replace(
        loss=math.nan, samples_per_second=math.inf, eta_next_step=-math.inf, learning_rate=1e308 * 10
    )
    server = StatusServer(source, "127.0.0.1", 0, token=TOKEN).start()
    try:
        _, body = _get(server.url + "/status")
        _, metrics = _get(server.url + "/metrics")
    finally:
        server.stop()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    data = json.loads(body, parse_constant=refuse)
    assert data["loss"] is None and data["eta_next_step"] is None
    snapshot = Snapshot.from_dict(data)
    assert snapshot.samples_per_second == 0.0  # null for a number that cannot be None: the field's default
    assert b"volunteer_leaderboard_dropped 0.0" in metrics
