"""An averaging round assembles as soon as every peer it expects has joined, not at the end of its window.

hivemind 1.1.12's leader assembles its group at the expiration it declared, never before that moment unless
``target_group_size`` peers joined (``None`` in ``hivemind.Optimizer``): with global steps shorter than the
matchmaking window every global step of two peers waited for the rest of it (issue 14). Peers now send the
number of training peers they see in the round's ``gather`` data, and ``apply_group_patches`` lets a leader
assemble once that many have joined.

Real averagers, each in its own process with its own DHT on 127.0.0.1. The windows are long (20 s) and the
assertions compare moments, not durations: hivemind as released cannot finish a round before the earliest
``scheduled_time`` of its peers (a leader declares itself until at least its own), so these fail on the old
code whatever the machine's load; a peer that is expected but never joins falls back to that window.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import pytest
import torch

pytestmark = pytest.mark.integration

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
WINDOW = 20.0
_prefixes = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def group_patch() -> None:
    from volunteer.swarm.hivemind_patches import apply_group_patches, apply_hivemind_patches

    # before the averagers fork, as the strategy does
    assert apply_hivemind_patches() and apply_group_patches()


@contextlib.contextmanager
def averagers(count: int, window: float = WINDOW) -> Iterator[list]:
    import hivemind

    dhts = [hivemind.DHT(host_maddrs=[LOOPBACK], start=True)]
    maddrs = [str(a) for a in dhts[0].get_visible_maddrs()]
    dhts += [hivemind.DHT(host_maddrs=[LOOPBACK], initial_peers=maddrs, start=True) for _ in range(count - 1)]
    prefix = f"assembly{next(_prefixes)}"
    started = []
    try:
        for index, dht in enumerate(dhts):
            started.append(
                hivemind.DecentralizedAverager(
                    [torch.full((16,), float(index))],
                    dht=dht,
                    prefix=prefix,
                    min_matchmaking_time=window,
                    request_timeout=1.0,
                    target_group_size=None,
                    min_group_size=2,
                    start=True,
                )
            )
        yield started
    finally:
        for averager in started:
            averager.shutdown()
        for dht in dhts:
            dht.shutdown()


def expecting(count: int | None) -> dict | None:
    from volunteer.swarm.hivemind_patches import EXPECTED_GROUP_KEY

    return None if count is None else {EXPECTED_GROUP_KEY: count}


def run_round(group: list, counts: list[int | None]) -> tuple[list[dict], float, float]:
    """Each averager steps with its count; returns what each gathered, the earliest scheduled time and the
    moment the last one finished (DHT time: this machine's clock)."""
    from hivemind.utils import get_dht_time

    controls = [
        averager.step(gather=expecting(count), wait=False, timeout=3 * WINDOW)
        for averager, count in zip(group, counts, strict=True)
    ]
    gathered = [control.result(timeout=3 * WINDOW + 30) for control in controls]
    finished = get_dht_time()
    return gathered, min(control.scheduled_time for control in controls), finished


def test_two_peers_that_expect_each_other_assemble_before_the_window_ends():
    with averagers(2) as group:
        for _ in range(2):  # and again: the second round finds the group key and the declarations fresh
            gathered, earliest_scheduled, finished = run_round(group, [2, 2])
            assert all(len(peers) == 2 for peers in gathered), gathered
            assert finished < earliest_scheduled, "the round waited for its whole matchmaking window"
        tensors = [averager.get_tensors().__enter__()[0].clone() for averager in group]
        torch.testing.assert_close(tensors[0], tensors[1])


def test_three_peers_assemble_together_once_all_three_joined():
    with averagers(3) as group:
        gathered, earliest_scheduled, finished = run_round(group, [3, 3, 3])
        assert [len(peers) for peers in gathered] == [3, 3, 3], "one group of all three, not two and one"
        assert finished < earliest_scheduled, "the round waited for its whole matchmaking window"


def test_a_peer_expected_but_absent_leaves_the_round_to_its_window():
    """Three expected, two show up: they average together at the end of the window, as hivemind does."""
    window = 6.0
    with averagers(3, window) as group:
        gathered, earliest_scheduled, finished = run_round(group[:2], [3, 3])
        assert [len(peers) for peers in gathered] == [2, 2]
        assert finished >= earliest_scheduled, "assembled early although a peer it expected never joined"


def test_peers_that_send_no_count_are_carried_along_but_not_counted():
    """A peer running hivemind as released (or an auxiliary peer) sends no count: no early assembly with it."""
    window = 6.0
    with averagers(2, window) as group:
        gathered, earliest_scheduled, finished = run_round(group, [2, None])
        assert [len(peers) for peers in gathered] == [2, 2]
        assert finished >= earliest_scheduled
