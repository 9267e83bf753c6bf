"""The churn schedule (tests/support/churn.py): bounded, never fewer than ``min_live`` up, every kind of leave."""

from __future__ import annotations

import itertools

import pytest

from tests.support.churn import STOPS, schedule


@pytest.mark.parametrize("seed", range(20))
def test_a_schedule_keeps_enough_volunteers_up_and_ends_in_time(seed):
    names = ["p0", "p1", "p2", "p3"]
    leaves = schedule(names, 240.0, seed=seed, up=(40.0, 80.0), down=(10.0, 25.0), min_live=2)
    assert leaves and [x.at for x in leaves] == sorted(x.at for x in leaves)
    assert all(x.at + x.down < 240.0 for x in leaves), "everybody is back before the window ends"
    assert [x.how for x in leaves] == [STOPS[i % len(STOPS)] for i in range(len(leaves))]
    for name in names:  # one volunteer is never away twice at once
        own = [x for x in leaves if x.name == name]
        assert all(a.at + a.down < b.at for a, b in itertools.pairwise(own))
    for t in [x.at + 0.01 for x in leaves]:
        away = sum(1 for x in leaves if x.at <= t < x.at + x.down)
        assert len(names) - away >= 2, (t, leaves)


def test_a_schedule_is_seeded():
    assert schedule(["a", "b", "c"], 100.0, seed=3) == schedule(["a", "b", "c"], 100.0, seed=3)
    assert schedule(["a", "b", "c"], 100.0, seed=3) != schedule(["a", "b", "c"], 100.0, seed=4)
