"""Plain-text formatting of snapshot figures, shared by widgets, screens and tests."""

from __future__ import annotations

import math

from volunteer.stats import DeviceInfo, ProjectInfo, State

STATE_LABELS: dict[State, str] = {
    State.STARTING: "starting",
    State.DOWNLOADING: "downloading",
    State.WAITING_FOR_CONSENT: "waiting for consent",
    State.CONNECTING: "connecting",
    State.LOADING_STATE: "syncing",
    State.TRAINING: "training",
    State.RECONNECTING: "reconnecting",
    State.PAUSED: "paused",
    State.STOPPING: "stopping",
    State.STOPPED: "stopped",
    State.FAILED: "failed",
}
"""What each state is called on screen: LOADING_STATE is what a volunteer knows as syncing."""

NO_VALUE = "—"


def count(value: int) -> str:
    """An integer count with thousands separators, compacted above ten million."""
    if abs(value) >= 10_000_000_000:
        return f"{value / 1e9:.1f}G"
    if abs(value) >= 10_000_000:
        return f"{value / 1e6:.1f}M"
    return f"{value:,}"


def rate(value: float | None) -> str:
    """A rate per second, with one decimal below a thousand."""
    if value is None:
        return NO_VALUE
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def loss(value: float | None) -> str:
    """A loss value with four significant digits."""
    if value is None:
        return NO_VALUE
    return f"{value:.4g}"


def duration(seconds: float | None) -> str:
    """A compact duration: ``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    if seconds is None or not math.isfinite(seconds):
        return NO_VALUE
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def ago(seconds: float) -> str:
    """How long ago something was seen, coarsely; derived from snapshot times, never the wall clock."""
    if seconds < 2:
        return "now"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} ago"
    return f"{whole}s ago"


def short_id(peer_id: str) -> str:
    """A libp2p peer id shortened the way people quote them: ``QmYy…hx5N``."""
    if len(peer_id) <= 12:
        return peer_id
    return f"{peer_id[:4]}…{peer_id[-4:]}"


def repo_at_sha(project: ProjectInfo) -> str:
    """``repo@abc1234``, or the bare repo for local and built-in projects without a sha."""
    repo = project.repo or NO_VALUE
    if project.revision:
        return f"{repo}@{project.revision[:7]}"
    return repo


def gigabytes(megabytes: float, decimals: int = 1) -> str:
    """Memory in GB (the unit GPU spec sheets use)."""
    return f"{megabytes / 1024:.{decimals}f}"


def device_line(device: DeviceInfo) -> str:
    """The device name, with memory use and utilisation when the device reports them."""
    parts = [device.name or device.kind.upper()]
    if device.memory_used_mb is not None and device.memory_total_mb:
        parts.append(f"{gigabytes(device.memory_used_mb)}/{gigabytes(device.memory_total_mb, 0)} GB")
    if device.utilization is not None:
        parts.append(f"{device.utilization:.0f}% util")
    return " · ".join(parts)
