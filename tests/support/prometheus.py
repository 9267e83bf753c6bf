"""A real Prometheus (Debian's ``prometheus`` package; ``.ci/run`` installs it) scraping given targets."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.unit.test_metrics import DASHBOARD, _expressions

MISSING = "no prometheus binary (apt-get install prometheus; .ci/run does)"
"""Why the tests that need Prometheus skip, where it is not installed."""


def available() -> bool:
    return shutil.which("prometheus") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@contextmanager
def prometheus(target: str, folder: Path) -> Iterator[str]:
    """Prometheus scraping ``target`` (host:port) every second as job ``volunteer``; yields its API's base URL."""
    port = _free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: volunteer\n    static_configs:\n      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
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


def wait_for_scrapes(base: str, scrapes: int = 4, timeout: float = 90) -> None:
    """Until Prometheus scraped the target ``scrapes`` times and the last scrape succeeded (rate() needs a few)."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        try:
            result = query(base, 'count_over_time(up{job="volunteer"}[1m])')["data"]["result"]
            seen = float(result[0]["value"][1]) if result else 0.0
            up = query(base, 'up{job="volunteer"}')["data"]["result"]
            if seen >= scrapes and up and up[0]["value"][1] == "1":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus scraped /metrics {seen:.0f} times in {timeout:.0f} s, or the last one failed")


def promql(expr: str) -> str:
    """A dashboard query as Prometheus runs it: Grafana's variables stand for every job and client."""
    expr = expr.replace("$job", ".*").replace("$instance", ".*")
    if expr.startswith("label_values("):  # a Grafana function: the series it reads labels from
        expr = expr[len("label_values(") : expr.rindex(",")]
    return expr


def dashboard_queries_without_data(base: str) -> list[str]:
    """The Grafana dashboard's queries that Prometheus answers with no series (each must be valid PromQL)."""
    empty = []
    for expr in _expressions(json.loads(DASHBOARD.read_text())):
        answer = query(base, promql(expr))
        assert answer["status"] == "success", (expr, answer)
        if not answer["data"]["result"]:
            empty.append(expr)
    return empty
