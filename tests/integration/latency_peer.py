"""One peer of the two-peer latency test: Trainer.fit with HivemindStrategy and a long matchmaking window,
recording every gradient-averaging round (when it was scheduled to begin, when it ended, with how many)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import hivemind
import lightning as L
from hivemind.utils import get_dht_time

from tests.models import TinyRegressor, quiet_trainer, regression_data
from volunteer.strategy import HivemindStrategy

BATCH = 8


def record_rounds(rounds: list[dict]) -> None:
    original = hivemind.Optimizer._average_gradients_and_load_into_optimizer

    def average(opt, control):
        original(opt, control)
        if control is not None and control.done() and not control.cancelled() and control.exception() is None:
            rounds.append(dict(scheduled=control.scheduled_time, done=get_dht_time(), peers=len(control.result())))

    hivemind.Optimizer._average_gradients_and_load_into_optimizer = average


class Coordinator(L.Callback):
    def __init__(self, out: Path, name: str, epochs: int, rounds: list[dict]) -> None:
        self.out, self.name, self.epochs, self.rounds = out, name, epochs, rounds
        self.epoch_times: dict[int, float] = {}

    def on_train_start(self, trainer, pl_module):
        (self.out / f"{self.name}.addr.tmp").write_text(" ".join(trainer.strategy.visible_maddrs()))
        (self.out / f"{self.name}.addr.tmp").rename(self.out / f"{self.name}.addr")
        deadline = time.monotonic() + 90
        while not (self.out / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            time.sleep(0.05)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        opt = trainer.strategy.hivemind_optimizer
        deadline = time.monotonic() + 90
        while opt.tracker.global_progress.num_peers < 2:  # the first global step is together, not alone
            if time.monotonic() > deadline:
                raise TimeoutError("the other peer never showed up")
            time.sleep(0.05)
        now = get_dht_time()
        self.epoch_times.setdefault(opt.local_epoch, now)
        if opt.local_epoch >= self.epochs:
            trainer.should_stop = True
        elif self.rounds and now > self.rounds[0]["scheduled"]:
            trainer.should_stop = True  # one whole window has passed: what happened within it is the answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--initial-peers", default=None)
    parser.add_argument("--matchmaking-time", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    rounds: list[dict] = []
    record_rounds(rounds)
    strategy = HivemindStrategy(
        target_batch_size=BATCH * 8,
        batch_size=BATCH,
        run_id="latency-two-peers",
        initial_peers=args.initial_peers,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        matchmaking_time=args.matchmaking_time,
        averaging_timeout=3 * args.matchmaking_time,
        print_join_message=False,
    )
    coordinator = Coordinator(args.out, args.name, args.epochs, rounds)
    trainer = quiet_trainer(strategy=strategy, max_steps=100_000, callbacks=[coordinator])
    trainer.fit(TinyRegressor(step_sleep=0.01), regression_data(num_samples=BATCH * 1000, batch_size=BATCH))
    result = dict(rounds=rounds, epoch_times={str(k): v for k, v in coordinator.epoch_times.items()})
    (args.out / f"{args.name}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
