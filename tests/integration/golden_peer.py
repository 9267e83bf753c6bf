"""One peer of the multi-peer golden tests: Trainer.fit with HivemindStrategy, recording every global step exactly.

The record (``<name>.pt``) holds, in order, what happened to this peer's parameters:

* ``acc``: hivemind accumulated a micro-batch: the local epoch at that moment, its sample count, the batch
  itself (so the test recomputes its gradient at the reference parameters) and the parameters it was computed
  on;
* ``step``: a global step (``hivemind.Optimizer._update_global_epoch``): the epochs before and after, the samples
  accumulated, the gradient round's weight and its group (peer ids) or why it failed, and the parameters after
  the optimizer step;
* ``load``: ``load_state_from_peers``: the epochs before and after, the samples it threw away, and the
  parameters after.

Those are hivemind's own methods wrapped in this process only (instrumentation: each wrapper calls the real
method and only reads). The volunteer patches are applied first, as the strategy would, so that their source
checks see hivemind's methods and not the wrappers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import torch
from hivemind.optim.grad_averager import GradientAverager
from hivemind.optim.optimizer import Optimizer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.models import quiet_trainer
from volunteer.strategy import HivemindStrategy
from volunteer.swarm import hivemind_patches

LR = 0.05
IN, HIDDEN = 8, 64


def make_mlp() -> nn.Sequential:
    torch.manual_seed(0)  # every peer starts from the same parameters
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 1))


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


def peer_data(seed: int, batch_size: int, batches: int = 4000) -> DataLoader:
    """A fixed order per peer (no shuffling); every batch full, so hivemind's per-batch weighting is exact."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * batch_size, IN, generator=generator)
    y = torch.sin(x @ torch.linspace(-1, 1, IN).unsqueeze(1)) + 0.1 * torch.randn(len(x), 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False, drop_last=True)


class GoldenMLP(L.LightningModule):
    def __init__(self, name: str, step_sleep: float) -> None:
        super().__init__()
        self.name = name
        self.net = make_mlp()
        self.step_sleep = step_sleep
        self.current_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def training_step(self, batch, batch_idx):
        time.sleep(self.step_sleep)  # peers of different speeds stay roughly in step
        x, y = batch
        self.current_batch = (x.detach().clone(), y.detach().clone())
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class Recorder:
    """Wraps hivemind's accumulate/step/load methods in this process and appends what they did to ``events``."""

    def __init__(self, model: GoldenMLP, out: Path, name: str) -> None:
        self.model, self.out, self.name = model, out, name
        self.events: list[dict] = []
        self.loads = 0
        self.peer_id: str | None = None

    def install(self) -> None:
        # the strategy applies these itself; applied here first, its source checks still see hivemind's methods
        assert hivemind_patches.apply_hivemind_patches()
        assert hivemind_patches.apply_group_patches()
        assert hivemind_patches.apply_step_patches()
        recorder = self
        accumulate, grad_step = GradientAverager.accumulate_grads_, GradientAverager.step
        update, load = Optimizer._update_global_epoch, Optimizer.load_state_from_peers

        def accumulate_grads_(averager, batch_size):
            opt = averager._golden_optimizer
            x, y = recorder.model.current_batch
            recorder.events.append(
                dict(kind="acc", epoch=opt.local_epoch, n=int(batch_size), x=x, y=y, params=flat(recorder.model))
            )
            return accumulate(averager, batch_size)

        def step(averager, *args, **kwargs):
            control = grad_step(averager, *args, **kwargs)
            averager._golden_control = control
            return control

        def _update_global_epoch(opt, grad_scaler):
            opt.grad_averager._golden_control = None
            before, samples = opt.local_epoch, opt.grad_averager.local_samples_accumulated
            num_peers = opt.tracker.global_progress.num_peers
            update(opt, grad_scaler)
            control = opt.grad_averager._golden_control
            event = dict(
                kind="step",
                epoch=before,
                to=opt.local_epoch,
                samples=samples,
                num_peers=num_peers,
                params=flat(recorder.model),
                weight=None,
                group=None,
                error="no gradient round began",
            )
            if control is not None:
                event["weight"] = control.weight
                if not control.done():
                    event["error"] = "the round had not ended"
                elif control.cancelled():
                    event["error"] = "the round was cancelled"
                elif control.exception() is not None:
                    event["error"] = repr(control.exception())
                else:
                    event["group"], event["error"] = [str(p) for p in control.result()], None
            recorder.events.append(event)
            recorder.after_epoch_change(opt)

        def load_state_from_peers(opt, **kwargs):
            before, dropped = opt.local_epoch, opt.grad_averager.local_samples_accumulated
            load(opt, **kwargs)
            recorder.events.append(
                dict(kind="load", epoch=before, to=opt.local_epoch, dropped=dropped, params=flat(recorder.model))
            )
            recorder.peer_id = str(opt.dht.peer_id)
            opt.grad_averager._golden_optimizer = opt
            recorder.loads += 1
            if recorder.loads == 1:  # the strategy's load at start: this peer has joined
                (recorder.out / f"{recorder.name}.joined").write_text(str(opt.local_epoch))
            recorder.after_epoch_change(opt)

        GradientAverager.accumulate_grads_ = accumulate_grads_
        GradientAverager.step = step
        Optimizer._update_global_epoch = _update_global_epoch
        Optimizer.load_state_from_peers = load_state_from_peers

    def after_epoch_change(self, opt) -> None:
        (self.out / f"{self.name}.epoch.tmp").write_text(str(opt.local_epoch))
        (self.out / f"{self.name}.epoch.tmp").replace(self.out / f"{self.name}.epoch")


