"""One peer of the multi-process strategy test: Trainer.fit with HivemindStrategy until a global step."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from tests.models import TinyRegressor, quiet_trainer, regression_data
from volunteer.strategy import HivemindStrategy


class Coordinator(L.Callback):
    def __init__(self, out: Path, name: str, go_file: Path, epochs: int) -> None:
        self.out, self.name, self.go_file, self.epochs = out, name, go_file, epochs
        self.transitions: list[dict] = []
        self._last_epoch = 0

    def on_train_start(self, trainer, pl_module):
        addresses = trainer.strategy.visible_maddrs()
        (self.out / f"{self.name}.addr.tmp").write_text(" ".join(addresses))
        (self.out / f"{self.name}.addr.tmp").rename(self.out / f"{self.name}.addr")
        deadline = time.monotonic() + 90
        while not self.go_file.exists():  # start together, so the first peer does not step alone
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            time.sleep(0.05)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        strategy = trainer.strategy
        progress = strategy.progress()
        if progress.local_epoch != self._last_epoch:
            self._last_epoch = progress.local_epoch
            self.transitions.append(
                dict(epoch=progress.local_epoch, contributed=strategy.samples_contributed, peers=progress.num_peers)
            )
        if progress.local_epoch >= self.epochs:
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--initial-peers", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    strategy = HivemindStrategy(
        target_batch_size=768,
        run_id="strategy-swarm-test",
        initial_peers=args.initial_peers,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        matchmaking_time=2.0,
        averaging_timeout=20.0,
        print_join_message=False,
        # look for the others' progress often: a global step here takes seconds, not minutes
        tracker_opts=dict(min_refresh_period=0.2, default_refresh_period=0.5),
    )
    coordinator = Coordinator(args.out, args.name, args.out / "go", args.epochs)
    model = TinyRegressor(lr=0.05, step_sleep=0.02)
    trainer = quiet_trainer(strategy=strategy, max_steps=5000, callbacks=[coordinator])
    trainer.fit(model, regression_data(batch_size=8, seed=args.seed))
    result = dict(
        transitions=coordinator.transitions,
        contributed=strategy.samples_contributed,
        weight=model.layer.weight.detach().flatten().tolist(),
        bias=model.layer.bias.detach().flatten().tolist(),
    )
    (args.out / f"{args.name}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
