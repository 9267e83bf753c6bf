"""The status endpoint on 127.0.0.1: the latest snapshot as JSON and Prometheus text, plus controls.

    GET  /status            the latest Snapshot as JSON
    GET  /events?since=N    {"events": [...]} with seq > N, oldest first
    GET  /metrics           the same figures in Prometheus text format
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
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from volunteer.control_token import same_token
from volunteer.errors import ConfigError
from volunteer.stats import Command, SnapshotSource, State, event_to_dict, json_safe
from volunteer.status_client import is_loopback_host

log = logging.getLogger(__name__)

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
    """

    def __init__(
        self, source: SnapshotSource, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None
    ) -> None:
        self.source = source
        handler = type(
            "Handler", (_Handler,), {"source": source, "registry": _registry(source), "control_token": token}
        )
        try:
            self._server = _Server((host, port), handler)
        except OSError as e:
            raise ConfigError(
                f"cannot open the status endpoint on {host}:{port}: {e.strerror or e}",
                "another volunteer may be using that port: pass --status-port with a free port, or 0 to turn "
                "the endpoint off",
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="volunteer-status", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

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
            self._send(200, generate_latest(self.registry), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._json(404, {"error": f"no such path {url.path}; try /status, /events, /metrics or POST /control"})

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


def _gauge(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _registry(source: SnapshotSource) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(source))
    return registry


class _SnapshotCollector:
    """Prometheus metrics computed from the latest snapshot at scrape time."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self):
        s = self.source.latest()
        info = InfoMetricFamily("volunteer", "This client and its project")
        info.add_metric(
            [],
            {
                "peer_id": s.peer_id,
                "nickname": s.nickname,
                "project": s.project.name,
                "repo": s.project.repo,
                "revision": s.project.revision,
                "run_id": s.project.run_id,
                "device": s.device.name,
            },
        )
        yield info
        state = GaugeMetricFamily("volunteer_state", "1 for the current state", labels=["state"])
        for value in State:
            state.add_metric([value.value], 1.0 if s.state == value else 0.0)
        yield state
        gauges = {
            "volunteer_session_samples": ("Samples computed in this session", s.session_samples),
            "volunteer_session_steps": ("Local steps in this session", s.session_steps),
            "volunteer_samples_total": ("Samples computed, all time", s.total_samples),
            "volunteer_swarm_samples_total": ("Samples that went into swarm global steps, all time", s.swarm_samples),
            "volunteer_local_only_samples_total": (
                "Samples computed alone or out of sync, all time",
                s.local_only_samples,
            ),
            "volunteer_samples_per_second": ("This peer's throughput", s.samples_per_second),
            "volunteer_swarm_samples_per_second": ("The swarm's throughput", s.swarm_samples_per_second),
            "volunteer_global_epoch": ("The swarm's global step", s.global_epoch),
            "volunteer_local_epoch": ("This peer's global step", s.local_epoch),
            "volunteer_peers": ("Peers in the swarm", s.num_peers),
            "volunteer_samples_accumulated": ("Samples accumulated toward the next global step", s.samples_accumulated),
            "volunteer_target_batch_size": ("Samples per global step", s.target_batch_size),
            "volunteer_uptime_seconds": ("Seconds since this client started", s.uptime),
            "volunteer_reconnects": ("Times this client reconnected to the swarm", s.reconnects),
        }
        optional = {
            "volunteer_loss": ("Last training loss", s.loss),
            "volunteer_loss_smoothed": ("Smoothed training loss", s.loss_smoothed),
            "volunteer_learning_rate": ("Current learning rate", s.learning_rate),
            "volunteer_eta_next_step_seconds": ("Estimated seconds to the next global step", s.eta_next_step),
        }
        for name, (doc, value) in {**gauges, **optional}.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=_gauge(value))
        yield GaugeMetricFamily(
            "volunteer_leaderboard_dropped",
            "Peer records left off the latest leaderboard: invalid, forged or beyond the entries kept",
            value=_gauge(s.leaderboard_dropped),
        )
