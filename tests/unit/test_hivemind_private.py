"""The guarded reaches into hivemind's private parts work on hivemind 1.1.12 and step aside on any other."""

from __future__ import annotations

import asyncio
import logging
import threading

import hivemind
import pytest
from hivemind.optim.progress_tracker import ProgressTracker
from hivemind.p2p.p2p_daemon_bindings.p2pclient import Client

from volunteer.swarm import hivemind_private, source_guard
from volunteer.swarm.hivemind_private import dial, reread_progress_now, throttle_progress_reports


class _Tracker:
    def __init__(self) -> None:
        self.should_report_progress = threading.Event()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_guard, "_declined", set())


def test_the_sources_relied_on_are_hivemind_1_1_12s() -> None:
    assert hivemind.__version__ == source_guard.HIVEMIND_VERSION
    reporter = ProgressTracker.__dict__["_progress_reporter"]
    assert source_guard.source_sha256(reporter) == hivemind_private.REPORTER_SOURCE_SHA256
    connect = Client.__dict__["connect"]
    assert source_guard.source_sha256(connect) == hivemind_private.CONNECT_SOURCE_SHA256
    fetcher = ProgressTracker.__dict__["_progress_fetcher"]
    assert source_guard.source_sha256(fetcher) == hivemind_private.FETCHER_SOURCE_SHA256


def test_the_throttle_swaps_the_event_and_wakes_the_old_one() -> None:
    tracker, event = _Tracker(), threading.Event()
    old = tracker.should_report_progress
    assert throttle_progress_reports(tracker, event) is True
    assert tracker.should_report_progress is event and old.is_set()


def test_another_hivemind_keeps_its_own_event_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def changed_upstream(self: object) -> None:  # stands in for a hivemind that changed the reporter
        pass

    monkeypatch.setattr(ProgressTracker, "_progress_reporter", changed_upstream)
    tracker = _Tracker()
    old = tracker.should_report_progress
    with caplog.at_level(logging.INFO, logger="volunteer.swarm.source_guard"):
        assert throttle_progress_reports(tracker, threading.Event()) is False
        assert throttle_progress_reports(tracker, threading.Event()) is False
    assert tracker.should_report_progress is old and not old.is_set()
    assert len([r for r in caplog.records if "progress report throttle" in r.getMessage()]) == 1


class _FetchingTracker:
    def __init__(self) -> None:
        self.global_progress = type("Progress", (), {"next_fetch_time": 1e9})()
        self.global_state_updated = threading.Event()


def test_a_reread_moves_the_fetch_to_now_and_wakes_the_fetcher() -> None:
    tracker = _FetchingTracker()
    assert reread_progress_now(tracker, 123.0) is True
    assert tracker.global_progress.next_fetch_time == 123.0 and tracker.global_state_updated.is_set()


def test_another_hiveminds_fetcher_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    async def changed_upstream(self: object) -> None:  # stands in for a hivemind that changed the fetcher
        pass

    monkeypatch.setattr(ProgressTracker, "_progress_fetcher", changed_upstream)
    tracker = _FetchingTracker()
    assert reread_progress_now(tracker, 123.0) is False
    assert tracker.global_progress.next_fetch_time == 1e9 and not tracker.global_state_updated.is_set()


def test_dial_needs_the_daemon_client_it_was_checked_against(monkeypatch: pytest.MonkeyPatch) -> None:
    class _P2P:
        _client = object()  # not a p2pclient.Client

    assert dial(_P2P(), "peer", []) is None
    monkeypatch.setattr(hivemind, "__version__", "1.2.0")
    assert dial(_P2P(), "peer", []) is None


def test_dial_calls_connect_with_the_addresses() -> None:
    calls: list[tuple[object, list[object]]] = []

    class _Client(Client):  # a daemon client without a daemon
        def __init__(self) -> None:
            pass

        def __del__(self) -> None:
            pass

    async def connect(self: Client, peer_id: object, maddrs: list[object]) -> None:
        calls.append((peer_id, maddrs))

    client = _Client()
    client.connect = connect.__get__(client)  # type: ignore[method-assign]

    class _P2P:
        _client = client

    dialling = dial(_P2P(), "peer", ("/ip4/127.0.0.1/tcp/1",))
    assert dialling is not None
    asyncio.run(dialling)  # type: ignore[arg-type]
    assert calls == [("peer", ["/ip4/127.0.0.1/tcp/1"])]


class _BlindTracker:
    """What read_swarm_before_a_blind_step reads of a ProgressTracker; a fetcher thread answers if asked to."""

    def __init__(self, num_peers: int, samples: int, answer: bool) -> None:
        from types import SimpleNamespace

        self.global_progress = SimpleNamespace(num_peers=num_peers, next_fetch_time=0.0)
        self.local_progress = SimpleNamespace(samples_accumulated=samples)
        self.target_batch_size = 64
        self.fetched_global_progress_this_epoch = threading.Event()
        self.fetched_global_progress_this_epoch.set()
        self.global_state_updated = threading.Event()
        self.asked = 0
        if answer:
            threading.Thread(target=self._fetcher, daemon=True).start()

    def _fetcher(self) -> None:
        while self.global_state_updated.wait(5):
            self.global_state_updated.clear()
            self.asked += 1
            self.fetched_global_progress_this_epoch.set()


def test_a_tracker_that_read_nothing_reads_the_swarm_once_before_stepping_alone() -> None:
    from volunteer.swarm.hivemind_private import read_swarm_before_a_blind_step

    tracker = _BlindTracker(num_peers=0, samples=48, answer=True)
    assert not read_swarm_before_a_blind_step(tracker, 8), "far from the target: nothing to do"
    assert read_swarm_before_a_blind_step(tracker, 16), "the batch completing the step waits for a fresh read"
    assert tracker.asked == 1
    assert not read_swarm_before_a_blind_step(tracker, 16), "once: a peer cut off must not wait at every step"
    assert tracker.asked == 1


def test_a_tracker_that_sees_a_peer_or_gets_no_answer_does_not_wait() -> None:
    from volunteer.swarm.hivemind_private import read_swarm_before_a_blind_step

    seeing = _BlindTracker(num_peers=1, samples=48, answer=True)
    assert not read_swarm_before_a_blind_step(seeing, 16)
    assert seeing.asked == 0
    silent = _BlindTracker(num_peers=0, samples=48, answer=False)
    assert not read_swarm_before_a_blind_step(silent, 16, timeout=0.05), "no answer in time: step on"
