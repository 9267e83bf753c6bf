"""What makes a synchronous global step the step large-batch training takes, where hivemind alone does not.

A global step of the ``sync`` mode stands for one optimizer step on the mean gradient of every sample the swarm
accumulated: what ``Trainer(accumulate_grad_batches=K)`` computes on one machine. Three things kept it from being
that, each measured against plain Lightning by ``tests/integration/test_golden_one_peer.py`` (issue 22):

- **The step on the last micro-batch** (fixed in :mod:`volunteer.swarm.hivemind_patches`).
- **A step hivemind takes before training.** ``TrainingStateAverager`` gives an optimizer without state its
  statistics by running one step on zero gradients (``initialize_optimizer_state_``: every parameter needs its
  state tensors before peers can average or share them). That step counts: Adam's bias correction then runs one
  step ahead (its first update is 0.74x the large-batch one, 1 - 0.9^2 against 1 - 0.9 in the denominator), and
  decoupled weight decay (AdamW) or SGD's weight decay moves the parameters before the first batch.
  :func:`fresh_optimizer_state` gives the optimizer its state with that step at a learning rate and weight decay
  of 0, then sets every step count back to 0: the state of an optimizer that has taken no step, with the tensors
  hivemind needs.
- **Clipping per micro-batch.** Lightning clips gradients (``configure_gradient_clipping``) after every
  ``optimizer.step`` call's closure; under hivemind that is every micro-batch, so each batch's gradient was
  clipped on its own (or, with ``reuse_grad_buffers``, the running sum again and again), where large-batch
  training clips the mean once. :class:`ClipAtGlobalStep` skips Lightning's per-batch call for the hivemind
  optimizer and calls the module's ``configure_gradient_clipping`` on hivemind's inner optimizer right before its
  step, on the averaged gradients (the swarm's mean, or this peer's own mean when it steps alone).

- **A global step lost to a late state round.** With ``delay_state_averaging`` (the default) a parameter-averaging
  round runs in the background after a global step, on a copy of the parameters, and its result is copied over
  the parameters when it has ended. A round still running at the next global step made hivemind skip that
  step's own state round and take the optimizer step first; the late result (the average of the parameters
  *before* that step) was then copied over them: the step was undone on every peer (seen by the two-peer golden
  test, ``tests/integration/test_strategy_golden_swarm.py``, as every batch of the next step computed on the
  parameters of the step before). :func:`keep_steps_across_state_rounds` turns on hivemind's delta rule for these
  rounds, as hivemind does for local updates: the parameters move by ``average - what was sent``, and an
  optimizer step waits for a pending round's result before it runs. Peers in step send the same parameters, so
  the move is a few float32 ulps. With ``offload_optimizer`` hivemind averages the optimizer's own tensors in
  place by that same difference, so nothing changes there.

The ``local`` and ``diloco`` modes step the project's optimizer at every batch, so per-batch clipping is right
there, and DiLoCo's outer SGD (zero-step initialised by hivemind) is exact as it is: neither is changed here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from hivemind.optim.state_averager import initialize_optimizer_state_

log = logging.getLogger(__name__)

_ZEROED_FOR_INIT = ("lr", "weight_decay")
"""Group settings the initialising step runs at 0, so that it moves no parameter and decays nothing."""


def has_state(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer holds any state tensor (hivemind's own test for "needs initialising")."""
    return any(isinstance(value, torch.Tensor) for state in optimizer.state.values() for value in state.values())


def fresh_optimizer_state(optimizer: torch.optim.Optimizer) -> bool:
    """Create every parameter's optimizer state as a step on zero gradients would, counting no step.

    Returns:
        True when the optimizer now has its state and no parameter moved (also when it had state already,
        e.g. from a checkpoint); False for an optimizer this cannot do without moving parameters (a group
        without ``lr``), which hivemind then initialises its own way.
    """
    if has_state(optimizer):
        return True
    if not all("lr" in group for group in optimizer.param_groups):
        return False
    saved = [{key: group[key] for key in _ZEROED_FOR_INIT if key in group} for group in optimizer.param_groups]
    try:
        for group, settings in zip(optimizer.param_groups, saved, strict=True):
            for key in settings:
                group[key] = 0.0
        initialize_optimizer_state_(optimizer)
    finally:
        for group, settings in zip(optimizer.param_groups, saved, strict=True):
            group.update(settings)
    for state in optimizer.state.values():
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            step.zero_()
        elif isinstance(step, (int, float)):
            state["step"] = type(step)(0)
    return True


def initialize_state(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Give ``optimizer`` its state before hivemind needs it: :func:`fresh_optimizer_state`, or else (with a
    warning) hivemind's own step on zero gradients. Pass ``initialize_optimizer=False`` to hivemind after it."""
    if not fresh_optimizer_state(optimizer):
        log.warning(
            "%s has a parameter group without a learning rate: its state is initialised with a step on zero "
            "gradients, which optimizers with a step count or weight decay count as a step",
            type(optimizer).__name__,
        )
        initialize_optimizer_state_(optimizer)
    return optimizer


class ClipAtGlobalStep:
    """Gradient clipping on the averaged gradients, once per global step, instead of once per micro-batch.

    Args:
        plugin: The Trainer's precision plugin (whose ``_clip_gradients`` Lightning calls after every closure).
        module: The LightningModule (its ``configure_gradient_clipping`` hook does the clipping).
        is_deferred: Tells the optimizers whose per-batch clipping moves to the global step (the hivemind one).
    """

    def __init__(self, plugin: Any, module: Any, is_deferred: Callable[[Any], bool]) -> None:
        self._plugin = plugin
        self._module = module
        self._is_deferred = is_deferred
        self._handle: Any = None
        self._original = plugin.__dict__.get("_clip_gradients")
        self._lightning_clip = plugin._clip_gradients

        def per_batch(model: Any, optimizer: Any, *args: Any, **kwargs: Any) -> None:
            if self._is_deferred(optimizer):
                return  # clipped at the global step, on the mean gradient
            self._lightning_clip(model, optimizer, *args, **kwargs)

        plugin._clip_gradients = per_batch

    def attach(self, inner_optimizer: torch.optim.Optimizer) -> None:
        """Clip before every step of hivemind's inner optimizer (the global step's optimizer step)."""
        trainer = self._module.trainer

        def clip(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            # the hook itself, not Lightning's hook-calling machinery: with delay_optimizer_step this runs in
            # hivemind's background thread, while the training loop goes on
            self._module.configure_gradient_clipping(
                optimizer,
                gradient_clip_val=trainer.gradient_clip_val,
                gradient_clip_algorithm=trainer.gradient_clip_algorithm,
            )

        self._handle = inner_optimizer.register_step_pre_hook(clip)

    def remove(self) -> None:
        """Leave the plugin and the optimizer as they were (the optimizer may train again without hivemind)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._original is not None:
            self._plugin._clip_gradients = self._original
        else:
            self._plugin.__dict__.pop("_clip_gradients", None)


def keep_steps_across_state_rounds(state_averager: Any) -> bool:
    """Apply hivemind's background state rounds by the delta rule, so that they undo no optimizer step.

    Returns:
        Whether it was needed and done: False where the averager averages the optimizer's own tensors in place
        (``offload_optimizer``) or is already on the delta rule (``local`` mode), or lacks the setting.
    """
    if getattr(state_averager, "reuse_tensors", True) or getattr(state_averager, "delta_rule_averaging", True):
        return False
    state_averager.delta_rule_averaging = True
    return True
