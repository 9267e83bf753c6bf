"""Training modes of :class:`volunteer.strategy.HivemindStrategy`: their checks, and credit for local updates.

``sync`` averages gradients at every global step (hivemind's default); ``local`` steps on local gradients and
averages parameters every ``average_state_every`` global steps (hivemind's ``use_local_updates``); ``diloco``
is in :mod:`volunteer.swarm.diloco`. docs/projects.md#training-modes says when to use which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from volunteer.errors import StrategyConfigError

MODES = ("sync", "local", "diloco")


def check_mode(
    mode: str,
    *,
    inner_steps: int,
    outer_lr: float,
    outer_momentum: float,
    powersgd_rank: int | None,
    reuse_grad_buffers: bool,
    offload_optimizer: bool,
    delay_optimizer_step: bool,
    delay_grad_averaging: bool,
    scheduler_fn: bool,
) -> None:
    """Refuse a mode with settings it cannot use, with a hint.

    Raises:
        StrategyConfigError: an unknown mode, a bad diloco setting, or an option the mode cannot combine with.
    """
    if mode not in MODES:
        raise StrategyConfigError(
            f"unknown training mode {mode!r}", f"pass mode= one of {', '.join(repr(m) for m in MODES)}"
        )
    if powersgd_rank is not None:
        if isinstance(powersgd_rank, bool) or not isinstance(powersgd_rank, int) or powersgd_rank < 1:
            raise StrategyConfigError(
                f"powersgd_rank must be a positive integer, got {powersgd_rank!r}", "pass e.g. powersgd_rank=4"
            )
        if mode != "sync":
            raise StrategyConfigError(
                f"PowerSGD compresses gradient averaging, which mode {mode!r} does not do",
                "use mode='sync' with powersgd_rank, or grad_compression (diloco) / state_averaging_compression "
                "(local) instead",
            )
    if mode == "sync":
        return
    conflicts = [
        name
        for name, value in (
            ("reuse_grad_buffers", reuse_grad_buffers),
            ("delay_grad_averaging", delay_grad_averaging),
            ("delay_optimizer_step", delay_optimizer_step and mode == "diloco"),
            ("offload_optimizer", offload_optimizer and mode == "diloco"),
            ("scheduler_fn", scheduler_fn and mode == "diloco"),
        )
        if value
    ]
    if conflicts:
        raise StrategyConfigError(
            f"{conflicts[0]} cannot be used with mode {mode!r}",
            f"remove {conflicts[0]}: "
            + (
                "diloco keeps the global copy offloaded itself and steps the module's own optimizer (and its "
                "schedulers from configure_optimizers) at every batch"
                if mode == "diloco"
                else "with local updates every step applies its own gradients, nothing is accumulated or averaged"
            ),
        )
    if mode == "diloco":
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise StrategyConfigError(
                f"inner_steps must be a positive integer, got {inner_steps!r}", "pass e.g. inner_steps=100"
            )
        if not outer_lr > 0:
            raise StrategyConfigError(f"outer_lr must be positive, got {outer_lr!r}", "pass e.g. outer_lr=0.7")
        if not 0 <= outer_momentum < 1:
            raise StrategyConfigError(
                f"outer_momentum must be in [0, 1), got {outer_momentum!r}", "pass e.g. outer_momentum=0.9"
            )


def powersgd_averager(rank: int) -> Callable[..., Any]:
    """hivemind's ``grad_averager_factory`` for PowerSGD at ``rank``: every peer joining the gradient rounds of a
    PowerSGD project (volunteers and the author's host) must average with it."""
    from functools import partial

    from hivemind.optim.power_sgd_averager import PowerSGDGradientAverager

    return partial(PowerSGDGradientAverager, averager_rank=rank)


def watch_state_rounds(opt: Any, record: Callable[[int, Any], None]) -> None:
    """Report each parameter-averaging round of a local-updates optimizer as ``record(epoch, control)``.

    hivemind begins the round inside its background executor, out of reach; this begins it in the caller's
    thread instead (exactly as hivemind would: same ``gather`` and timeout), so the strategy learns, for the
    global step that ended at ``epoch``, whether the round was joined by another peer, and credits the samples
    whose parameter change went into it.
    """
    averager = opt.state_averager
    step = averager.step

    def watched(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("averaging_round"):
            control = kwargs.get("averaging_control")
            if control is None or control.triggered or control.done():
                epoch = averager.local_epoch + (1 if kwargs.get("increment_epoch") else 0)
                timeout = (kwargs.get("averaging_opts") or {}).get("timeout")
                control = averager.schedule_step(gather=epoch, timeout=timeout)
                kwargs["averaging_control"] = control
            record(averager.local_epoch, control)
        return step(*args, **kwargs)

    averager.step = watched
