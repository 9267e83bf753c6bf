"""/metrics follows Prometheus' conventions, and the Grafana dashboard uses only what it exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.test_status_server import FakeSource
from volunteer.metrics import COUNTERS, GAUGES, exported_names
from volunteer.status_server import StatusServer

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"


@pytest.fixture
def url():
    source = FakeSource()
    source.snapshot = source.snapshot.replace(
        loss=0.5, loss_smoothed=0.6, learning_rate=0.1, eta_next_step=3.0, total_steps=10, session_steps=4
    )
    server = StatusServer(source, "127.0.0.1", 0).start()
    yield server.url
    server.stop()


def _scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url + "/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode(), response.headers["Content-Type"]


def test_counters_are_counters_and_gauges_gauges(url):
    text, content_type = _scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in COUNTERS:
        assert families[name].type == "counter", name
        assert families[name].samples[0].name == f"{name}_total"
    for name in GAUGES:
        assert families[name].type == "gauge", name
        assert not name.endswith("_total")
    # Prometheus text has no info type: an info metric is a gauge of 1 named *_info, its labels the data
    info = families["volunteer_info"].samples[0]
    assert info.value == 1.0 and info.labels["nickname"] == "ada" and info.labels["run_id"] == "run"
    assert {"process_cpu_seconds", "process_resident_memory_bytes"} <= set(families)
    assert "volunteer_swarm_samples_total 512.0" in text
    assert "volunteer_session_steps_total 4.0" in text


def test_openmetrics_when_the_scraper_asks_for_it(url):
    text, content_type = _scrape(url, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


def test_every_exported_name_shows_in_a_scrape(url):
    text, _ = _scrape(url)
    shown = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert exported_names() <= shown, exported_names() - shown


def _expressions(dashboard: dict) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_the_grafana_dashboard_uses_only_exported_metrics(url):
    dashboard = json.loads(DASHBOARD.read_text())
    text, _ = _scrape(url)
    shown = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    used = set()
    for expr in _expressions(dashboard):
        used |= set(re.findall(r"\b((?:volunteer|process)_[a-z_]+)\b", expr))
    assert used, "the dashboard queries no metric"
    assert used <= exported_names(), used - exported_names()
    assert used <= shown, used - shown
    # every panel asks something, and the state table reads the label the state gauge has
    assert all(panel["targets"] for panel in dashboard["panels"])
    assert 'volunteer_state{state="training"} 1.0' in text
