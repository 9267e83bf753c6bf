"""The status endpoint on 127.0.0.1: the latest snapshot as JSON and Prometheus text, plus controls.

    GET  /status            the latest Snapshot as JSON
    GET  /events?since=N    {"events": [...]} with seq > N, oldest first
    GET  /metrics           the same figures in Prometheus text format
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

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from volunteer.errors import ConfigError
from volunteer.stats import Command, SnapshotSource, State, event_to_dict

log = logging.getLogger(__name__)


class StatusServer:
    """Serves a :class:`SnapshotSource` over HTTP from a daemon thread."""

    def __init__(self, source: SnapshotSource, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        handler = type("Handler", (_Handler,), {"source": source, "registry": _registry(source)})
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
            self._send(200, generate_latest(self.registry), "text/plain; version=0.0.4; charset=utf-8")
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
                yield GaugeMetricFamily(name, doc, value=float(value))
