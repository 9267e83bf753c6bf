"""A peer steps as soon as the swarm reaches the target, however short its global steps (issue 14).

hivemind's tracker re-reads the swarm's progress from the DHT every 0.5 s and replaces what it had counted
locally with it. While HivemindStrategy throttled every progress report, the DHT held this peer's record from
an earlier global step: a fetch then counted none of its samples, and the peer went on accumulating up to
twice the target before stepping. These tests count batches, not seconds, so a slow machine cannot fail them.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import lightning as L
import pytest

from tests.models import TinyRegressor, quiet_trainer, regression_data
from volunteer.strategy import HivemindStrategy

pytestmark = pytest.mark.integration

BATCH = 8
BATCHES_PER_STEP = 10


class EpochPerBatch(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.epochs.append(trainer.strategy.hivemind_optimizer.local_epoch)


def test_lone_peer_steps_within_a_batch_of_the_target():
    recorder = EpochPerBatch()
    strategy = HivemindStrategy(
        target_batch_size=BATCH * BATCHES_PER_STEP,
        batch_size=BATCH,
        matchmaking_time=1.0,
        averaging_timeout=5.0,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        print_join_message=False,
    )
    # ≈ 4 ms a batch: global steps far shorter than the tracker's 0.5 s refresh, for at least 6 s, so that
    # the tracker re-reads the DHT many times (its first re-read comes 3 s after start)
    global_steps = 150
    model = TinyRegressor(step_sleep=0.004)
    trainer = quiet_trainer(strategy=strategy, max_steps=global_steps * BATCHES_PER_STEP, callbacks=[recorder])
    started = time.monotonic()
    trainer.fit(model, regression_data(num_samples=BATCH * BATCHES_PER_STEP * global_steps, batch_size=BATCH))
    shutdown_included = time.monotonic() - started
    per_step = collections.Counter(recorder.epochs)
    full_steps = [per_step[epoch] for epoch in sorted(per_step)[1:-1]]  # the first and last are partial
    assert len(full_steps) >= global_steps // 2, per_step
    late = [count for count in full_steps if count > BATCHES_PER_STEP + 1]
    assert not late, f"global steps that took more than {BATCHES_PER_STEP + 1} batches: {late}"
    assert shutdown_included > 0


@pytest.fixture
def tracker():
    import hivemind
    from hivemind.optim.progress_tracker import ProgressTracker

    dht = hivemind.DHT(host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
    tracker = ProgressTracker(dht, f"latency-{time.monotonic_ns()}", target_batch_size=100, start=False)
    yield tracker
    dht.shutdown()


def test_the_tracker_counts_its_own_samples_not_its_stale_record(tracker):
    from hivemind.utils import get_dht_time

    from volunteer.swarm.hivemind_patches import apply_step_patches, is_step_patched

    assert apply_step_patches() and is_step_patched()
    tracker.report_local_progress(0, 10)
    stale = tracker.local_progress.dict()  # what the reporter thread stored a while ago
    assert tracker.dht.store(
        tracker.training_progress_key,
        subkey=tracker._local_public_key,
        value=stale,
        expiration_time=get_dht_time() + 60,
    )
    for samples in (20, 30, 40):
        tracker.report_local_progress(0, samples)
    metadata = tracker.dht.get(tracker.training_progress_key, latest=True).value
    progress = tracker._parse_swarm_progress_data(metadata)
    assert progress.num_peers == 1
    assert progress.samples_accumulated == 40, "hivemind as released counts the 10 of the stored record"


def test_reports_that_matter_are_not_throttled(tracker):
    from volunteer.strategy import _ThrottledEvent

    event = _ThrottledEvent(60.0, tracker)
    tracker.should_report_progress = event
    tracker.report_local_progress(0, 10)
    assert event.is_set(), "the first report goes out"
    event.clear()
    for samples in (20, 30, 40, 50, 60, 70):
        tracker.report_local_progress(0, samples)
        assert not event.is_set(), f"far from the target ({samples} of 100): throttled"
    tracker.report_local_progress(0, 80)
    assert event.is_set(), "within two batches of the target: at once"
    event.clear()
    with tracker.pause_updates():
        tracker.update_epoch(1)
    assert event.is_set(), "the first report of a new global step: at once"
    event.clear()
    tracker.report_local_progress(1, 10)
    assert not event.is_set()
    tracker.shutdown_triggered.set()
    event.set()
    assert event.is_set(), "the tracker's wake-up at shutdown goes through"


def test_a_lone_peer_schedules_no_averaging_round(monkeypatch):
    """Scheduling is a blocking round trip to the averager process, then cancelled at the step: pure cost."""
    from hivemind.optim.grad_averager import GradientAverager

    scheduled = []
    original = GradientAverager.schedule_step

    def schedule_step(self, *args, **kwargs):
        scheduled.append(time.monotonic())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GradientAverager, "schedule_step", schedule_step)
    recorder = EpochPerBatch()
    strategy = HivemindStrategy(
        target_batch_size=BATCH * 4,
        batch_size=BATCH,
        matchmaking_time=1.0,
        averaging_timeout=5.0,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        print_join_message=False,
    )
    trainer = quiet_trainer(strategy=strategy, max_steps=4 * 12, callbacks=[recorder])
    trainer.fit(TinyRegressor(), regression_data(batch_size=BATCH))
    assert recorder.epochs[-1] >= 10
    assert not scheduled, f"{len(scheduled)} averaging rounds scheduled for a lone peer"


def test_state_is_averaged_in_the_background_by_default():
    """In the foreground, every global step with other peers waited for a second matchmaking window: two
    peers took half as many global steps per second (``benchmarks/latency_ladder.py``)."""
    assert HivemindStrategy(print_join_message=False)._optimizer_kwargs["delay_state_averaging"] is True
    explicit = HivemindStrategy(delay_state_averaging=False, print_join_message=False)
    assert explicit._optimizer_kwargs["delay_state_averaging"] is False


def test_two_peers_step_without_waiting_out_the_matchmaking_window(tmp_path):
    """Two training peers, a 30 s window, global steps of a fraction of a second: hivemind as released took a
    whole window per global step (its leader assembles at its declared expiration, and state rounds held the
    next optimizer step as long). Now every round ends long before the moment it was scheduled for, and four
    global steps together take less than the first round's window. Compared moments, not durations."""
    import json

    from tests.integration.procs import Proc, wait_for

    window = 30.0
    procs: list[Proc] = []

    def peer(name: str, *extra: str) -> Proc:
        args = ["--name", name, "--out", str(tmp_path), "--matchmaking-time", str(window), *extra]
        return Proc.python("tests.integration.latency_peer", *args, log=tmp_path / f"{name}.log")

    try:
        procs.append(peer("a"))
        address = wait_for(lambda: _read(tmp_path / "a.addr"), 60, "the first peer's address", procs)
        procs.append(peer("b", "--initial-peers", address))
        wait_for(lambda: (tmp_path / "b.addr").exists(), 60, "the second peer", procs)
        (tmp_path / "go").touch()
        for proc in procs:
            wait_for(lambda p=proc: p.popen.poll() is not None, 300, f"{proc.log_path.name} to finish", [])
            assert proc.popen.returncode == 0, proc.output()[-4000:]
    finally:
        for proc in procs:
            proc.stop()

    for name in "ab":
        result = json.loads((tmp_path / f"{name}.json").read_text())
        together = [r for r in result["rounds"] if r["peers"] == 2]
        late = [r for r in together if r["done"] >= r["scheduled"] - window / 2]
        assert not late, f"peer {name}: rounds that waited out their matchmaking window: {late}"
        assert len(together) >= 3, f"peer {name}: gradient rounds with both peers: {result['rounds']}"
        epochs = {int(k): v for k, v in result["epoch_times"].items()}
        assert 4 in epochs and epochs[4] < together[0]["scheduled"], f"peer {name}: 4 global steps outlasted a window"


