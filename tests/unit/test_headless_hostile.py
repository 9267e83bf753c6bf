"""The headless log and the status JSON take any snapshot and any event without an exception or a forged line."""

from __future__ import annotations

import io
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import hostile
from volunteer.contribution.headless_log import HeadlessLog, format_status
from volunteer.stats import Event, Snapshot, json_safe

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
"""On a busy CI machine generating big snapshots is slow: that is no reason to fail."""


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _single_clean_lines(output: str) -> list[str]:
    lines = output.splitlines()
    assert output.endswith("\n") or not output
    for line in lines:
        assert not any(ord(c) < 32 or ord(c) == 127 for c in line), repr(line)
    return lines


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(snapshot=hostile.snapshots, events=st.lists(hostile.events, max_size=3))
def test_text_lines_take_anything_and_stay_one_clean_line_each(snapshot, events):
    stream = io.StringIO()
    log = HeadlessLog("text", stream)
    log.status(snapshot)
    for event in events:
        log.event(event)
    lines = _single_clean_lines(stream.getvalue())
    assert len(lines) == 1 + len(events)  # a message with line breaks must not forge a second log line
    assert format_status(snapshot) in lines[0]


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(snapshot=hostile.snapshots, events=st.lists(hostile.events, max_size=3))
def test_json_lines_take_anything_and_stay_strict_json(snapshot, events):
    stream = io.StringIO()
    log = HeadlessLog("json", stream)
    log.status(snapshot)
    for event in events:
        log.event(event)
    lines = _single_clean_lines(stream.getvalue())
    assert [_strict(line)["type"] for line in lines] == ["status"] + ["event"] * len(events)


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(snapshot=hostile.snapshots)
def test_any_snapshot_crosses_the_status_api_as_strict_json_and_reads_back(snapshot):
    """What the status endpoint writes (json_safe, no NaN) a StatusClient can always read back."""
    body = json.dumps(json_safe(snapshot.to_dict()), allow_nan=False)
    back = Snapshot.from_dict(_strict(body))
    assert back.state == snapshot.state
    assert back.nickname == snapshot.nickname
    for value in (back.samples_per_second, back.time, back.uptime):
        assert math.isfinite(value)
    assert len(back.leaderboard) == len(snapshot.leaderboard)


def test_an_event_from_a_project_cannot_forge_a_log_line_or_move_the_cursor():
    stream = io.StringIO()
    HeadlessLog("text", stream).event(
        Event(1, 0.0, "error", "boom\n2026-01-01 00:00:00 [recovered] all fine\x1b[2J\x1b]0;title\x07")
    )
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("[error] boom 2026-01-01 00:00:00 [recovered] all fine[2J]0;title")


def test_a_status_line_with_non_finite_and_huge_figures():
    snapshot = Snapshot(samples_per_second=math.nan, swarm_samples=10**400, loss_smoothed=math.inf, time=math.inf)
    stream = io.StringIO()
    HeadlessLog("text", stream).status(snapshot)
    HeadlessLog("json", stream).status(snapshot)
    text, data = stream.getvalue().splitlines()
    assert "nan samples/s" in text and "credited ≥1e18" in text and "loss inf" in text
    parsed = _strict(data)
    assert parsed["swarm_samples"] is None and parsed["samples_per_second"] is None and parsed["time"] is None


def test_an_int_where_a_float_belongs_is_no_crash_either():
    snapshot = Snapshot(samples_per_second=10**400, swarm_samples_per_second=-(10**400), loss_smoothed=10**400)
    stream = io.StringIO()
    HeadlessLog("text", stream).status(snapshot)
    HeadlessLog("json", stream).status(snapshot)
    text, data = stream.getvalue().splitlines()
    assert "inf samples/s (swarm -inf)" in text
    assert _strict(data)["samples_per_second"] is None
