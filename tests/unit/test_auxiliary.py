"""The host's gradient rounds say it is auxiliary; credit counts only members that do not."""

from __future__ import annotations

from typing import Any

from volunteer.swarm.auxiliary import AUXILIARY_KEY, mark_auxiliary_rounds, trained_together


class _Averager:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def schedule_step(self, scheduled_time: float | None = None, **kwargs: Any) -> str:
        self.calls.append({"scheduled_time": scheduled_time, **kwargs})
        return "control"


def test_every_round_the_host_begins_says_it_is_auxiliary():
    averager = _Averager()
    mark_auxiliary_rounds(averager)
    assert averager.schedule_step(timeout=30.0) == "control"  # hivemind's on-the-spot round sends no gather
    averager.schedule_step(12.5, gather={"epoch": 3}, timeout=30.0)  # a dict of someone else's: kept, key added
    averager.schedule_step(gather=7)  # not a dict: left alone rather than changed in type
    assert averager.calls == [
        {"scheduled_time": None, "timeout": 30.0, "gather": {AUXILIARY_KEY: True}},
        {"scheduled_time": 12.5, "gather": {"epoch": 3, AUXILIARY_KEY: True}, "timeout": 30.0},
        {"scheduled_time": None, "gather": 7},
    ]


def test_a_group_counts_the_members_that_do_not_say_they_are_auxiliary():
    host = {AUXILIARY_KEY: True}
    assert trained_together({"me": None, "other": {"anything": 1}})
    assert trained_together({"me": None, "host": host, "other": [1, 2]})
    assert not trained_together({"me": None, "host": host})
    assert not trained_together({"me": None})
    assert not trained_together({"me": host, "host": host})


def test_garbage_is_not_a_crash():
    assert not trained_together(None)
    assert not trained_together([1, 2, 3])
    assert trained_together({"me": None, "other": {AUXILIARY_KEY: "yes"}})  # only True marks a member auxiliary
    assert trained_together({"me": b"\x00", "other": 3.5})