def _read(path):
    return path.read_text().strip() if path.exists() else None


def test_with_other_peers_reports_near_the_estimated_target_are_not_throttled(tracker):
    """A peer's view of the swarm is as old as the others' last records: with global steps shorter than a few
    throttle intervals, no report was ever "near" by this peer's own batches, and two peers stepped 0.5 s later
    throttled than not (``benchmarks/latency_ladder.py``, issue 14)."""
    from hivemind.utils import get_dht_time

    from volunteer.strategy import _ThrottledEvent

    event = _ThrottledEvent(5.0, tracker)
    tracker.should_report_progress = event
    tracker.report_local_progress(0, 10)
    event.clear()
    tracker.global_progress.num_peers = 2
    tracker.global_progress.eta_next_epoch = get_dht_time() + 100
    tracker.report_local_progress(0, 20)
    assert not event.is_set(), "far from the estimated target: throttled"
    tracker.global_progress.num_peers = 1
    tracker.global_progress.eta_next_epoch = get_dht_time() + 5
    tracker.report_local_progress(0, 30)
    assert not event.is_set(), "alone, nobody reads the record: throttled"
    tracker.global_progress.num_peers = 2
    tracker.report_local_progress(0, 40)
    assert event.is_set(), "with others, within two intervals of the estimated target: at once"


