"""Prometheus metrics of a volunteer, computed from its latest snapshot at scrape time.

Names follow Prometheus' conventions: counters end in ``_total`` (what only grows: samples, steps, reconnects),
gauges carry no suffix but their base unit (``_seconds``), labels that describe the client sit on
``volunteer_info``, and the process' own CPU, memory and file descriptors come as the standard ``process_*``
metrics. ``docker/grafana-dashboard.json`` is built on exactly these names; a test checks it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from volunteer.stats import Snapshot, SnapshotSource, State

COUNTERS = {
    # name (without _total): help
    "volunteer_samples": "Samples this client computed, all time",
    "volunteer_swarm_samples": "Samples credited: they went into global steps the swarm took, all time",
    "volunteer_local_only_samples": "Samples computed alone or out of sync, not credited, all time",
    "volunteer_steps": "Local optimizer steps (batches), all time",
    "volunteer_session_samples": "Samples computed since this client started",
    "volunteer_session_steps": "Local optimizer steps since this client started",
    "volunteer_reconnects": "Times this client lost the swarm and reconnected, since it started",
    "volunteer_network_sent_bytes": "Bytes this client sent to other peers through hivemind, since its training "
    "process started",
    "volunteer_network_received_bytes": "Bytes this client received from other peers through hivemind, since its "
    "training process started",
}
GAUGES = {
    "volunteer_samples_per_second": "This client's throughput, samples per second",
    "volunteer_swarm_samples_per_second": "The swarm's throughput, samples per second",
    "volunteer_global_epoch": "The swarm's global step",
    "volunteer_local_epoch": "The global step this client is at",
    "volunteer_peers": "Peers in the swarm, this one included",
    "volunteer_samples_accumulated": "Samples the swarm accumulated toward the next global step",
    "volunteer_target_batch_size": "Samples per global step",
    "volunteer_uptime_seconds": "Seconds since this client started",
    "volunteer_loss": "Last training loss",
    "volunteer_loss_smoothed": "Smoothed training loss",
    "volunteer_learning_rate": "Current learning rate",
    "volunteer_eta_next_step_seconds": "Estimated seconds to the next global step",
    "volunteer_leaderboard_dropped": "Peer records left off the latest leaderboard: invalid, forged or beyond the "
    "entries kept",
    "volunteer_network_upload_bytes_per_second": "Bytes sent per second, over the last few seconds",
    "volunteer_network_download_bytes_per_second": "Bytes received per second, over the last few seconds",
    "volunteer_network_sent_bytes_per_sample": "Bytes sent for every sample this client computed",
}
OPTIONAL = frozenset(
    {
        "volunteer_loss",
        "volunteer_loss_smoothed",
        "volunteer_learning_rate",
        "volunteer_eta_next_step_seconds",
        "volunteer_network_upload_bytes_per_second",
        "volunteer_network_download_bytes_per_second",
        "volunteer_network_sent_bytes_per_sample",
    }
)
"""Gauges absent until known (no loss before the first batch, no ETA while the swarm cannot estimate one)."""
ALL_TIME = frozenset(
    {"volunteer_samples", "volunteer_swarm_samples", "volunteer_local_only_samples", "volunteer_steps"}
)
"""Counters read from the ledger, absent until the session has read it (it knows the run then): a restarted client
that exported 0 meanwhile would look to Prometheus like a counter reset, and ``increase()`` would count its whole
all-time total again."""
STATE = "volunteer_state"
INFO = "volunteer"


def _number(value: float) -> float:
    """A figure as Prometheus holds it; an integer too large for a float is +/-inf, not a crashed scrape."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _values(s: Snapshot) -> dict[str, float | int | None]:
    wire = s.wire
    return {
        "volunteer_network_sent_bytes": wire.sent_bytes if wire is not None else 0,
        "volunteer_network_received_bytes": wire.received_bytes if wire is not None else 0,
        "volunteer_network_upload_bytes_per_second": wire.upload_bytes_per_second if wire is not None else None,
        "volunteer_network_download_bytes_per_second": wire.download_bytes_per_second if wire is not None else None,
        "volunteer_network_sent_bytes_per_sample": wire.sent_bytes_per_sample if wire is not None else None,
        "volunteer_samples": s.total_samples,
        "volunteer_swarm_samples": s.swarm_samples,
        "volunteer_local_only_samples": s.local_only_samples,
        "volunteer_steps": s.total_steps,
        "volunteer_session_samples": s.session_samples,
        "volunteer_session_steps": s.session_steps,
        "volunteer_reconnects": s.reconnects,
        "volunteer_samples_per_second": s.samples_per_second,
        "volunteer_swarm_samples_per_second": s.swarm_samples_per_second,
        "volunteer_global_epoch": s.global_epoch,
        "volunteer_local_epoch": s.local_epoch,
        "volunteer_peers": s.num_peers,
        "volunteer_samples_accumulated": s.samples_accumulated,
        "volunteer_target_batch_size": s.target_batch_size,
        "volunteer_uptime_seconds": s.uptime,
        "volunteer_loss": s.loss,
        "volunteer_loss_smoothed": s.loss_smoothed,
        "volunteer_learning_rate": s.learning_rate,
        "volunteer_eta_next_step_seconds": s.eta_next_step,
        "volunteer_leaderboard_dropped": s.leaderboard_dropped,
    }


class SnapshotCollector:
    """A Prometheus collector over a :class:`SnapshotSource`."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        s = self.source.latest()
        info = InfoMetricFamily(INFO, "This client and its project")
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
                "network_mode": s.network_mode,
            },
        )
        yield info
        state = GaugeMetricFamily(STATE, "1 for the client's current state, 0 for the others", labels=["state"])
        for member in State:
            state.add_metric([member.value], 1.0 if s.state == member else 0.0)
        yield state
        values = _values(s)
        for name, doc in COUNTERS.items():
            if name in ALL_TIME and not s.project.run_id:
                continue  # the ledger is not read yet: a 0 here would read as a reset, its total counted again
            yield CounterMetricFamily(name, doc, value=_number(values[name] or 0))
        for name, doc in GAUGES.items():
            value = values[name]
            if value is not None:  # OPTIONAL ones: absent, not 0
                yield GaugeMetricFamily(name, doc, value=_number(value))


def registry(source: SnapshotSource) -> CollectorRegistry:
    """The snapshot's metrics and this process' ``process_*`` metrics."""
    result = CollectorRegistry(auto_describe=False)
    result.register(SnapshotCollector(source))
    ProcessCollector(registry=result)
    return result


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format the scraper asked for (``Accept``: OpenMetrics or Prometheus text)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def exported_names() -> set[str]:
    """Every metric name a scrape can show, as PromQL sees it (counters with ``_total``)."""
    return (
        {f"{name}_total" for name in COUNTERS}
        | set(GAUGES)
        | {STATE, f"{INFO}_info"}
        | {
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        }
    )