class Coordinator(L.Callback):
    """Starts this peer on the test's ``go`` (if it says so) and stops it at the epoch the test writes."""

    def __init__(self, out: Path, wait_for_go: bool) -> None:
        self.out, self.wait_for_go = out, wait_for_go

    def on_train_start(self, trainer, pl_module):
        addr = self.out / f"{pl_module.name}.addr.tmp"
        addr.write_text(" ".join(trainer.strategy.visible_maddrs()))
        addr.replace(self.out / f"{pl_module.name}.addr")
        deadline = time.monotonic() + 90
        while self.wait_for_go and not (self.out / "go").exists():  # peers that start together start together
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            time.sleep(0.05)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        epoch = trainer.strategy.hivemind_optimizer.local_epoch
        stop = self.out / f"{pl_module.name}.stop"  # written whole (renamed into place) by the test
        if not stop.exists():
            stop = self.out / "stop"
        if stop.exists() and epoch >= int(stop.read_text()):
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--initial-peers", default=None)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--no-go", action="store_true", help="start at once, not on the test's go")
    parser.add_argument("--step-sleep", type=float, default=0.03)
    args = parser.parse_args()

    model = GoldenMLP(args.name, args.step_sleep)
    recorder = Recorder(model, args.out, args.name)
    recorder.install()
    initial = flat(model)
    strategy = HivemindStrategy(
        target_batch_size=args.target,
        run_id="golden-swarm-test",
        initial_peers=args.initial_peers,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        matchmaking_time=2.0,
        averaging_timeout=5.0,
        print_join_message=False,
        tracker_opts=dict(min_refresh_period=0.2, default_refresh_period=0.5),
    )
    trainer = quiet_trainer(strategy=strategy, max_steps=100_000, callbacks=[Coordinator(args.out, not args.no_go)])
    trainer.fit(model, peer_data(args.seed, args.batch_size))
    torch.save(
        dict(peer_id=recorder.peer_id, batch_size=args.batch_size, initial=initial, events=recorder.events),
        args.out / f"{args.name}.pt",
    )


if __name__ == "__main__":
    main()
