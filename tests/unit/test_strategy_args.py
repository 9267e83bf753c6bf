"""HivemindStrategy refuses what cannot work, before it starts any process."""

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from tests.models import TinyRegressor, TwoOptimizers, quiet_trainer, regression_data
from volunteer.errors import PeerAddressError, StrategyConfigError
from volunteer.strategy import HivemindStrategy

PEER = "/ip4/127.0.0.1/tcp/31337/p2p/QmTPAgyFyHNAhtTpB2yj7PbSgD8YUojZSW6e3QZzA5RKMh"


@pytest.mark.parametrize("value", [0, -8, "64", 2.5, True, None])
def test_target_batch_size_must_be_a_positive_integer(value):
    with pytest.raises(StrategyConfigError) as info:
        HivemindStrategy(target_batch_size=value)
    assert "target_batch_size" in info.value.message and info.value.hint


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(run_id=""), "run_id"),
        (dict(matchmaking_time=0), "matchmaking_time"),
        (dict(averaging_timeout=-1), "averaging_timeout"),
        (dict(delay_grad_averaging=True, delay_optimizer_step=False), "delay_optimizer_step"),
        (dict(delay_optimizer_step=True, offload_optimizer=False), "offload_optimizer"),
    ],
)
def test_inconsistent_options_are_refused(kwargs, word):
    with pytest.raises(StrategyConfigError) as info:
        HivemindStrategy(target_batch_size=64, **kwargs)
    assert word in info.value.message + info.value.hint


def test_initial_peers_accept_lists_and_strings_and_deduplicate():
    other = PEER.replace("31337", "31338")
    assert HivemindStrategy(initial_peers=[PEER, other, PEER]).initial_peers == [PEER, other]
    assert HivemindStrategy(initial_peers=f"{PEER}, {other}").initial_peers == [PEER, other]


def test_initial_peers_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("INITIAL_PEERS", PEER)
    assert HivemindStrategy().initial_peers == [PEER]
    # an explicit argument wins over the environment
    assert HivemindStrategy(initial_peers=[]).initial_peers == []


def test_a_bad_address_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("INITIAL_PEERS", "localhost:31337")
    with pytest.raises(PeerAddressError) as info:
        HivemindStrategy()
    assert "INITIAL_PEERS" in info.value.message


def test_existing_dht_and_dht_options_are_exclusive():
    with pytest.raises(StrategyConfigError):
        HivemindStrategy(dht=object(), initial_peers=[PEER])


def test_registered_name_gives_the_strategy_with_defaults():
    trainer = quiet_trainer(strategy="hivemind", max_steps=1)
    assert isinstance(trainer.strategy, HivemindStrategy)
    assert trainer.strategy.target_batch_size > 0


def _fit_error(trainer, model) -> StrategyConfigError:
    with pytest.raises(StrategyConfigError) as info:
        trainer.fit(model, regression_data())
    assert trainer.strategy.dht is None, "the DHT must not start for a configuration that cannot train"
    return info.value


def test_accumulate_grad_batches_is_refused():
    trainer = quiet_trainer(strategy=HivemindStrategy(target_batch_size=64), accumulate_grad_batches=4, max_steps=1)
    error = _fit_error(trainer, TinyRegressor())
    assert "accumulate_grad_batches" in error.message and "target_batch_size" in error.hint


def test_more_than_one_device_is_refused():
    trainer = quiet_trainer(strategy=HivemindStrategy(target_batch_size=64), devices=2, max_steps=1)
    error = _fit_error(trainer, TinyRegressor())
    assert "2 devices" in error.message and "devices=1" in error.hint


def test_more_than_one_optimizer_is_refused():
    trainer = quiet_trainer(strategy=HivemindStrategy(target_batch_size=64), max_steps=1)
    error = _fit_error(trainer, TwoOptimizers())
    assert "one optimizer" in error.message


def test_reduce_lr_on_plateau_is_refused():
    trainer = quiet_trainer(strategy=HivemindStrategy(target_batch_size=64), max_steps=1)
    error = _fit_error(trainer, TinyRegressor(schedule="plateau"))
    assert "ReduceLROnPlateau" in error.message and "LambdaLR" in error.hint


def test_two_schedulers_are_refused():
    strategy = HivemindStrategy(target_batch_size=64, scheduler_fn=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    trainer = quiet_trainer(strategy=strategy, max_steps=1)
    error = _fit_error(trainer, TinyRegressor(schedule="halving"))
    assert "scheduler_fn" in error.hint


def test_module_scheduler_with_offloaded_optimizer_is_refused():
    trainer = quiet_trainer(strategy=HivemindStrategy(target_batch_size=64, offload_optimizer=True), max_steps=1)
    error = _fit_error(trainer, TinyRegressor(schedule="halving"))
    assert "scheduler_fn" in error.hint


def test_fp16_with_gradient_clipping_and_reused_buffers_is_refused():
    # Lightning turns precision="16-mixed" into bf16 on a CPU; a plugin instance keeps fp16 with a scaler
    trainer = quiet_trainer(
        strategy=HivemindStrategy(target_batch_size=64, reuse_grad_buffers=True),
        plugins=[MixedPrecision("16-mixed", device="cpu")],
        gradient_clip_val=1.0,
        max_steps=1,
    )
    error = _fit_error(trainer, TinyRegressor())
    assert "reuse_grad_buffers" in error.message
    assert "bf16-mixed" in error.hint


def test_progress_reports_are_throttled():
    from volunteer.strategy import _ThrottledEvent

    event = _ThrottledEvent(interval=60.0)
    event.set()
    assert event.is_set()
    event.clear()
    event.set()  # within the interval: dropped
    assert not event.is_set()
    unthrottled = _ThrottledEvent(interval=0.0)
    unthrottled.set()
    unthrottled.clear()
    unthrottled.set()
    assert unthrottled.is_set()
