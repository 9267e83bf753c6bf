"""Hypothesis strategies for hostile data: snapshots, leaderboards and events with anything their types allow.

Text from a project or a peer includes Textual/Rich markup, terminal escape sequences, bidi overrides and
line breaks; numbers include NaN, both infinities, negatives and integers far beyond any float.
"""

from __future__ import annotations

from hypothesis import strategies as st

from volunteer.stats import (
    DeviceInfo,
    ErrorInfo,
    Event,
    LeaderboardEntry,
    ProjectInfo,
    Snapshot,
    State,
)

NASTY_TEXT = (
    "[/]",
    "[",
    "[@click=screen.accept]trust me[/]",
    "[@click=app.quit]x[/]",
    "[bold red]loud",
    "[link=https://evil.example]x[/link]",
    "\x1b]0;pwned\x07",
    "\x1b[2J\x1b[H",
    "\x1bc",
    "\u202eevil",
    "line\nbreak\r\n2026-01-01 00:00:00 [error] forged",
    "\x00\x07\x08\x7f",
    "🦙" * 50,
    "x" * 5000,
    "",
)

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40))
"""Any text, with markup, escape sequences and very long strings favoured."""

ints = st.one_of(
    st.integers(-(10**6), 10**7),
    st.integers(),
    st.sampled_from([0, -1, 2**63, -(2**63), 10**15, 10**30, -(10**30), 10**400, -(10**400)]),
)
"""Any int, with sign flips and sizes beyond every float favoured."""

floats = st.one_of(
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e308, -1e308, 5e-324]),
)
"""Any float: NaN, infinities, extremes."""

optional_floats = st.none() | floats

projects = st.builds(
    ProjectInfo,
    name=texts,
    repo=texts,
    revision=texts,
    run_id=texts,
    target_batch_size=ints,
    files=st.lists(texts, max_size=8).map(tuple),
)
devices = st.builds(
    DeviceInfo,
    kind=texts,
    name=texts,
    memory_used_mb=optional_floats,
    memory_total_mb=optional_floats,
    utilization=optional_floats,
)
errors = st.builds(ErrorInfo, message=texts, hint=st.none() | texts)
entries = st.builds(
    LeaderboardEntry,
    peer_id=texts,
    nickname=texts,
    samples=ints,
    samples_per_second=floats,
    last_seen=floats,
    is_self=st.booleans(),
)
leaderboards = st.lists(entries, max_size=12).map(tuple)

snapshots = st.builds(
    Snapshot,
    state=st.sampled_from(State),
    time=floats,
    project=projects,
    peer_id=texts,
    nickname=texts,
    device=devices,
    session_samples=ints,
    session_steps=ints,
    total_samples=ints,
    total_steps=ints,
    swarm_samples=ints,
    local_only_samples=ints,
    samples_per_second=floats,
    loss=optional_floats,
    loss_smoothed=optional_floats,
    learning_rate=optional_floats,
    uptime=floats,
    reconnects=ints,
    global_epoch=ints,
    local_epoch=ints,
    num_peers=ints,
    samples_accumulated=ints,
    target_batch_size=ints,
    swarm_samples_per_second=floats,
    eta_next_step=optional_floats,
    leaderboard=leaderboards,
    leaderboard_dropped=ints,
    last_error=st.none() | errors,
    join_addresses=st.lists(texts, max_size=3).map(tuple),
    last_event_seq=st.none() | ints,
)
"""Every Snapshot field at any value of its type."""

events = st.builds(Event, seq=ints, time=floats, kind=texts, message=texts)
