"""A real Prometheus scrapes a client's /metrics, and every query of the Grafana dashboard returns data."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.unit.test_metrics import DASHBOARD, _expressions
from tests.unit.test_status_server import FakeSource
from volunteer.status_server import StatusServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="no prometheus binary (apt-get install prometheus; .ci/run does)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _promql(expr: str) -> str:
    """A dashboard query as Prometheus runs it: Grafana's variables stand for every job and client."""
    expr = expr.replace("$job", ".*").replace("$instance", ".*")
    if expr.startswith("label_values("):  # a Grafana function: the series it reads labels from
        expr = expr[len("label_values(") : expr.rindex(",")]
    return expr


@pytest.fixture
def prometheus(tmp_path: Path):
    source = FakeSource()
    source.snapshot = source.snapshot.replace(loss=0.5, loss_smoothed=0.6, learning_rate=0.1, eta_next_step=3.0)
    server = StatusServer(source, "127.0.0.1", 0).start()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: volunteer\n    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        server.stop()


def test_prometheus_scrapes_and_every_dashboard_query_resolves(prometheus: str) -> None:
    deadline = time.monotonic() + 90
    scrapes = 0.0
    while time.monotonic() < deadline:  # rate() needs a few samples in its window
        try:
            result = _query(prometheus, 'count_over_time(up{job="volunteer"}[1m])')["data"]["result"]
            scrapes = float(result[0]["value"][1]) if result else 0.0
            up = _query(prometheus, 'up{job="volunteer"}')["data"]["result"]
            if scrapes >= 4 and up and up[0]["value"][1] == "1":
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert scrapes >= 4, "Prometheus did not scrape /metrics"
    dashboard = json.loads(DASHBOARD.read_text())
    empty = []
    for expr in _expressions(dashboard):
        answer = _query(prometheus, _promql(expr))
        assert answer["status"] == "success", (expr, answer)
        if not answer["data"]["result"]:
            empty.append(expr)
    assert not empty, f"dashboard queries with no data: {empty}"
