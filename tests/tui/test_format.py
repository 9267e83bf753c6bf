"""Formatting of figures: plain functions, no app needed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tui.fakes import leaderboard, snapshot
from tui import format as fmt
from tui.widgets._leaderboard import ranked
from tui.widgets._swarm_panel import your_share
from tui.widgets._you_panel import pending_samples
from volunteer.stats import DeviceInfo, ProjectInfo, State


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (1234, "1,234"), (9_999_999, "9,999,999"), (12_345_678, "12.3M")]
)
def test_count(value: int, text: str) -> None:
    assert fmt.count(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (-3, "0s"), (42.9, "42s"), (185, "3m05s"), (3723, "1h02m"), (90_000, "1d01h")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(-1, "now"), (1.5, "now"), (12, "12s ago"), (700, "11m ago"), (7200, "2h ago")]
)
def test_ago(seconds: float, text: str) -> None:
    assert fmt.ago(seconds) == text


def test_rate_and_loss() -> None:
    assert fmt.rate(None) == "—"
    assert fmt.rate(42.06) == "42.1"
    assert fmt.rate(12_345.6) == "12,346"
    assert fmt.loss(None) == "—"
    assert fmt.loss(2.34567) == "2.346"


def test_short_id_and_repo_at_sha() -> None:
    assert fmt.short_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N") == "QmYy…hx5N"
    assert fmt.short_id("local") == "local"
    assert fmt.repo_at_sha(ProjectInfo(repo="org/proj", revision="0123456789abcdef")) == "org/proj@0123456"
    assert fmt.repo_at_sha(ProjectInfo(repo="demo")) == "demo"


def test_device_line() -> None:
    assert fmt.device_line(DeviceInfo()) == "CPU"
    gpu = DeviceInfo("cuda", "NVIDIA T4", memory_used_mb=1536, memory_total_mb=15_360, utilization=55.4)
    assert fmt.device_line(gpu) == "NVIDIA T4 · 1.5/15 GB · 55% util"
    assert fmt.device_line(DeviceInfo("cuda", "NVIDIA T4")) == "NVIDIA T4"


def test_every_state_has_a_label() -> None:
    assert set(fmt.STATE_LABELS) == set(State)
    assert fmt.STATE_LABELS[State.LOADING_STATE] == "syncing"


def test_pending_samples_are_what_neither_counter_holds() -> None:
    assert pending_samples(snapshot()) == 789
    assert pending_samples(snapshot(total_samples=10, swarm_samples=8, local_only_samples=5)) == 0


def test_your_share() -> None:
    assert your_share(snapshot()) == pytest.approx(24.91, abs=0.01)
    assert your_share(snapshot(swarm_samples_per_second=0.0)) is None
    assert your_share(snapshot(samples_per_second=500.0)) == 100.0


def test_leaderboard_ranks_by_samples_then_name() -> None:
    assert [entry.nickname for entry in ranked(leaderboard())] == ["alice", "bob", "you-too", "carol"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.floats(), st.sampled_from([10**400, -(10**400), 2**63])))
def test_every_formatter_takes_any_number_and_answers_a_short_string(value) -> None:
    """A NaN time used to crash the leaderboard (``int(nan)``), 10**400 samples the counters."""
    for formatter in (fmt.count, fmt.rate, fmt.loss, fmt.duration, fmt.ago, fmt.gigabytes):
        text = formatter(value)
        assert isinstance(text, str) and len(text) <= 24, (formatter.__name__, value, text)


@pytest.mark.parametrize(
    ("formatter", "value", "text"),
    [
        (fmt.ago, math.nan, "—"),
        (fmt.ago, -math.inf, "—"),
        (fmt.ago, 1e300, ">9999d ago"),
        (fmt.count, 10**30, "≥1e15"),
        (fmt.count, -(10**30), "≤-1e15"),
        (fmt.count, math.inf, "∞"),
        (fmt.rate, math.nan, "—"),
        (fmt.rate, -math.inf, "-∞"),
        (fmt.loss, math.nan, "nan"),
        (fmt.duration, 1e300, ">9999d"),
    ],
)
def test_formatters_show_absurd_values_plainly(formatter, value, text) -> None:
    assert formatter(value) == text
