"""Who in a finished averaging round trained: the author's host says it did not, so a round with it alone earns
no credit.

``volunteer host`` joins the swarm's gradient rounds as an auxiliary hivemind peer: it reduces a share of the
tensors and contributes none. hivemind tells the members of a group each other's mode (``AveragingMode.AUX``)
but returns only their ``gather`` data to whoever began the round (``StepControl.result()``: peer id -> data).
So the host adds :data:`AUXILIARY_KEY` to the ``gather`` data of every gradient round it begins
(:func:`mark_auxiliary_rounds`), and the strategy credits a round only if another member did not
(:func:`trained_together`).

When does a volunteer average with nobody but the host? An auxiliary peer publishes no progress record
(hivemind's tracker reports only a peer that accumulated samples), so a lone volunteer's tracker does not count
the host and begins no round at all. But a volunteer that left without saying goodbye (killed, its laptop
closed, its network gone) leaves a record that both the lone volunteer and the host count for up to a minute
(hivemind's ``metadata_expiration``); meanwhile every global step of the lone volunteer ended in a group with the
host alone, after the whole matchmaking window, and was credited as swarm work.

Nothing here is a proof: a peer can put anything in its ``gather`` data (issue 22 leaves lying peers to the
Byzantine work). Data that is not ours to read counts as a peer that trained, as every member did before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

AUXILIARY_KEY = "volunteer_auxiliary"
"""The key an auxiliary peer (the author's host) sets to True in its gradient rounds' ``gather`` data (a dict)."""


def mark_auxiliary_rounds(averager: Any) -> None:
    """Make every round ``averager`` (the host's gradient averager) begins say, in its ``gather`` data, that this
    peer trains nothing.

    hivemind begins a gradient round through ``GradientAverager.schedule_step``, pre-scheduled or on the spot
    (``GradientAverager.step`` calls it too), so this wraps that one method of this one averager.
    """
    schedule: Callable[..., Any] = averager.schedule_step

    def schedule_step(*args: Any, **kwargs: Any) -> Any:
        gather = kwargs.get("gather")
        if gather is None:
            kwargs["gather"] = {AUXILIARY_KEY: True}
        elif isinstance(gather, dict):
            kwargs["gather"] = {**gather, AUXILIARY_KEY: True}
        return schedule(*args, **kwargs)

    averager.schedule_step = schedule_step


def is_auxiliary(data: object) -> bool:
    """Whether one member's ``gather`` data says it is an auxiliary peer."""
    return isinstance(data, Mapping) and data.get(AUXILIARY_KEY) is True


def trained_together(gathered: object) -> bool:
    """Whether a finished round's group (``StepControl.result()``: peer id -> ``gather`` data) had a member that
    trained besides the one asking: at least two members that do not say they are auxiliary."""
    if not isinstance(gathered, Mapping):
        return False
    return sum(not is_auxiliary(data) for data in gathered.values()) >= 2
