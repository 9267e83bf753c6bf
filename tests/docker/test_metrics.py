"""Prometheus on the host scrapes a running container through --metrics-address, and the Grafana dashboard's
queries all resolve against what it scraped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker.conftest import docker
from tests.support import prometheus
from volunteer.metrics import OPTIONAL

pytestmark = [
    pytest.mark.docker,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not prometheus.available(), reason=prometheus.MISSING),
]


def test_prometheus_scrapes_a_container(run, tmp_path: Path) -> None:
    # docs/docker.md: docker run -d ... -e VOLUNTEER_METRICS_ADDRESS=0.0.0.0:9471 -p 9471:9471 volunteer ...
    container = run("metrics", "--shm-size=1g", "-e", "VOLUNTEER_METRICS_ADDRESS=0.0.0.0:9471")
    container.wait_training(lines=1)
    address = docker(
        "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container.name
    ).stdout.strip()
    assert address, "the container has an address on Docker's bridge"
    with prometheus.prometheus(f"{address}:9471", tmp_path) as api:
        prometheus.wait_for_scrapes(api, timeout=120)
        up = prometheus.query(api, "volunteer_samples_total")["data"]["result"]
        assert up and float(up[0]["value"][1]) > 0, "the container's computed samples reach Prometheus"
        # a lone demo peer has no ETA yet: only a gauge that is absent until known may have no data
        for expr in prometheus.dashboard_queries_without_data(api):
            assert any(name in expr for name in OPTIONAL), f"no data for {expr}"
    # the control endpoint stays on the container's loopback: the scraped address takes no command
    refused = docker(
        "exec", container.name, "python3", "-c",
        "import urllib.request, urllib.error\n"
        "request = urllib.request.Request('http://127.0.0.1:9471/control', data=b'{}', method='POST')\n"
        "try:\n    urllib.request.urlopen(request, timeout=5)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n",
    ).stdout.strip()  # fmt: skip
    assert refused == "405"
