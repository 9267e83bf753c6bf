"""Golden tests, one peer: a lone peer's global step is the large-batch step, compared with a reference.

A peer alone in its swarm accumulates ``K`` micro-batches (``target_batch_size = K x batch``) and then takes one
optimizer step on their mean gradient: exactly what plain Lightning computes with ``accumulate_grad_batches=K``
on the same model, seed and data order. The reference runs here in the same process: plain Lightning for the
synchronous mode; for ``local`` and ``diloco``, the algorithm written out by hand (local SGD, where averaging
with nobody changes nothing; DiLoCo's inner steps, then the outer Nesterov step on the change, in a loop of
our own, not through torch's SGD).

Each case checks, for ``G`` global steps over ``K x G`` batches: the parameters after every global step match
the reference's to float32 round-off (``max |diff| <= 1e-5 x max |param|``), and the global step is taken at the
``K``-th batch exactly (no earlier, no later). Before the fix of issue 22 the synchronous cases stepped on the
last micro-batch's gradient alone (hivemind's fallback for an unbegun averaging round): off by 1e-2 after one step.

With ``delay_optimizer_step`` hivemind runs the optimizer in the background and applies its result at the next
step that finds it finished: by design, a batch may be computed on the parameters of the step before (delayed
parameter updates). The recorder waits for that background step at each batch's end (``wait_for_delayed_updates``,
hivemind's own call at shutdown), the case where it finished in time, so that the comparison is exact.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.models import quiet_trainer
from volunteer.strategy import HivemindStrategy

pytestmark = pytest.mark.integration

K = 4  # micro-batches per global step (a power of two: Lightning's loss / K is exact in bf16 and fp16 too)
G = 3  # global steps compared
BATCH = 16
TOLERANCE = 1e-5  # x max |param|: float32 round-off of summing K gradients in another order


class MLP(L.LightningModule):
    """8-64-1 with tanh; the optimizer, learning rate and schedule as the case asks."""

    def __init__(self, optimizer: str = "sgd", lr: float = 0.1, schedule: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 1))
        self.optimizer, self.lr, self.schedule = optimizer, lr, schedule

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x).float(), y)

    def configure_optimizers(self):
        optimizer = make_optimizer(self.optimizer, self.parameters(), self.lr)
        if self.schedule:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, halving)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return optimizer


def halving(step: int) -> float:
    return 0.5**step


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    raise ValueError(name)


def data(batches: int) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batches * BATCH, 8, generator=generator)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(batches * BATCH, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def params_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().float().clone() for p in module.parameters()]


class EveryOptimizerStep(L.Callback):
    """The reference: the parameters after every K-th batch (Lightning's optimizer step with accumulation)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.snapshots: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0:
            self.snapshots.append(params_of(pl_module))


class EveryGlobalStep(L.Callback):
    """The strategy: the local epoch after every batch, and the parameters whenever it moved."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.snapshots: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        opt = trainer.strategy.hivemind_optimizer
        opt.state_averager.step(wait_for_delayed_updates=True)  # a delayed step's result, applied (see above)
        if opt.local_epoch != (self.epochs[-1] if self.epochs else 0):
            self.snapshots.append(params_of(pl_module))
        self.epochs.append(opt.local_epoch)


def lone_strategy(**options) -> HivemindStrategy:
    return HivemindStrategy(
        target_batch_size=K * BATCH,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        print_join_message=False,
        matchmaking_time=1.0,
        averaging_timeout=5.0,
        keep_swarm=False,
        **options,
    )


def run_strategy(model: MLP, strategy: HivemindStrategy, steps: int, **trainer_kwargs) -> EveryGlobalStep:
    recorder = EveryGlobalStep()
    trainer = quiet_trainer(strategy=strategy, max_steps=steps, callbacks=[recorder], **trainer_kwargs)
    trainer.fit(model, data(steps))
    return recorder


def run_reference(model: MLP, **trainer_kwargs) -> list[list[torch.Tensor]]:
    recorder = EveryOptimizerStep(K)
    trainer = quiet_trainer(max_steps=G, accumulate_grad_batches=K, callbacks=[recorder], **trainer_kwargs)
    trainer.fit(model, data(K * G))
    return recorder.snapshots


def assert_steps_match(got: EveryGlobalStep, expected: list[list[torch.Tensor]], every: int = K) -> None:
    assert got.epochs == [(b + 1) // every for b in range(every * G)], (
        f"a global step every {every} batches, exactly {G} of them: local epoch after each batch {got.epochs}"
    )
    assert len(got.snapshots) == len(expected) == G
    for step, (ours, theirs) in enumerate(zip(got.snapshots, expected, strict=True), start=1):
        scale = max(p.abs().max().item() for p in theirs)
        diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))
        assert diff <= TOLERANCE * scale, (
            f"global step {step}: max |param - reference| {diff:.3g} (bound {TOLERANCE * scale:.3g}); "
            f"update cosine {update_cosine(ours, theirs, got.snapshots, expected, step):.4f}"
        )


def update_cosine(ours, theirs, our_steps, their_steps, step) -> float:
    """The cosine of this step's update with the reference's, from the same previous parameters."""
    before = their_steps[step - 2] if step > 1 else None
    if before is None:
        return float("nan")
    a = torch.cat([(o - b).flatten() for o, b in zip(ours, before, strict=True)])
    b = torch.cat([(t - p).flatten() for t, p in zip(theirs, before, strict=True)])
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


# -- the synchronous mode against Lightning's accumulate_grad_batches ---------------------------------------


SYNC_CASES = {
    "sgd": (dict(optimizer="sgd"), {}, {}),
    "sgd-nesterov-momentum": (dict(optimizer="momentum", lr=0.05), {}, {}),
    "adam": (dict(optimizer="adam", lr=0.01), {}, {}),
    "adamw": (dict(optimizer="adamw", lr=0.01), {}, {}),
    "scheduler-per-global-step": (dict(schedule=True), {}, {}),
    "clip-norm": (dict(), {}, dict(gradient_clip_val=0.05)),
    "clip-value": (dict(), {}, dict(gradient_clip_val=0.01, gradient_clip_algorithm="value")),
    "adam-clip-scheduler": (dict(optimizer="adam", lr=0.01, schedule=True), {}, dict(gradient_clip_val=0.05)),
    "bf16-mixed": (dict(), {}, dict(precision="bf16-mixed")),
    "reuse-grad-buffers": (dict(optimizer="momentum", lr=0.05), dict(reuse_grad_buffers=True), {}),
    "reuse-grad-buffers-clip": (dict(), dict(reuse_grad_buffers=True), dict(gradient_clip_val=0.05)),
    "reuse-grad-buffers-bf16": (dict(), dict(reuse_grad_buffers=True), dict(precision="bf16-mixed")),
    "no-delay-state-averaging": (dict(optimizer="adam", lr=0.01), dict(delay_state_averaging=False), {}),
    # alone, nothing is compressed: PowerSGD's averager must hand the optimizer the plain mean
    "powersgd": (dict(optimizer="momentum", lr=0.05), dict(powersgd_rank=2), {}),
}


def fp16() -> dict:
    # Lightning turns precision="16-mixed" into bf16 on a CPU; a plugin instance keeps fp16 with its scaler
    return dict(plugins=[MixedPrecision("16-mixed", device="cpu")])


@pytest.mark.parametrize("case", list(SYNC_CASES))
def test_sync_global_step_is_the_large_batch_step(case):
    model_kwargs, strategy_kwargs, trainer_kwargs = SYNC_CASES[case]
    expected = run_reference(MLP(**model_kwargs), **trainer_kwargs)
    got = run_strategy(MLP(**model_kwargs), lone_strategy(**strategy_kwargs), K * G, **trainer_kwargs)
    assert_steps_match(got, expected)


@pytest.mark.parametrize("reuse_grad_buffers", [False, True], ids=["own-accumulators", "reuse-grad-buffers"])
def test_sync_fp16_global_step_is_the_large_batch_step(reuse_grad_buffers):
    # fp16 with its loss scaler: Lightning's scaler unscales each batch before hivemind accumulates it; with
    # reuse_grad_buffers, hivemind.GradScaler unscales the sum once, at the global step
    expected = run_reference(MLP(), **fp16())
    got = run_strategy(MLP(), lone_strategy(reuse_grad_buffers=reuse_grad_buffers), K * G, **fp16())
    assert_steps_match(got, expected)


OFFLOAD_CASES = {
    "offload": dict(offload_optimizer=True),
    "offload-delay-optimizer-step": dict(delay_optimizer_step=True),
    "offload-delay-optimizer-step-and-grad-averaging": dict(delay_grad_averaging=True),
    "offload-no-delay-state-averaging": dict(offload_optimizer=True, delay_state_averaging=False),
}


@pytest.mark.parametrize("case", list(OFFLOAD_CASES))
def test_offloaded_global_step_is_the_large_batch_step(case):
    """hivemind builds the optimizer itself (in host memory), with a scheduler from ``scheduler_fn``."""
    expected = run_reference(MLP(optimizer="adam", lr=0.01, schedule=True), gradient_clip_val=0.05)

    def scheduler_fn(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, halving)

    strategy = lone_strategy(scheduler_fn=scheduler_fn, **OFFLOAD_CASES[case])
    got = run_strategy(MLP(optimizer="adam", lr=0.01), strategy, K * G, gradient_clip_val=0.05)
    assert_steps_match(got, expected)


def test_gradient_clipping_binds_in_these_cases():
    """The clipping cases prove something only where clipping changes the large-batch step."""
    plain = run_reference(MLP())
    for clip in (dict(gradient_clip_val=0.05), dict(gradient_clip_val=0.01, gradient_clip_algorithm="value")):
        clipped = run_reference(MLP(), **clip)
        diff = max((a - b).abs().max().item() for a, b in zip(plain[0], clipped[0], strict=True))
        assert diff > 100 * TOLERANCE, f"{clip} did not change the first global step ({diff:.3g})"


# -- local updates and DiLoCo against the algorithm written out by hand -------------------------------------


def hand_local_sgd(lr: float, momentum: float) -> list[list[torch.Tensor]]:
    """Local SGD alone: a step of the project's optimizer every batch; averaging with nobody changes nothing."""
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    snapshots = []
    for index, (x, y) in enumerate(data(K * G)):
        optimizer.zero_grad()
        model.training_step((x, y), index).backward()
        optimizer.step()
        if (index + 1) % K == 0:
            snapshots.append(params_of(model))
    return snapshots


class LocalSGD(MLP):
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def test_local_mode_is_local_sgd():
    got = run_strategy(LocalSGD(), lone_strategy(mode="local", average_state_every=2), K * G)
    assert_steps_match(got, hand_local_sgd(lr=0.05, momentum=0.9))


INNER_STEPS, OUTER_LR, OUTER_MOMENTUM = 4, 0.7, 0.9


def hand_diloco() -> list[list[torch.Tensor]]:
    """DiLoCo alone: ``INNER_STEPS`` AdamW steps, then Nesterov SGD on ``global - local``; restart from global."""
    model = MLP()
    inner = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    global_params = params_of(model)
    momentum: list[torch.Tensor] | None = None
    snapshots = []
    batches = iter(data(INNER_STEPS * G))
    for _ in range(G):
        for index in range(INNER_STEPS):
            inner.zero_grad()
            model.training_step(next(batches), index).backward()
            inner.step()
        change = [g - p.detach() for g, p in zip(global_params, model.parameters(), strict=True)]
        if momentum is None:
            momentum = [c.clone() for c in change]
        else:
            momentum = [OUTER_MOMENTUM * m + c for m, c in zip(momentum, change, strict=True)]
        nesterov = [c + OUTER_MOMENTUM * m for c, m in zip(change, momentum, strict=True)]
        global_params = [g - OUTER_LR * n for g, n in zip(global_params, nesterov, strict=True)]
        with torch.no_grad():
            for param, value in zip(model.parameters(), global_params, strict=True):
                param.copy_(value)
        snapshots.append([g.clone() for g in global_params])
    return snapshots


class DiLoCoInner(MLP):
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01, weight_decay=0.1)


def test_diloco_mode_is_diloco():
    strategy = lone_strategy(
        mode="diloco", inner_steps=INNER_STEPS, outer_lr=OUTER_LR, outer_momentum=OUTER_MOMENTUM, batch_size=BATCH
    )
    got = run_strategy(DiLoCoInner(), strategy, INNER_STEPS * G)
    assert_steps_match(got, hand_diloco(), every=INNER_STEPS)
