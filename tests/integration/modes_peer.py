"""One peer of the training-modes test: Trainer.fit with HivemindStrategy in one mode until a few rounds."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from tests.integration.strategy_peer import Coordinator
from tests.models import TinyRegressor, quiet_trainer, regression_data
from volunteer.strategy import HivemindStrategy

MODE_OPTIONS: dict[str, dict] = {
    "sync": {},
    "powersgd": dict(powersgd_rank=1),
    "local": dict(mode="local", average_state_every=2),
    "diloco": dict(mode="diloco", inner_steps=40, outer_lr=0.7, outer_momentum=0.9),
}


class WaitForPeers(L.Callback):
    """After the first batch (hivemind's optimizer exists), wait until this peer sees the other one.

    Building hivemind's optimizer takes seconds on a loaded machine; without this, a peer that was quicker takes
    its first rounds alone, which is another test.
    """

    def __init__(self, peers: int) -> None:
        self.peers = peers
        self.done = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        deadline = time.monotonic() + 120
        while not self.done and trainer.strategy.num_peers < self.peers:
            if time.monotonic() > deadline:
                raise TimeoutError("the other peer never showed up")
            time.sleep(0.1)
        self.done = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=sorted(MODE_OPTIONS), required=True)
    parser.add_argument("--initial-peers", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=int, default=1, help="set_communication_interval, as an upload cap would")
    args = parser.parse_args()

    strategy = HivemindStrategy(
        target_batch_size=768,
        run_id=f"modes-test-{args.mode}",
        initial_peers=args.initial_peers,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        matchmaking_time=2.0,
        averaging_timeout=20.0,
        print_join_message=False,
        tracker_opts=dict(min_refresh_period=0.2, default_refresh_period=0.5),
        **MODE_OPTIONS[args.mode],
    )
    strategy.set_communication_interval(args.interval)
    coordinator = Coordinator(args.out, args.name, args.out / "go", args.epochs)
    model = TinyRegressor(lr=0.05, step_sleep=0.02)
    trainer = quiet_trainer(strategy=strategy, max_steps=3000, callbacks=[WaitForPeers(2), coordinator])
    trainer.fit(model, regression_data(batch_size=8, seed=args.seed))
    result = dict(
        transitions=coordinator.transitions,
        contributed=strategy.samples_contributed,
        swarm=strategy.swarm_samples,
        local_only=strategy.local_only_samples,
        pending=strategy.pending_samples,
        loss=float(trainer.callback_metrics["loss"]),
        weight=model.layer.weight.detach().flatten().tolist(),
        bias=model.layer.bias.detach().flatten().tolist(),
    )
    (args.out / f"{args.name}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
