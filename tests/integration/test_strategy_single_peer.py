"""A lone peer on 127.0.0.1: real DHT, real hivemind.Optimizer, real Trainer.fit."""

from __future__ import annotations

import hivemind
import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from tests.models import TinyRegressor, quiet_trainer, regression_data, update_per_global_step
from volunteer.strategy import HivemindStrategy, SwarmProgress

pytestmark = pytest.mark.integration

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def lone_strategy(**kwargs) -> HivemindStrategy:
    kwargs.setdefault("target_batch_size", 32)
    kwargs.setdefault("matchmaking_time", 0.5)
    kwargs.setdefault("averaging_timeout", 5.0)
    return HivemindStrategy(host_maddrs=LOOPBACK, **kwargs)


class Recorder(L.Callback):
    """Records (local epoch, learning rate, progress) after every batch."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float]] = []
        self.progress: list[SwarmProgress] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        strategy = trainer.strategy
        opt = strategy.hivemind_optimizer
        self.rows.append((opt.local_epoch, opt.param_groups[0]["lr"]))
        self.progress.append(strategy.progress())


def test_learning_rate_follows_global_steps_exactly():
    recorder = Recorder()
    trainer = quiet_trainer(strategy=lone_strategy(), max_steps=40, callbacks=[recorder])
    trainer.fit(TinyRegressor(lr=0.08, schedule="halving"), regression_data(batch_size=8))
    epochs = [epoch for epoch, _ in recorder.rows]
    assert epochs[-1] >= 5, "a lone peer with target 32 and batch 8 steps every 4 batches"
    for epoch, lr in recorder.rows:
        assert lr == pytest.approx(0.08 * 0.5**epoch), f"lr {lr} at global step {epoch}"


def test_progress_view_reports_the_swarm():
    recorder = Recorder()
    strategy = lone_strategy()
    trainer = quiet_trainer(strategy=strategy, max_steps=12, callbacks=[recorder])
    assert strategy.progress() is None
    trainer.fit(TinyRegressor(), regression_data(batch_size=8))
    last = recorder.progress[-1]
    assert last.target_batch_size == 32
    assert last.local_epoch >= 2 and last.global_epoch >= last.local_epoch
    assert last.num_peers == 1 and (last.eta_next_step is None or last.eta_next_step >= 0)
    assert 0 <= last.samples_accumulated <= 32
    assert strategy.samples_contributed == 12 * 8
    assert strategy.hivemind_optimizer is None and strategy.dht is None, "teardown leaves the swarm"


def test_join_message_names_our_addresses_and_three_ways_to_join(capfd):
    trainer = quiet_trainer(strategy=lone_strategy(run_id="join-test"), max_steps=1)
    trainer.fit(TinyRegressor(), regression_data())
    err = capfd.readouterr().err
    assert "run_id='join-test'" in err
    assert "/ip4/127.0.0.1/tcp/" in err, "a loopback-only peer lists its loopback address"
    assert "INITIAL_PEERS=/ip4/127.0.0.1/tcp/" in err
    assert "HivemindStrategy(initial_peers='/ip4/127.0.0.1/" in err
    assert "volunteer --project <id> --initial-peers /ip4/127.0.0.1/" in err


@pytest.mark.parametrize(("precision", "reuse_grad_buffers"), [("fp16", False), ("fp16", True), ("bf16-mixed", False)])
def test_mixed_precision_moves_weights_as_far_as_fp32(precision, reuse_grad_buffers):
    if precision == "fp16":
        # Lightning turns precision="16-mixed" into bf16 on a CPU; a plugin instance keeps fp16 with a scaler
        kwargs = dict(plugins=[MixedPrecision("16-mixed", device="cpu")])
    else:
        kwargs = dict(precision=precision)
    options = dict(reuse_grad_buffers=reuse_grad_buffers)
    reference, _, _ = update_per_global_step(strategy_options=options)
    step, epochs, plugin = update_per_global_step(strategy_options=options, **kwargs)
    # fp16 skips the first batches while the scaler finds its scale (an overflow drops the batch)
    assert epochs >= 2, "global steps were taken"
    assert 0.5 < step / reference < 2, f"a global step moved the weights {step / reference:.3g}x as far as fp32"
    if precision == "fp16":
        # with reuse_grad_buffers the gradients stay scaled until the global step: only hivemind's scaler
        # knows; otherwise Lightning's own scaler unscales each batch before hivemind accumulates it
        assert isinstance(plugin.scaler, hivemind.GradScaler) == reuse_grad_buffers


def test_fp16_with_gradient_clipping_clips_true_gradients():
    # allowed without reuse_grad_buffers: Lightning unscales each batch before it clips it, as without hivemind
    reference, _, _ = update_per_global_step(gradient_clip_val=0.05)
    step, epochs, _ = update_per_global_step(gradient_clip_val=0.05, plugins=[MixedPrecision("16-mixed", device="cpu")])
    assert epochs >= 2
    assert 0.5 < step / reference < 2, f"a global step moved the weights {step / reference:.3g}x as far as fp32"


def test_reuse_grad_buffers_trains_and_restores_zero_grad():
    model = TinyRegressor()
    original = model.optimizer_zero_grad
    recorder = Recorder()
    trainer = quiet_trainer(strategy=lone_strategy(reuse_grad_buffers=True), max_steps=12, callbacks=[recorder])
    trainer.fit(model, regression_data(batch_size=8))
    assert recorder.rows[-1][0] >= 2
    assert model.optimizer_zero_grad == original


def test_offloaded_optimizer_with_scheduler_fn():
    strategy = lone_strategy(
        offload_optimizer=True,
        scheduler_fn=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step),
    )
    recorder = Recorder()
    trainer = quiet_trainer(strategy=strategy, max_steps=16, callbacks=[recorder])
    trainer.fit(TinyRegressor(lr=0.08), regression_data(batch_size=8))
    epoch, lr = recorder.rows[-1]
    assert epoch >= 2 and lr == pytest.approx(0.08 * 0.5**epoch)


def test_resuming_from_a_checkpoint_keeps_the_global_step(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    recorder = Recorder()
    trainer = quiet_trainer(strategy=lone_strategy(run_id="resume-a"), max_steps=16, callbacks=[recorder])
    trainer.fit(TinyRegressor(), regression_data(batch_size=8))
    reached = recorder.rows[-1][0]
    assert reached >= 3
    trainer.save_checkpoint(ckpt)

    resumed = Recorder()
    trainer = quiet_trainer(strategy=lone_strategy(run_id="resume-b"), max_steps=20, callbacks=[resumed])
    trainer.fit(TinyRegressor(), regression_data(batch_size=8), ckpt_path=ckpt)
    assert resumed.rows[0][0] >= reached, "the global step survives a restart from a checkpoint"


def test_identity_file_keeps_the_peer_id(tmp_path):
    identity = tmp_path / "nested" / "identity.key"
    ids = []
    for _ in range(2):
        strategy = lone_strategy(identity_path=identity)
        trainer = quiet_trainer(strategy=strategy, max_steps=1, callbacks=[_PeerIdProbe(ids)])
        trainer.fit(TinyRegressor(), regression_data())
    assert identity.exists()
    assert ids[0] == ids[1]


class _PeerIdProbe(L.Callback):
    def __init__(self, ids: list) -> None:
        self.ids = ids

    def on_train_start(self, trainer, pl_module):
        self.ids.append(str(trainer.strategy.dht.peer_id))
