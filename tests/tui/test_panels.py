"""Injected snapshots reach every panel of the main screen."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from tests.tui.fakes import T0, FakeSource, events, leaderboard, snapshot
from tests.tui.helpers import screen_text, wait_for, widget_text
from tui.app import VolunteerApp
from tui.widgets import Banner, EventLog, HistoryPanel, Leaderboard
from volunteer.stats import DeviceInfo, ErrorInfo, Event, LeaderboardEntry, State

pytestmark = pytest.mark.anyio

FAST = 0.02
"""Poll interval for tests: the real app polls every 0.25 s."""


async def test_first_snapshot_fills_every_panel() -> None:
    source = FakeSource([snapshot()], events())
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        header = widget_text(app, "#header")
        for expected in ("tiny-shakespeare", "volunteer-ml/tiny-shakespeare@3f2a9c1", "run shakespeare-v1"):
            assert expected in header
        assert "you-too (QmSe…abcd)" in header
        assert "TRAINING" in header

        you = widget_text(app, "#you")
        assert "session all time Samples 1,234 56,789 Steps 120 4,500" in you
        assert "in global steps 50,000" in you
        assert "local only 6,000" in you
        assert "pending 789" in you  # 56,789 - 50,000 - 6,000
        assert "42.1 samples/s" in you
        assert "1h02m" in you
        assert "NVIDIA A100 · 12.0/40 GB · 87% util" in you

        swarm = widget_text(app, "#swarm")
        assert "Epoch 42 Peers 4 online" in swarm
        assert "63% 2,580 / 4,096 samples" in swarm
        assert "ETA ~9s" in swarm
        assert "Swarm speed 169.0 samples/s" in swarm
        assert "Your share 25% of the swarm's speed" in swarm

        board = widget_text(app, "#leaderboard")
        assert board.index("alice") < board.index("bob") < board.index("you-too") < board.index("carol")
        assert "▶3" in board
        assert "12s ago" in board and "11m ago" in board

        log = widget_text(app, "#log")
        assert "joined the swarm through 2 initial peers" in log
        assert "back in the swarm at epoch 38" in log


async def test_a_new_snapshot_updates_every_panel() -> None:
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        newer = snapshot(
            time=T0 + 10,
            state=State.RECONNECTING,
            session_samples=2_000,
            total_samples=60_000,
            swarm_samples=51_000,
            local_only_samples=7_500,
            session_steps=130,
            samples_per_second=12.5,
            loss_smoothed=1.9876,
            uptime=90_000,
            reconnects=2,
            device=DeviceInfo(),
            global_epoch=43,
            local_epoch=41,
            num_peers=9,
            samples_accumulated=1_024,
            swarm_samples_per_second=250.0,
            eta_next_step=None,
            leaderboard=(
                LeaderboardEntry("QmZed", "zed", 1_000_000, 200.0, T0 + 9),
                LeaderboardEntry("QmSelf", "you-too", 51_000, 12.5, T0 + 10, is_self=True),
            ),
        )
        source.push(newer)
        source.add_events(Event(5, T0 + 5, "reconnecting", "lost the swarm again"))
        await wait_for(pilot, lambda: app.snapshot == newer, "the newer snapshot")
        await wait_for(pilot, lambda: app.query_one(EventLog).last_seq == 5, "the new event")
        await pilot.pause()

        assert "RECONNECTING" in widget_text(app, "#header")
        you = widget_text(app, "#you")
        assert "Samples 2,000 60,000 Steps 130 4,500" in you
        assert "in global steps 51,000 local only 7,500 pending 1,500" in you
        assert "Speed 12.5 samples/s Uptime 1d01h · 2 reconnects Device CPU" in you
        swarm = widget_text(app, "#swarm")
        assert "Epoch 43 (you: 41) Peers 9 online" in swarm
        assert "25% 1,024 / 4,096 samples ETA — Swarm speed 250.0 samples/s" in swarm
        assert "Your share 5% of the swarm's speed" in swarm
        board = widget_text(app, "#leaderboard")
        assert "1 zed 1,000,000 200.0 now ▶2 you-too 51,000 12.5 now" in board
        assert app.query_one(Leaderboard).border_subtitle == "you: #2 of 2"
        history = app.query_one(HistoryPanel)
        assert history.losses == (2.3141, 1.9876)
        assert history.speeds == (42.1, 12.5)
        assert "Loss 1.988" in widget_text(app, "#history")
        assert "lost the swarm again" in widget_text(app, "#log")


async def test_history_takes_one_point_per_newer_snapshot() -> None:
    source = FakeSource([snapshot(time=T0, loss_smoothed=3.0)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        history = app.query_one(HistoryPanel)
        await wait_for(pilot, lambda: len(history.losses) == 1)
        # One at a time: a newer snapshot may rightly replace one the UI has not handled yet.
        source.push(snapshot(time=T0 + 1, loss_smoothed=2.0))
        await wait_for(pilot, lambda: len(history.losses) == 2)
        # An older or equally old snapshot (a server restarted, a replayed message) adds nothing.
        history.snapshot = snapshot(time=T0 + 1, loss_smoothed=9.0)
        history.snapshot = snapshot(time=T0 - 5, loss_smoothed=9.0)
        await pilot.pause()
        assert history.losses == (3.0, 2.0)
        # A snapshot without a loss (not trained yet) still records the speed.
        history.snapshot = snapshot(time=T0 + 2, loss=None, loss_smoothed=None, samples_per_second=1.0)
        await pilot.pause()
        assert history.losses == (3.0, 2.0)
        assert history.speeds[-1] == 1.0


async def test_the_log_pane_toggles_with_l_and_skips_repeated_events() -> None:
    source = FakeSource([snapshot()], events())
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(EventLog)
        await wait_for(pilot, lambda: log.last_seq == 4)
        assert not log.display  # a short terminal keeps the room for figures
        await pilot.press("l")
        assert log.display
        assert "lost the swarm: no peers answered" in widget_text(app, "#log")
        log.add_events(events())
        assert len(log.lines) == 4
        await pilot.press("l")
        assert not log.display
        assert app.query_one(Leaderboard).display


async def test_the_log_pane_starts_open_on_a_tall_terminal() -> None:
    app = VolunteerApp(FakeSource([snapshot()]), poll_interval=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.query_one(EventLog).display


async def test_an_error_shows_a_banner_with_its_hint_and_a_notification() -> None:
    error = ErrorInfo("no peers answered for 60 s", "check VOLUNTEER_INITIAL_PEERS")
    source = FakeSource([snapshot(state=State.RECONNECTING, last_error=error)])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test() as pilot:
        banner = app.query_one(Banner)
        await wait_for(pilot, lambda: banner.error == error)
        await pilot.pause()
        assert banner.display
        text = widget_text(app, "#banner")
        assert "no peers answered for 60 s" in text and "hint: check VOLUNTEER_INITIAL_PEERS" in text
        assert [n.severity for n in app._notifications] == ["error"]
        assert "check VOLUNTEER_INITIAL_PEERS" in next(iter(app._notifications)).message

        source.push(snapshot(time=T0 + 1, last_error=error))  # the same error again: no second toast
        await wait_for(pilot, lambda: app.snapshot and app.snapshot.time == T0 + 1)
        assert len(app._notifications) == 1

        source.push(snapshot(time=T0 + 2))
        await wait_for(pilot, lambda: banner.error is None)
        await pilot.pause()
        assert not banner.display
        assert "Traceback" not in screen_text(app)


async def test_the_source_is_read_off_the_ui_thread() -> None:
    seen: set[int] = set()

    class RecordingSource(FakeSource):
        def latest(self):  # type: ignore[no-untyped-def]
            seen.add(threading.get_ident())
            return super().latest()

    app = VolunteerApp(RecordingSource([snapshot()]), poll_interval=FAST)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
    assert seen and threading.get_ident() not in seen


async def test_the_default_poll_keeps_to_four_refreshes_a_second() -> None:
    source = FakeSource([snapshot(time=T0 + i) for i in range(100)])
    app = VolunteerApp(source)
    updates: list[float] = []
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: source.latest_calls >= 1, "the first poll")
        app.watch(app, "snapshot", lambda s: updates.append(s.time) if s else None, init=False)
        before = source.latest_calls
        await pilot.pause(1.0)
        calls = source.latest_calls - before
    assert app.poll_interval == 0.25
    # at most four polls in a second (five with the edges); a loaded machine may poll fewer, never more
    assert calls <= 5
    assert len(updates) <= 5


def test_poll_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        VolunteerApp(FakeSource(), poll_interval=0)


async def test_the_leaderboard_is_rebuilt_only_when_what_it_shows_changes(monkeypatch) -> None:
    rebuilds = []
    original = Leaderboard._rebuild_columns
    monkeypatch.setattr(Leaderboard, "_rebuild_columns", lambda self: (rebuilds.append(1), original(self)))
    board = leaderboard()
    # the same board a quarter second later while other figures moved on; then bob's samples change
    later = snapshot(time=T0 + 0.25, session_samples=1_300, uptime=3_723.25)
    moved = snapshot(time=T0 + 0.5, leaderboard=(*board[:2], dataclasses.replace(board[2], samples=121_000)))
    source = FakeSource([snapshot()])
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        shown = len(rebuilds)
        source.push(later)
        await wait_for(pilot, lambda: app.snapshot.time == later.time, "the later snapshot")
        await pilot.pause()
        assert "1,300" in widget_text(app, "#you")
        assert len(rebuilds) == shown, "the board shows the same: no rebuild"
        source.push(moved)
        await wait_for(pilot, lambda: app.snapshot.time == moved.time, "the change")
        await pilot.pause()
        assert len(rebuilds) == shown + 1
        assert "121,000" in widget_text(app, "#leaderboard")


async def test_a_download_under_way_shows_its_progress_in_the_header() -> None:
    from volunteer.stats import Transfer

    loading = snapshot().replace(
        state=State.LOADING_STATE, transfer=Transfer("model state", 12_300_000, 45_000_000, 2_100_000.0, 6.0)
    )
    source = FakeSource([loading], events())
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        header = widget_text(app, "#header")
        assert "model state 12.3 of 45.0 MB (27%), 2.1 MB/s, 16 s left" in header
        assert "SYNCING" in header


async def test_bytes_on_the_wire_and_the_caps_doing_show_in_the_you_panel() -> None:
    from volunteer.stats import Wire

    capped = snapshot().replace(
        wire=Wire(
            sent_bytes=10**8,
            received_bytes=2 * 10**8,
            upload_bytes_per_second=625_000.0,
            download_bytes_per_second=1_250_000.0,
            sent_bytes_per_sample=4_400.0,
            cap="upload cap 5 Mbit/s: averaging state every 4 global steps instead of 1",
        )
    )
    app = VolunteerApp(FakeSource([capped], events()), poll_interval=FAST)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        you = " ".join(widget_text(app, "#you").split())
        assert "Network up 5 Mbit/s, down 10 Mbit/s, 4.4 kB sent a sample" in you
        assert "upload cap 5 Mbit/s: averaging state every 4 global steps instead of 1" in you


@pytest.mark.parametrize(
    ("mode", "label"),
    [("local", "in averaged steps 50,000"), ("diloco", "in outer steps 50,000"), ("bogus\x1b[31m", "in global steps")],
)
async def test_the_credited_count_says_what_the_samples_reached_in_each_training_mode(mode: str, label: str) -> None:
    base = snapshot()
    source = FakeSource([base.replace(project=dataclasses.replace(base.project, training_mode=mode))], events())
    app = VolunteerApp(source, poll_interval=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        you = widget_text(app, "#you")
        assert label in you
        assert "local only 6,000" in you


async def test_the_you_panel_says_which_network_mode_and_why() -> None:
    reason = "peers could not dial this machine (behind NAT or a firewall): client mode, through other peers"
    natted = snapshot().replace(network_mode="client mode", network_mode_reason=reason)
    app = VolunteerApp(FakeSource([natted], events()), poll_interval=FAST)
    async with app.run_test(size=(200, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.pause()
        you = " ".join(widget_text(app, "#you").split())
        assert "Mode client mode · peers could not dial this machine (behind NAT or a firewall)" in you
