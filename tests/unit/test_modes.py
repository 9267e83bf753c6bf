"""Training modes: what the strategy refuses, and what the manifest hands it."""

from __future__ import annotations

import pytest

from tests.support.projects import project_files
from volunteer.errors import StrategyConfigError
from volunteer.project.manifest import parse_manifest
from volunteer.strategy import HivemindStrategy


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        (dict(mode="async"), "mode"),
        (dict(mode="diloco", reuse_grad_buffers=True), "reuse_grad_buffers"),
        (dict(mode="local", reuse_grad_buffers=True), "reuse_grad_buffers"),
        (dict(mode="diloco", offload_optimizer=True), "offload_optimizer"),
        (dict(mode="diloco", scheduler_fn=lambda opt: None), "scheduler_fn"),
        (dict(mode="local", powersgd_rank=4), "PowerSGD"),
        (dict(mode="diloco", powersgd_rank=4), "PowerSGD"),
        (dict(powersgd_rank=0), "powersgd_rank"),
        (dict(mode="diloco", inner_steps=0), "inner_steps"),
        (dict(mode="diloco", outer_lr=0.0), "outer_lr"),
        (dict(mode="diloco", outer_momentum=1.0), "outer_momentum"),
    ],
)
def test_a_mode_refuses_what_it_cannot_use(kwargs, word):
    with pytest.raises(StrategyConfigError) as info:
        HivemindStrategy(target_batch_size=64, **kwargs)
    assert word in info.value.message and info.value.hint


def test_local_mode_asks_hivemind_for_local_updates_and_powersgd_for_its_averager():
    assert HivemindStrategy(mode="local")._optimizer_kwargs["use_local_updates"] is True
    factory = HivemindStrategy(powersgd_rank=2)._optimizer_kwargs["grad_averager_factory"]
    assert factory.func.__name__ == "PowerSGDGradientAverager" and factory.keywords == {"averager_rank": 2}
    assert "use_local_updates" not in HivemindStrategy()._optimizer_kwargs


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_the_communication_interval_is_a_whole_number_of_rounds(every):
    with pytest.raises(StrategyConfigError):
        HivemindStrategy().set_communication_interval(every)


def test_the_communication_interval_is_kept_until_training_starts():
    strategy = HivemindStrategy(mode="diloco")
    strategy.set_communication_interval(3)
    assert strategy.communication_interval == 3


def _kwargs(**changes: object) -> dict:
    text = project_files({"hivemind.grad_compression": "none", **changes})["volunteer.toml"]
    return parse_manifest(text, "test").strategy_kwargs()


def test_the_manifest_hands_each_mode_its_settings():
    diloco = _kwargs(**{"training.mode": "diloco", "training.outer_lr": 0.5})
    assert (diloco["mode"], diloco["inner_steps"], diloco["outer_lr"], diloco["outer_momentum"]) == (
        "diloco",
        100,
        0.5,
        0.9,
    )
    assert "average_state_every" not in diloco  # the global copy is not averaged unless asked
    local = _kwargs(**{"training.mode": "local", "hivemind.average_state_every": 4})
    assert local["mode"] == "local" and local["average_state_every"] == 4 and "inner_steps" not in local
    sync = _kwargs()
    assert sync["mode"] == "sync" and "powersgd_rank" not in sync
    powersgd = _kwargs(**{"hivemind.grad_compression": "powersgd"})
    assert powersgd["powersgd_rank"] == 4 and powersgd["grad_compression"] is None
