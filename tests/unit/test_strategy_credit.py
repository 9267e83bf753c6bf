"""Credit for a global step follows the outcome of its gradient-averaging round, not the peer count."""

from __future__ import annotations

from hivemind.utils.mpfuture import MPFuture

from volunteer.strategy import _averaged_with_others
from volunteer.swarm.auxiliary import AUXILIARY_KEY
from volunteer.swarm.hivemind_patches import EXPECTED_GROUP_KEY


def _round(result=None, *, error: BaseException | None = None, cancel: bool = False, done: bool = True) -> MPFuture:
    future = MPFuture()
    if cancel:
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    elif done:
        future.set_result(result)
    return future


def test_a_round_with_another_peer_is_swarm_work():
    assert _averaged_with_others(_round({"me": 1, "other": 2})) is True


def test_a_round_alone_failed_or_cancelled_is_local_only():
    assert _averaged_with_others(None) is False  # no round at all: the step was taken alone
    assert _averaged_with_others(_round({"me": 1})) is False
    assert _averaged_with_others(_round(error=TimeoutError("could not find a group"))) is False
    assert _averaged_with_others(_round(cancel=True)) is False


def test_a_round_still_running_is_not_judged_yet():
    assert _averaged_with_others(_round(done=False)) is None


def test_a_round_with_nobody_but_the_host_is_local_only():
    """The author's host is an auxiliary peer: it marks its gather data, and a group of it and us trained nobody
    else (a group of two, credited as swarm work before)."""
    host = {AUXILIARY_KEY: True}
    assert _averaged_with_others(_round({"me": {EXPECTED_GROUP_KEY: 2}, "host": host})) is False
    assert _averaged_with_others(_round({"me": None, "host": host})) is False  # a round begun on the spot
    assert _averaged_with_others(_round({"me": None, "host": host, "other": None})) is True
