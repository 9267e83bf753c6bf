"""A hostile or broken peers URL is a warning and a fallback, never a traceback, never a hung start-up.

Each server here is a raw socket on 127.0.0.1 that answers exactly the bytes a test scripts, as slowly
as it likes: truncated bodies, corrupt gzip, a drip of one byte at a time, headers that never end.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.projects import PEER_A, PEER_B, isolate_environment
from volunteer.datadir import DataDir
from volunteer.project import collect_peers, remember_working_peers

RUN = "hostile-url"
HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.open(tmp_path / "data")


@contextmanager
def scripted_server(*parts: bytes, delay: float = 0.0, repeat_last: float = 0.0) -> Iterator[str]:
    """Serve ``parts`` to every connection, ``delay`` seconds apart; then repeat the last part for
    ``repeat_last`` seconds (a drip), and close."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request
                for part in parts:
                    conn.sendall(part)
                    if stop.wait(delay):
                        return
                end = time.monotonic() + repeat_last
                while parts and time.monotonic() < end and not stop.is_set():
                    conn.sendall(parts[-1])
                    stop.wait(delay)
            except OSError:
                pass  # the client gave up: that is the point

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/peers"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _collect(data_dir: DataDir, url: str, timeout: float = 2.0, initial_peers: str | None = PEER_A):
    started = time.monotonic()
    peers = collect_peers(
        initial_peers=initial_peers, run_id=RUN, data_dir=data_dir, peers_url=url, url_timeout=timeout
    )
    return peers, time.monotonic() - started


def test_a_truncated_body_is_a_warning(data_dir: DataDir) -> None:
    """urllib3's IncompleteRead used to escape ``except requests.RequestException`` as a traceback."""
    with scripted_server(HEADERS + b"Content-Length: 1000\r\n\r\n" + PEER_B.encode()[:20]) as url:
        peers, _ = _collect(data_dir, url)
    assert peers.addresses == (PEER_A,)
    (warning,) = peers.warnings
    assert f"peers URL {url} failed" in warning


def test_a_corrupt_gzip_body_is_a_warning(data_dir: DataDir) -> None:
    """urllib3's DecodeError used to escape as a traceback too."""
    body = b"\x1f\x8b\x08\x00garbage, not gzip at all"
    with scripted_server(HEADERS + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body) as url:
        peers, _ = _collect(data_dir, url)
    assert peers.addresses == (PEER_A,) and "failed" in peers.warnings[0]


def test_a_body_dripping_a_byte_at_a_time_cannot_hold_start_up(data_dir: DataDir) -> None:
    """Each byte came within the read timeout, so the fetch used to last as long as the server liked."""
    with scripted_server(HEADERS + b"\r\n/", b"i", delay=0.1, repeat_last=30) as url:
        peers, elapsed = _collect(data_dir, url, timeout=1.0)
    assert elapsed < 10, f"the fetch took {elapsed:.1f} s with a 1 s timeout"
    assert peers.addresses == (PEER_A,) and "timed out" in peers.warnings[0]


def test_headers_that_never_end_cannot_hold_start_up(data_dir: DataDir) -> None:
    with scripted_server(b"HTTP/1.1 200 OK\r\n", b"X-Drip: y\r\n", delay=0.1, repeat_last=30) as url:
        peers, elapsed = _collect(data_dir, url, timeout=1.0)
    assert elapsed < 10, f"the fetch took {elapsed:.1f} s with a 1 s timeout"
    assert "timed out" in peers.warnings[0]


@pytest.mark.parametrize(
    "answer",
    [
        b"not http at all\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad chunk\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40000\r\n\r\n" + b"[" * 40000,
        b"",
    ],
    ids=["not-http", "negative-length", "bad-chunk", "json-nested-40000-deep", "closed-at-once"],
)
def test_a_broken_answer_is_a_warning(data_dir: DataDir, answer: bytes) -> None:
    with scripted_server(answer) as url:
        peers, elapsed = _collect(data_dir, url)
    assert peers.addresses == (PEER_A,) and peers.warnings  # failed, or its lines skipped as invalid
    assert elapsed < 10


def test_a_failing_url_falls_back_to_the_cache(data_dir: DataDir) -> None:
    remember_working_peers(data_dir, RUN, [PEER_B])
    with scripted_server(HEADERS + b"Content-Length: 1000\r\n\r\nshort") as url:
        peers, _ = _collect(data_dir, url, initial_peers=None)
    assert peers.addresses == (PEER_B,) and peers.from_cache


@pytest.mark.parametrize("url", ["ftp://example.org/peers", "http://[::1/peers", "http://", "nonsense"])
def test_a_url_requests_cannot_fetch_is_a_warning(data_dir: DataDir, url: str) -> None:
    peers, _ = _collect(data_dir, url)
    assert peers.addresses == (PEER_A,) and "failed" in peers.warnings[0]


def test_re_reading_the_peers_on_reconnect_never_kills_the_session(tmp_path: Path, monkeypatch) -> None:
    """``_recollect_peers`` caught only VolunteerError: any other failure killed a running client."""
    from types import SimpleNamespace

    import volunteer.project
    from volunteer.contribution.session import Session
    from volunteer.settings import Settings

    session = Session(Settings(data_dir=str(tmp_path)), DataDir.open(str(tmp_path)))
    session.prepared = SimpleNamespace(project=None)

    def broken(*args: object) -> None:
        raise RuntimeError("urllib3 said something unexpected")

    monkeypatch.setattr(volunteer.project, "collect_project_peers", broken)
    assert session._recollect_peers((PEER_A,)) == (PEER_A,)
    (event,) = session.events_since(0)
    assert event.kind == "warning" and "urllib3 said something unexpected" in event.message


def test_on_reconnect_a_failing_url_is_a_warning_and_the_previous_peers_stay(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from volunteer.contribution.session import Session
    from volunteer.settings import Settings

    with scripted_server(HEADERS + b"Content-Length: 1000\r\n\r\nshort") as url:
        manifest = SimpleNamespace(run_id=RUN, peers=SimpleNamespace(file=None, url=url, url_timeout=2.0))
        session = Session(Settings(data_dir=str(tmp_path)), DataDir.open(str(tmp_path)))
        session.prepared = SimpleNamespace(project=SimpleNamespace(manifest=manifest, root=tmp_path))
        assert session._recollect_peers((PEER_B,)) == (PEER_B,)
    assert any(f"peers URL {url} failed" in e.message for e in session.events_since(0))
