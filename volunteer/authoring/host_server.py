"""The host's HTTP endpoint: the peer list for volunteers, the swarm's state for the author."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from volunteer.authoring.host_view import SwarmView
from volunteer.errors import ConfigError


class ServedHost(Protocol):
    """What :class:`HostServer` shows of the host."""

    peers: tuple[str, ...]
    view: SwarmView

    def swarm_json(self) -> dict[str, Any]: ...


class HostServer:
    """``GET /peers`` (text, one multiaddress a line), ``GET /swarm`` (JSON) and ``GET /healthz``."""

    def __init__(self, host: ServedHost, bind: str, port: int) -> None:
        owner = host

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/peers":
                    if not owner.peers:
                        self._send(503, b"# the host is starting: no address yet\n", "text/plain; charset=utf-8")
                    else:
                        self._send(200, ("\n".join(owner.peers) + "\n").encode(), "text/plain; charset=utf-8")
                elif path == "/swarm":
                    self._send(200, json.dumps(owner.swarm_json(), indent=2).encode(), "application/json")
                elif path == "/healthz":
                    self._send(200 if owner.view.peer_id else 503, b"ok\n", "text/plain")
                else:
                    self._send(404, b"not found: try /peers or /swarm\n", "text/plain")

        try:
            self._server = ThreadingHTTPServer((bind, port), Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve the peer list on {bind}:{port}: {e.strerror or e}",
                "choose a free port with --peers-port, or another address with --peers-bind",
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HostServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
