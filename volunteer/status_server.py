"""The status endpoint on 127.0.0.1: the latest snapshot as JSON and Prometheus text, plus controls.

    GET  /status            the latest Snapshot as JSON
    GET  /events?since=N    {"events": [...]} with seq > N, oldest first
    GET  /metrics           the same figures for Prometheus (volunteer/metrics.py), text or OpenMetrics
    POST /control           {"command": "pause" | "resume" | "stop" | "finish" | "trust"}

It only reads snapshots and passes commands on: views never reach into training.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry

from volunteer import metrics
from volunteer.errors import ConfigError
from volunteer.stats import Command, SnapshotSource, event_to_dict

log = logging.getLogger(__name__)


class StatusServer:
    """Serves a :class:`SnapshotSource` over HTTP from a daemon thread."""

    def __init__(self, source: SnapshotSource, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        handler = type("Handler", (_Handler,), {"source": source, "registry": metrics.registry(source)})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise ConfigError(
                f"cannot open the status endpoint on {host}:{port}: {e.strerror or e}",
                "another volunteer may be using that port: pass --status-port with a free port, or 0 to turn "
                "the endpoint off",
            ) from None
        self._server.daemon_threads = True
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


class _Handler(BaseHTTPRequestHandler):
    source: SnapshotSource
    registry: CollectorRegistry
    server_version = "volunteer"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status endpoint: " + format, *args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data).encode())

    def do_GET(self) -> None:
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
        else:
            self._json(404, {"error": f"no such path {url.path}; try /status, /events, /metrics or POST /control"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/control":
            self._json(404, {"error": "POST /control only"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
            command = Command(body["command"])
        except (ValueError, KeyError, TypeError):
            valid = ", ".join(c.value for c in Command)
            self._json(400, {"error": f'expected {{"command": one of {valid}}}'})
            return
        self.source.send(command)
        self._json(200, {"ok": True})
