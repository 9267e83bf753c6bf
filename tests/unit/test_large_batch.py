"""volunteer.swarm.large_batch: optimizer state that counts no step, and clipping moved to the global step."""

from __future__ import annotations

import pytest
import torch
from hivemind.optim.state_averager import initialize_optimizer_state_

from volunteer.swarm.large_batch import ClipAtGlobalStep, fresh_optimizer_state, has_state, initialize_state

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "amsgrad": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    "sgd-weight-decay-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
}


def params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]


def steps(make, init, count: int = 3) -> list[torch.Tensor]:
    """The parameters after ``count`` steps on fixed gradients, the optimizer first initialised by ``init``."""
    ps = params()
    optimizer = make(ps)
    init(optimizer)
    torch.manual_seed(1)
    for _ in range(count):
        for p in ps:
            p.grad = torch.randn_like(p)
        optimizer.step()
    return [p.detach().clone() for p in ps]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fresh_state_steps_exactly_as_an_optimizer_that_took_no_step(name):
    make = OPTIMIZERS[name]
    untouched = steps(make, lambda optimizer: None)
    fresh = steps(make, lambda optimizer: fresh_optimizer_state(optimizer))
    for a, b in zip(fresh, untouched, strict=True):
        assert torch.equal(a, b)


def test_hivemind_zero_step_is_what_it_replaces():
    """The reason for it: hivemind's own initialisation counts as a step (Adam's bias correction)."""
    untouched = steps(OPTIMIZERS["adam"], lambda optimizer: None, count=1)
    zero_stepped = steps(OPTIMIZERS["adam"], initialize_optimizer_state_, count=1)
    assert not torch.equal(untouched[0], zero_stepped[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fresh_state_moves_nothing_and_leaves_the_settings(name):
    ps = params()
    before = [p.detach().clone() for p in ps]
    optimizer = OPTIMIZERS[name](ps)
    settings = [dict(group, params=None) for group in optimizer.param_groups]
    assert not has_state(optimizer) or name == "adagrad", "Adagrad creates its state at construction"
    assert fresh_optimizer_state(optimizer)
    assert has_state(optimizer), "hivemind averages and shares state tensors: they must exist"
    for p, b in zip(ps, before, strict=True):
        assert torch.equal(p.detach(), b) and p.grad is None
    assert [dict(group, params=None) for group in optimizer.param_groups] == settings


def test_state_that_exists_is_kept():
    ps = params()
    optimizer = torch.optim.Adam(ps, lr=0.01)
    for p in ps:
        p.grad = torch.ones_like(p)
    optimizer.step()
    optimizer.step()
    assert fresh_optimizer_state(optimizer)
    assert all(state["step"].item() == 2 for state in optimizer.state.values()), "a resumed count stays"


class NoLearningRate(torch.optim.Optimizer):
    """An optimizer whose groups have no ``lr``: fresh_optimizer_state cannot hold it still."""

    def __init__(self, ps) -> None:
        super().__init__(ps, {"scale": 0.1})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].setdefault("count", torch.zeros(()))
                self.state[p]["count"] += 1
                p.sub_(group["scale"] * p.grad)


def test_an_optimizer_without_a_learning_rate_gets_hivemind_s_initialisation(caplog):
    optimizer = NoLearningRate(params())
    assert not fresh_optimizer_state(optimizer)
    assert not has_state(optimizer)
    assert initialize_state(optimizer) is optimizer
    assert has_state(optimizer), "hivemind's zero step, as before"
    assert "without a learning rate" in caplog.text


class FakePlugin:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def _clip_gradients(self, model, optimizer, clip_val=None, gradient_clip_algorithm=None):
        self.calls.append(optimizer)


class FakeModule:
    def __init__(self) -> None:
        self.trainer = type("T", (), {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "norm"})()
        self.clipped: list[tuple[object, float, str]] = []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clipped.append((optimizer, gradient_clip_val, gradient_clip_algorithm))


def test_clipping_moves_from_every_batch_to_the_inner_step_and_back():
    plugin, module = FakePlugin(), FakeModule()
    inner = torch.optim.SGD(params(), lr=0.1)
    deferred, other = object(), object()
    clipping = ClipAtGlobalStep(plugin, module, lambda optimizer: optimizer is deferred)
    clipping.attach(inner)
    plugin._clip_gradients(None, deferred, 0.5, "norm")
    plugin._clip_gradients(None, other, 0.5, "norm")
    assert plugin.calls == [other], "the hivemind optimizer's per-batch clipping is skipped, others' kept"
    for p in inner.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    inner.step()
    assert module.clipped == [(inner, 0.5, "norm")], "clipped once, before the inner optimizer's step"
    clipping.remove()
    assert "_clip_gradients" not in plugin.__dict__
    inner.step()
    assert len(module.clipped) == 1, "the hook is gone with the strategy"
