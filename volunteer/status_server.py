"""The status endpoint on 127.0.0.1: the latest snapshot as JSON and Prometheus text, plus controls.

    GET  /status            the latest Snapshot as JSON
    GET  /events?since=N    {"events": [...]} with seq > N, oldest first
    GET  /metrics           the same figures for Prometheus (volunteer/metrics.py), text or OpenMetrics
    POST /control           {"command": "pause" | "resume" | "stop" | "finish" | "trust"}
                            with "Authorization: Bearer <token>" (see volunteer.control_token)

It only reads snapshots and passes commands on: views never reach into training.

It is built for a machine shared with other users and a browser that visits hostile pages. Every request
must name a loopback host in ``Host`` (a DNS-rebinding page names its own) and carry no ``Origin`` (browsers
add one to cross-origin requests); ``POST /control`` needs the session's token, compared in constant time.
Bodies are capped, sockets time out and connections are capped, so nobody can hold the threads.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry

from volunteer import metrics
from volunteer.control_token import same_token
from volunteer.errors import ConfigError
from volunteer.stats import UNHEALTHY_STATES, Command, SnapshotSource, event_to_dict, json_safe
from volunteer.status_client import is_loopback_host

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"

MAX_BODY_BYTES = 4096
"""The largest request body accepted: a command is a few dozen bytes."""
SOCKET_TIMEOUT = 10.0
"""Seconds a connection may stay silent (mid-request or idle between keep-alive requests) before it is closed."""
MAX_CONNECTIONS = 32
"""Connections served at once; more are closed at once, so that nobody can take every thread."""


class StatusServer:
    """Serves a :class:`SnapshotSource` over HTTP from a daemon thread.

    Args:
        source: What to serve and where commands go.
        host: The address to listen on; 127.0.0.1 unless a test needs otherwise.
        port: The port; 0 picks a free one.
        token: The secret ``POST /control`` requires; None refuses every command.
        read_only: Serve only ``GET /status``, ``/metrics`` and ``/healthz``, to any ``Host`` (the
            ``--metrics-address`` endpoint a Prometheus in another container scrapes); never ``/control``.
    """

    def __init__(
        self,
        source: SnapshotSource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.source = source
        handler = type(
            "Handler",
            (_ReadOnlyHandler if read_only else _Handler,),
            {"source": source, "registry": metrics.registry(source), "control_token": None if read_only else token},
        )
        try:
            self._server = _Server((host, port), handler)
        except OSError as e:
            flag = "--metrics-address with another address" if read_only else "--status-port with a free port, or 0"
            raise ConfigError(
                f"cannot open the {'metrics' if read_only else 'status'} endpoint on {host}:{port}: {e.strerror or e}",
                f"another program may be using that port, or the address is not this machine's: pass {flag}",
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="volunteer-status", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{self.port}"

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("status endpoint: %d connections already open; closing a new one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # the client went away or went quiet
            log.debug("status endpoint: a connection from %s ended: %s", client_address, error)
        else:
            log.warning("status endpoint: a request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    source: SnapshotSource
    registry: CollectorRegistry
    control_token: str | None
    server_version = "volunteer"
    timeout = SOCKET_TIMEOUT
    paths = "/status, /events, /metrics, /healthz or POST /control"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status endpoint: " + format, *args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any, **headers: str) -> None:
        self._send(code, json.dumps(json_safe(data), allow_nan=False).encode(), **headers)

    def _refuse(self, code: int, error: str, **headers: str) -> None:
        self.close_connection = True  # an unread body must not be taken for the next request
        self._json(code, {"error": error}, **headers)

    def _allowed(self) -> bool:
        """Refuse what a web page or a foreign host name can send; True when the request may go on."""
        if not is_loopback_host(self.headers.get("Host")):
            self._refuse(403, "this endpoint answers only requests to a loopback host (127.0.0.1, localhost)")
            return False
        if self.headers.get("Origin") is not None or self.headers.get("Sec-Fetch-Site", "none") != "none":
            self._refuse(403, "requests from web pages are refused")
            return False
        return True

    def do_GET(self) -> None:
        if not self._allowed():
            return
        url = urlparse(self.path)
        if url.path == "/status":
            self._json(200, self.source.latest().to_dict())
        elif url.path == "/events":
            try:
                since = int(parse_qs(url.query).get("since", ["0"])[0])
            except ValueError:
                self._json(400, {"error": "since must be an integer"})
                return
            self._json(200, {"events": [event_to_dict(e) for e in self.source.events_since(since)]})
        elif url.path == "/metrics":
            self._send(200, *metrics.exposition(self.registry, self.headers.get("Accept")))
        elif url.path == "/healthz":
            state = self.source.latest().state
            healthy = state.value not in UNHEALTHY_STATES
            self._send(200 if healthy else 503, f"{'ok' if healthy else 'unhealthy'}: {state.value}\n".encode(), TEXT)
        else:
            self._json(404, {"error": f"no such path {url.path}; try {self.paths}"})

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if urlparse(self.path).path != "/control":
            self._refuse(404, "POST /control only")
            return
        if self.control_token is None:
            self._refuse(403, "this session accepts no commands over HTTP")
            return
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not same_token(given.strip(), self.control_token):
            self._refuse(
                401,
                "a command needs the session's token: send 'Authorization: Bearer <token>' with the token "
                "from control.token in the session's data directory",
                WWW_Authenticate='Bearer realm="volunteer"',
            )
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._refuse(411, "send the command with a Content-Length")
            return
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self._refuse(400, "Content-Length must be a non-negative integer")
            return
        if length > MAX_BODY_BYTES:
            self._refuse(413, f"a command is at most {MAX_BODY_BYTES} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            command = Command(body["command"])
        except (ValueError, KeyError, TypeError):
            valid = ", ".join(c.value for c in Command)
            self._json(400, {"error": f'expected {{"command": one of {valid}}}'})
            return
        except TimeoutError:
            self.close_connection = True
            return
        self.source.send(command)
        self._json(200, {"ok": True})


class _ReadOnlyHandler(_Handler):
    """``--metrics-address``: what a dashboard or Prometheus reads, from any host name; nothing that steers."""

    paths = "/status, /metrics or /healthz"

    def _allowed(self) -> bool:
        if self.headers.get("Origin") is not None or self.headers.get("Sec-Fetch-Site", "none") != "none":
            self._refuse(403, "requests from web pages are refused")
            return False
        if urlparse(self.path).path not in ("/status", "/metrics", "/healthz"):
            self._refuse(404, f"this endpoint serves only {self.paths}; commands go to the loopback endpoint")
            return False
        return True

    def do_POST(self) -> None:
        self._refuse(405, "this endpoint is read-only; commands go to the loopback endpoint (127.0.0.1)", Allow="GET")
