"""DiLoCo on hivemind: many local steps of the project's optimizer, then one outer step on the averaged change.

Every volunteer keeps two copies of the parameters: the model it trains (the *local* copy, moved by the
project's own optimizer at every batch, the *inner* steps) and the swarm's *global* copy, which hivemind keeps
offloaded in host memory. Once every peer has taken ``inner_steps`` inner steps, peers average their
*pseudo-gradient* (global copy minus local copy, weighted by the samples behind it) with hivemind's gradient
averager, and an outer SGD with Nesterov momentum steps the global copy along it; the model then restarts from
the new global copy. Peers exchange one parameter-sized tensor per outer step instead of one per global step of
synchronous training (Douillard et al., 2023, "DiLoCo"; OpenDiLoCo built the same on hivemind).

The design reuses hivemind's synchronous machinery unchanged where it can: the global copy is hivemind's
offloaded parameters (so ``load_state_from_peers`` hands a newcomer the global copy and the outer momentum),
the pseudo-gradient goes through hivemind's ``GradientAverager`` (pre-scheduled matchmaking, compression, the
fallback to the local pseudo-gradient when nobody else is there), and the outer step is hivemind's own
optimizer step on the offloaded parameters. What changes is a peer's round: it is counted per peer
(``inner_steps`` x the project's batch size), and the swarm's progress is the *slowest* peer's, so faster peers
keep taking inner steps until every peer has taken its share.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import hivemind
import numpy as np
import torch
from hivemind.optim.grad_averager import GradientAverager
from hivemind.optim.progress_tracker import GlobalTrainingProgress, LocalTrainingProgress, ProgressTracker
from hivemind.utils.timed_storage import get_dht_time

log = logging.getLogger(__name__)

NEVER = 2**31 - 1
"""``average_state_every`` for DiLoCo: the global copy is shared through the outer step, never averaged."""


class PseudoGradientAverager(GradientAverager):
    """Averages ``global copy - local copy`` (the pseudo-gradient) instead of accumulated gradients.

    Its averaged tensors are the gradient buffers of the offloaded (global) parameters, as hivemind arranges for
    an offloaded optimizer, so the outer step reads the averaged pseudo-gradient where it expects gradients.
    """

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        *,
        global_params: Callable[[], list[torch.Tensor]],
        **kwargs: Any,
    ) -> None:
        self._global_params = global_params
        super().__init__(parameters, **kwargs)

    @torch.no_grad()
    def load_accumulators_into_averager_(self) -> None:
        with self.get_tensors() as averaged:
            for local, global_, out in zip(self.parameters, self._global_params(), averaged, strict=True):
                torch.sub(global_, local.detach().to(global_.device), out=out)

    def count_samples(self, batch_size: int) -> None:
        """Count an inner step's samples: they weigh this peer's pseudo-gradient in the average."""
        self.local_samples_accumulated += batch_size
        self.local_times_accumulated = 1


class SlowestPeerTracker(ProgressTracker):
    """hivemind's progress tracker, with a round per peer: the swarm is as far as its slowest peer.

    ``target_batch_size`` is one peer's round (``inner_steps`` x batch size). The swarm's ``samples_accumulated``
    is the smallest count among the peers at the current global step, and its ETA the latest of their
    estimates; so every peer becomes ready to step when all of them have taken their inner steps (or a silent
    peer's estimate has passed), and hivemind's pre-scheduled averaging fits that moment.
    """

    def _parse_swarm_progress_data(self, metadata: Any) -> GlobalTrainingProgress:
        progress = super()._parse_swarm_progress_data(metadata)
        if not isinstance(metadata, dict) or not metadata:
            return progress
        now = get_dht_time()
        records = {key: record.value for key, record in metadata.items() if record.value is not None}
        if self._local_public_key in records:  # this peer's own count, exactly (its record may lag behind)
            records[self._local_public_key] = self.local_progress.dict()
        peers = [LocalTrainingProgress.parse_obj(value) for value in records.values()]
        current = [peer for peer in peers if peer.epoch == progress.epoch]
        if not current:
            return progress
        eps = self.performance_ema.eps
        slowest = min(peer.samples_accumulated for peer in current)
        seconds_left = max(
            max(
                0.0,
                self.target_batch_size - peer.samples_accumulated - max(0.0, now - peer.time) * peer.samples_per_second,
            )
            / max(peer.samples_per_second, eps)
            for peer in current
        )
        refresh = float(np.clip(seconds_left, self.min_refresh_period, self.max_refresh_period))
        return dataclasses.replace(
            progress,
            samples_accumulated=slowest,
            eta_next_epoch=now + seconds_left,
            next_fetch_time=now + refresh,
        )


class DiLoCoOptimizer(hivemind.Optimizer):
    """A ``hivemind.Optimizer`` that takes inner steps with ``inner_optimizer`` and outer steps with Nesterov SGD.

    Args:
        inner_optimizer: The project's optimizer over the model's parameters; stepped at every batch.
        inner_steps: Inner steps of ``batch_size_per_step`` samples each peer takes per outer step.
        outer_lr: Learning rate of the outer SGD.
        outer_momentum: Its Nesterov momentum (0 turns momentum off).
        average_state_every: Also average the global copy with peers every this many outer steps, in the
            background (default: never). Peers that stepped through a failed round keep a global copy of their
            own; this brings them back together, at the cost of one more parameter-sized exchange.
        **kwargs: ``hivemind.Optimizer`` arguments (``dht``, ``run_id``, ``batch_size_per_step``, timeouts,
            ``grad_compression`` for the pseudo-gradient, ...). ``target_batch_size`` is set from ``inner_steps``.
    """

    def __init__(
        self,
        *,
        inner_optimizer: torch.optim.Optimizer,
        inner_steps: int,
        outer_lr: float,
        outer_momentum: float,
        batch_size_per_step: int,
        average_state_every: int = NEVER,
        **kwargs: Any,
    ) -> None:
        self.inner_optimizer = inner_optimizer
        self.inner_steps = inner_steps
        self._round_samples = inner_steps * batch_size_per_step
        self._skip_rounds = 1
        self._rounds = 0
        self._skipping = False
        self._lock = threading.Lock()
        # bare groups: the outer SGD must not inherit the inner optimizer's lr, betas or weight decay
        params = [{"params": list(group["params"])} for group in inner_optimizer.param_groups]

        def outer(groups: Any) -> torch.optim.Optimizer:
            return torch.optim.SGD(groups, lr=outer_lr, momentum=outer_momentum, nesterov=outer_momentum > 0)

        super().__init__(
            optimizer=outer,
            params=params,
            target_batch_size=self._round_samples,
            batch_size_per_step=batch_size_per_step,
            offload_optimizer=True,
            use_local_updates=False,
            reuse_grad_buffers=False,
            delay_optimizer_step=False,
            delay_grad_averaging=False,
            average_state_every=average_state_every,
            grad_averager_factory=self._pseudo_gradient_averager,
            **kwargs,
        )

    def _pseudo_gradient_averager(self, parameters: Iterable[torch.nn.Parameter], **kwargs: Any) -> GradientAverager:
        return PseudoGradientAverager(parameters, global_params=self._global_params, **kwargs)

    def _global_params(self) -> list[torch.Tensor]:
        return [param for group in self.state_averager.optimizer.param_groups for param in group["params"]]

    def _make_progress_tracker(self, target_batch_size: int, **kwargs: Any) -> ProgressTracker:
        return SlowestPeerTracker(
            dht=self.dht,
            prefix=self.run_id,
            target_batch_size=target_batch_size,
            client_mode=self.client_mode,
            status_loglevel=self.status_loglevel,
            start=True,
            **kwargs,
        )

    @property
    def param_groups(self) -> Any:
        """The inner optimizer's groups: what Lightning unscales, clips and logs the learning rate of."""
        return self.inner_optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner_optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def communication_interval(self) -> int:
        """This peer averages in one of every this many outer steps (1: every one)."""
        return self._skip_rounds

    def set_communication_interval(self, every: int) -> None:
        """Average the pseudo-gradient in only one of every ``every`` outer steps.

        In the others this peer sends nothing: it keeps taking inner steps until the swarm has stepped, then
        downloads the new global copy (``load_state_from_peers``); those rounds' samples are local-only.
        """
        if every < 1:
            raise ValueError(f"the communication interval must be at least 1, got {every}")
        self._skip_rounds = every

    def step(
        self,
        closure: Callable[[], torch.Tensor] | None = None,
        batch_size: int | None = None,
        grad_scaler: Any = None,
    ) -> Any:
        if grad_scaler is not None:
            raise ValueError("DiLoCoOptimizer takes no hivemind.GradScaler: unscale before step (Lightning does)")
        batch_size = batch_size if batch_size is not None else self.batch_size_per_step
        assert batch_size is not None
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        if self._skipping:
            return self._step_skipped_round(loss, batch_size)
        if self._should_load_state_from_peers():
            log.debug("peer is out of sync: loading the global copy from peers")
            self.load_state_from_peers()
            return loss

        self._inner_step(batch_size)
        self._maybe_schedule_gradient_averaging()
        if self.tracker.ready_to_update_epoch:
            self._rounds += 1
            if (
                self._skip_rounds > 1
                and self._rounds % self._skip_rounds != 0
                and self.tracker.global_progress.num_peers > 1
            ):
                self._skipping = True
                # hivemind's StepControl; hivemind.Optimizer assigns it untyped in a method mypy cannot infer
                scheduled: Any = self.scheduled_grads  # type: ignore[has-type]
                if scheduled is not None and not scheduled.done():
                    scheduled.cancel()
                self.scheduled_grads = None
                return loss
            self._update_global_epoch(None)
        return loss

    def _step_skipped_round(self, loss: Any, batch_size: int) -> Any:
        """A round this peer sits out: inner steps until the swarm has stepped, then the new global copy."""
        if self.tracker.global_epoch > self.local_epoch:
            self._skipping = False
            self.load_state_from_peers()
            return loss
        self._inner_step(batch_size)
        return loss

    def _inner_step(self, batch_size: int) -> None:
        """One step of the project's optimizer on this peer's copy, its samples counted and reported."""
        self.inner_optimizer.step()
        grad_averager = self.grad_averager
        assert isinstance(grad_averager, PseudoGradientAverager)
        grad_averager.count_samples(batch_size)
        self.tracker.report_local_progress(self.local_epoch, grad_averager.local_samples_accumulated)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # the outer optimizer's, with local_epoch
        return {**state, "inner": self.inner_optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        inner = state.pop("inner", None)
        if inner is not None:
            self.inner_optimizer.load_state_dict(inner)
        super().load_state_dict(state)