def test_with_other_peers_short_global_steps_are_not_throttled(tracker):
    """Right after a global step the tracker has no estimate until it re-reads the swarm (0.5 s or more):
    with global steps that short every report counts."""
    from volunteer.strategy import _ThrottledEvent

    event = _ThrottledEvent(5.0, tracker)
    tracker.should_report_progress = event
    tracker.global_progress.num_peers = 2
    tracker.report_local_progress(0, 10)
    tracker.report_local_progress(0, 20)
    event.clear()
    tracker.report_local_progress(0, 30)
    assert not event.is_set(), "no global step seen yet, no estimate: throttled"
    with tracker.pause_updates():
        tracker.update_epoch(1)  # a global step far shorter than two intervals
    tracker.global_progress.num_peers = 2
    event.clear()
    tracker.report_local_progress(1, 10)
    assert event.is_set(), "with others and short global steps: at once"


def test_with_other_peers_a_stale_estimate_is_read_again_at_once(tracker):
    """Until its tracker re-reads the swarm, a peer counts only its own samples toward the target. hivemind
    re-reads at the time its last estimate set, up to 10 s later: after an estimate taken while the peers'
    speed records were low, two peers of the ladder each computed the whole target alone, for 10 s of global
    steps (issue 14). An estimate later than this peer alone would need is stale: the tracker reads again."""
    from hivemind.utils import get_dht_time

    from volunteer.strategy import _ThrottledEvent

    event = _ThrottledEvent(0.0, tracker)
    tracker.should_report_progress = event
    tracker.min_refresh_period = 0.05
    for samples in (10, 20):
        tracker.report_local_progress(0, samples)  # reports microseconds apart: a fast peer
    progress = tracker.global_progress
    progress.num_peers = 2
    progress.eta_next_epoch = get_dht_time() + 1.0  # this peer alone needs far less than that
    progress.next_fetch_time = get_dht_time() + 1.0
    tracker.report_local_progress(0, 30)
    assert not tracker.global_state_updated.is_set(), "within min_refresh_period of the last re-read: not yet"
    time.sleep(0.1)
    progress.eta_next_epoch = get_dht_time() + 1.0
    tracker.report_local_progress(0, 40)
    assert progress.next_fetch_time <= get_dht_time(), "the stale estimate is read again now"
    assert tracker.global_state_updated.is_set(), "the fetcher is woken to read it"
    assert event.rereads == 1
    tracker.global_state_updated.clear()
    tracker.global_progress = fresh = dataclasses.replace(progress, next_fetch_time=get_dht_time() + 1.0)
    fresh.eta_next_epoch = get_dht_time() + 1e-3  # an estimate this peer could well meet: left alone
    time.sleep(0.1)
    tracker.report_local_progress(0, 50)
    assert not tracker.global_state_updated.is_set() and fresh.next_fetch_time > get_dht_time()
    fresh.num_peers = 1
    fresh.eta_next_epoch = get_dht_time() + 1.0
    tracker.report_local_progress(0, 60)
    assert not tracker.global_state_updated.is_set(), "alone: nothing to read from others"
