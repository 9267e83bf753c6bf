"""The container's HEALTHCHECK against a stand-in status endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from volunteer import endpoint_file, healthcheck


class StatusServer:
    """A tiny stand-in for the client's status endpoint; ``reply`` is what ``GET /status`` answers."""

    def __init__(self) -> None:
        self.reply: tuple[int, bytes] = (200, b'{"state": "training"}')
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = outer.reply if self.path == "/status" else (404, b"{}")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def answer(self, payload: object, code: int = 200) -> None:
        self.reply = (code, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    server = StatusServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("VOLUNTEER_STATUS_PORT", raising=False)
    # an empty data directory: no session recorded its endpoint there
    monkeypatch.setenv("VOLUNTEER_HOME", str(tmp_path / "data"))


@pytest.mark.parametrize("state", ["starting", "downloading", "waiting_for_consent", "training", "paused"])
def test_live_states_are_healthy(status_server: StatusServer, state: str, capsys: pytest.CaptureFixture) -> None:
    status_server.answer({"state": state, "step": 3})
    assert healthcheck.main(["--port", str(status_server.port)]) == 0
    assert f"state is {state}" in capsys.readouterr().out


@pytest.mark.parametrize("state", ["failed", "stopped"])
def test_failed_and_stopped_are_unhealthy(status_server: StatusServer, state: str) -> None:
    status_server.answer({"state": state})
    assert healthcheck.main(["--port", str(status_server.port)]) == 1


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        ({"step": 1}, 200, "without a state"),
        (b"<html>", 200, "not JSON"),
        ([1, 2], 200, "not an object"),
        ({"state": "training"}, 500, "HTTP 500"),
    ],
)
def test_bad_answers_are_unhealthy(
    status_server: StatusServer, payload: object, code: int, reason: str, capsys: pytest.CaptureFixture
) -> None:
    status_server.answer(payload, code)
    assert healthcheck.main(["--port", str(status_server.port)]) == 1
    assert reason in capsys.readouterr().out


def test_nothing_listening_is_unhealthy(closed_port: int, capsys: pytest.CaptureFixture) -> None:
    assert healthcheck.main(["--port", str(closed_port), "--timeout", "2"]) == 1
    assert "did not answer" in capsys.readouterr().out


def test_port_comes_from_the_environment(status_server: StatusServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOLUNTEER_STATUS_PORT", str(status_server.port))
    assert healthcheck.main([]) == 0


def test_default_port_is_the_clients_default() -> None:
    from volunteer.settings import Settings

    assert healthcheck.status_url(Settings().status_port) == "http://127.0.0.1:8471/status"


def test_endpoint_off_passes_with_a_note(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("VOLUNTEER_STATUS_PORT", "0")
    assert healthcheck.main([]) == 0
    assert "off" in capsys.readouterr().out


def test_bad_port_variable_is_unhealthy(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("VOLUNTEER_STATUS_PORT", "eighty")
    assert healthcheck.main([]) == 1
    assert "VOLUNTEER_STATUS_PORT" in capsys.readouterr().out


def test_proxy_variables_are_ignored(status_server: StatusServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert healthcheck.main(["--port", str(status_server.port)]) == 0


def test_runs_as_a_module_with_the_standard_library_only(status_server: StatusServer) -> None:
    """As Docker runs it: ``python -m volunteer.healthcheck``; and it must not drag in torch or hivemind."""
    code = (
        "import sys, runpy; sys.argv = ['healthcheck', '--port', sys.argv[1]]\n"
        "try:\n    runpy.run_module('volunteer.healthcheck', run_name='__main__')\n"
        "except SystemExit as e:\n    status = e.code\n"
        "heavy = sorted(m for m in ('torch', 'hivemind', 'lightning', 'textual', 'requests') if m in sys.modules)\n"
        "print('heavy:', heavy); sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(status_server.port)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy: state is training" in result.stdout
    assert "heavy: []" in result.stdout


# --- the endpoint the session recorded (the dashboard mode serves its session on a port it picks) -----------------


def test_the_recorded_endpoint_wins_over_the_default_and_the_variable(
    status_server: StatusServer, closed_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
) -> None:
    monkeypatch.setenv("VOLUNTEER_STATUS_PORT", str(closed_port))
    endpoint_file.record(tmp_path / "data", f"http://127.0.0.1:{status_server.port}")
    assert healthcheck.main([]) == 0
    assert "healthy: state is training" in capsys.readouterr().out
    status_server.answer({"state": "failed"})
    assert healthcheck.main([]) == 1


def test_a_record_whose_process_is_gone_is_ignored(
    status_server: StatusServer, closed_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    endpoint_file.record(tmp_path / "data", f"http://127.0.0.1:{closed_port}", pid=int(gone.stdout))
    monkeypatch.setenv("VOLUNTEER_STATUS_PORT", str(status_server.port))
    assert endpoint_file.recorded_url() is None
    assert healthcheck.main([]) == 0


@pytest.mark.parametrize("content", ["", "{", "[1]", '{"url": 5, "pid": 1}'])
def test_a_damaged_record_is_ignored(content: str, tmp_path) -> None:
    (tmp_path / "data").mkdir()
    endpoint_file.endpoint_path(tmp_path / "data").write_text(content)
    assert endpoint_file.recorded_url() is None


def test_forget_leaves_a_newer_sessions_record(tmp_path) -> None:
    endpoint_file.record(tmp_path, "http://127.0.0.1:1111")
    endpoint_file.forget(tmp_path, "http://127.0.0.1:2222")
    assert endpoint_file.recorded_url(tmp_path) == "http://127.0.0.1:1111"
    endpoint_file.forget(tmp_path, "http://127.0.0.1:1111")
    assert not endpoint_file.endpoint_path(tmp_path).exists()
