"""A peer steps as soon as the swarm reaches the target, however short its global steps (issue 14).

hivemind's tracker re-reads the swarm's progress from the DHT every 0.5 s and replaces what it had counted
locally with it. While HivemindStrategy throttled every progress report, the DHT held this peer's record from
an earlier global step: a fetch then counted none of its samples, and the peer went on accumulating up to
twice the target before stepping. These tests count batches, not seconds, so a slow machine cannot fail them.
"""

from __future__ import annotations

import collections
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
