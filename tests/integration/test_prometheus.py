"""A real Prometheus scrapes a client's /metrics, and every query of the Grafana dashboard returns data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import prometheus
from tests.unit.test_status_server import FakeSource
from volunteer.stats import Wire
from volunteer.status_server import StatusServer

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not prometheus.available(), reason=prometheus.MISSING)]


def test_prometheus_scrapes_and_every_dashboard_query_resolves(tmp_path: Path) -> None:
    source = FakeSource()
    wire = Wire(
        sent_bytes=10**6,
        received_bytes=2 * 10**6,
        upload_bytes_per_second=1e4,
        download_bytes_per_second=2e4,
        sent_bytes_per_sample=100.0,
        cap="",
    )
    # every optional gauge present (an absent one is absent from /metrics, not 0), so every panel has data
    source.snapshot = source.snapshot.replace(
        loss=0.5, loss_smoothed=0.6, learning_rate=0.1, eta_next_step=3.0, wire=wire
    )
    server = StatusServer(source, "127.0.0.1", 0).start()
    try:
        with prometheus.prometheus(f"127.0.0.1:{server.port}", tmp_path) as api:
            prometheus.wait_for_scrapes(api)
            assert prometheus.dashboard_queries_without_data(api) == []
    finally:
        server.stop()
