"""Plain-text formatting of snapshot figures, shared by widgets, screens and tests.

Every helper takes whatever a snapshot may hold, NaN, infinities, negative and absurdly large values
included, and answers a short string: a dashboard must never be crashed by data. Text from a project or a
peer goes through :func:`plain` and is shown as ``rich.text.Text``, never parsed as markup.
"""

from __future__ import annotations

import math

from rich.text import Text

from volunteer.stats import DeviceInfo, ProjectInfo, State, clean_text

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


MAX_TEXT = 2000
"""Characters of one text from a project or a peer shown at most (an error message, a file name)."""

HUGE = 10**15
"""Counts at or beyond this are shown as ``≥1e15``: none is real (see ``volunteer.swarm.leaderboard``)."""

LONG = 9999 * 86400
"""Durations at or beyond this are shown as ``>9999d``."""


def _number(value: object) -> float | int | None:
    """``value`` as a number, or None when it is not one (None, NaN, a string...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:  # beyond every float: as good as infinite
            return math.inf if value > 0 else -math.inf
    return value


def count(value: int | float | None) -> str:
    """An integer count with thousands separators, compacted above ten million."""
    number = _number(value)
    if number is None:
        return NO_VALUE
    if isinstance(number, float):
        if math.isinf(number):
            return "∞" if number > 0 else "-∞"
        number = int(number)
    if abs(number) >= HUGE:
        return "≥1e15" if number > 0 else "≤-1e15"
    if abs(number) >= 10_000_000_000:
        return f"{number / 1e9:.1f}G"
    if abs(number) >= 10_000_000:
        return f"{number / 1e6:.1f}M"
    return f"{number:,}"


def rate(value: float | None) -> str:
    """A rate per second, with one decimal below a thousand."""
    number = _number(value)
    if number is None:
        return NO_VALUE
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if abs(number) >= 1e12:
        return f"{number:.2g}"
    if number >= 1000:
        return f"{number:,.0f}"
    return f"{number:.1f}"


def loss(value: float | None) -> str:
    """A loss value with four significant digits (``nan`` and ``inf`` as such: a diverged run shows it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    number = _number(value)
    if number is None:
        return NO_VALUE
    try:
        return f"{number:.4g}"
    except OverflowError:  # an int too large for a float
        return "≥1e308" if number > 0 else "≤-1e308"


def duration(seconds: float | None) -> str:
    """A compact duration: ``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    number = _number(seconds)
    if number is None or not math.isfinite(number):
        return NO_VALUE
    if number >= LONG:
        return ">9999d"
    total = max(0, int(number))
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
    number = _number(seconds)
    if number is None or not math.isfinite(number):
        return NO_VALUE
    if number < 2:
        return "now"
    if number >= LONG:
        return ">9999d ago"
    whole = int(number)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} ago"
    return f"{whole}s ago"


def plain(text: object, limit: int = MAX_TEXT, *, newlines: bool = False) -> str:
    """Text from a project or a peer, safe to show: see :func:`volunteer.stats.clean_text`."""
    return clean_text(text, limit, newlines=newlines)


def text(value: object, style: str = "", limit: int = MAX_TEXT, *, newlines: bool = False) -> Text:
    """Text from a project or a peer as a ``rich.text.Text``: shown as it is, brackets and all."""
    return Text(plain(value, limit, newlines=newlines), style=style)


def short_id(peer_id: str) -> str:
    """A libp2p peer id shortened the way people quote them: ``QmYy…hx5N``."""
    peer_id = plain(peer_id, 200)
    if len(peer_id) <= 12:
        return peer_id
    return f"{peer_id[:4]}…{peer_id[-4:]}"


def repo_at_sha(project: ProjectInfo) -> str:
    """``repo@abc1234``, or the bare repo for local and built-in projects without a sha."""
    repo = plain(project.repo, 200) or NO_VALUE
    if project.revision:
        return f"{repo}@{plain(project.revision[:7])}"
    return repo


def gigabytes(megabytes: float, decimals: int = 1) -> str:
    """Memory in GB (the unit GPU spec sheets use)."""
    number = _number(megabytes)
    if number is None or not math.isfinite(number) or abs(number) >= 1e15:
        return NO_VALUE
    return f"{number / 1024:.{decimals}f}"


def device_line(device: DeviceInfo) -> str:
    """The device name, with memory use and utilisation when the device reports them."""
    parts = [plain(device.name, 200) or plain(device.kind, 20).upper()]
    if device.memory_used_mb is not None and device.memory_total_mb:
        parts.append(f"{gigabytes(device.memory_used_mb)}/{gigabytes(device.memory_total_mb, 0)} GB")
    utilization = _number(device.utilization)
    if utilization is not None and math.isfinite(utilization) and abs(utilization) < 1e6:
        parts.append(f"{utilization:.0f}% util")
    return " · ".join(parts)
