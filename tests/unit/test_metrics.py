"""/metrics follows Prometheus' conventions, and the Grafana dashboard uses only what it exports."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.test_status_server import FakeSource
from volunteer.metrics import COUNTERS, GAUGES, exported_names
from volunteer.settings import parse_address
from volunteer.stats import State, Wire
from volunteer.status_server import StatusServer

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"


@pytest.fixture
def url():
    source = FakeSource()
    source.snapshot = source.snapshot.replace(
        loss=0.5,
        loss_smoothed=0.6,
        learning_rate=0.1,
        eta_next_step=3.0,
        total_steps=10,
        session_steps=4,
        wire=Wire(1000, 2000, 10.0, 20.0, 5.0),
        network_mode="client mode",
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
    assert info.labels["network_mode"] == "client mode"
    assert {"process_cpu_seconds", "process_resident_memory_bytes"} <= set(families)
    assert "volunteer_swarm_samples_total 512.0" in text
    assert "volunteer_session_steps_total 4.0" in text
    assert "volunteer_network_sent_bytes_total 1000.0" in text
    assert "volunteer_network_download_bytes_per_second 20.0" in text


def test_all_time_counters_are_absent_until_the_ledger_is_read():
    from volunteer.stats import ProjectInfo

    all_time = {"volunteer_samples", "volunteer_swarm_samples", "volunteer_local_only_samples", "volunteer_steps"}

    source = FakeSource()
    # a restarted client before its ledger is read: nothing of the run is known yet, its counts are zeros
    source.snapshot = source.snapshot.replace(
        state=State.STARTING, project=ProjectInfo(), total_samples=0, swarm_samples=0, local_only_samples=0
    )
    server = StatusServer(source, "127.0.0.1", 0).start()
    try:
        text, _ = _scrape(server.url)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert not all_time & names, all_time & names  # a 0 would read as a counter reset
        assert "volunteer_session_samples" in names
        source.snapshot = FakeSource().snapshot
        text, _ = _scrape(server.url)
        assert "volunteer_swarm_samples_total 512.0" in text
    finally:
        server.stop()


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


@pytest.fixture
def read_only():
    source = FakeSource()
    server = StatusServer(source, "127.0.0.1", 0, token="secret", read_only=True).start()
    yield source, server
    server.stop()


def _request(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_the_metrics_address_serves_any_host_but_never_commands(read_only):
    source, server = read_only
    scraper = {"Host": "172.17.0.3:9471"}  # Prometheus in another container names the container's address
    assert _request(server.url + "/metrics", headers=scraper)[0] == 200
    status, body = _request(server.url + "/status", headers=scraper)
    assert status == 200 and json.loads(body)["state"] == "training"
    assert _request(server.url + "/healthz", headers=scraper) == (200, "ok: training\n")
    for path in ("/control", "/status"):
        code, body = _request(
            server.url + path, "POST", {**scraper, "Authorization": "Bearer secret"}, b'{"command": "stop"}'
        )
        assert code == 405 and "read-only" in body
    assert _request(server.url + "/events", headers=scraper)[0] == 404
    assert _request(server.url + "/metrics", headers={"Origin": "http://evil.example"})[0] == 403
    assert source.commands == []


def test_healthz_says_unhealthy_for_a_failed_session(read_only):
    source, server = read_only
    source.snapshot = source.snapshot.replace(state=State.FAILED)
    assert _request(server.url + "/healthz") == (503, "unhealthy: failed\n")


@pytest.mark.parametrize("value", ["0.0.0.0:9471", "[::]:9471", "127.0.0.1:1"])
def test_metrics_address_parses(value):
    assert parse_address(value).endswith(value.rsplit(":", 1)[1])


@pytest.mark.parametrize("value", ["9471", "0.0.0.0", "0.0.0.0:0", "host:99999", ":9471", "a b:1"])
def test_a_bad_metrics_address_is_refused(value):
    with pytest.raises(ValueError, match="is not an address"):
        parse_address(value)
