"""Matchmaking with the rate limit, on real hivemind objects: a real DHT on 127.0.0.1 and a real averager."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from types import SimpleNamespace

import hivemind
import pytest
import torch
from hivemind.averaging.key_manager import GroupKeyManager
from hivemind.averaging.matchmaking import PotentialLeaders
from hivemind.averaging.partition import AllreduceException
from hivemind.p2p import PeerID
from hivemind.utils.timed_storage import get_dht_time

from volunteer.swarm import hivemind_patches
from volunteer.swarm.hivemind_patches import apply_hivemind_patches, is_patched, lookup_interval

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
MATCHMAKING_TIME = 1.0


@pytest.fixture
def dht():
    dht = hivemind.DHT(host_maddrs=[LOOPBACK], start=True)
    yield dht
    dht.shutdown()


@pytest.fixture
def lookups(monkeypatch):
    """Counts matchmaking lookups in this process and in the averagers it forks."""
    counter = multiprocessing.get_context("fork").Value("L", 0)
    original = GroupKeyManager.get_averagers

    async def get_averagers(self, group_key, only_active):
        with counter.get_lock():
            counter.value += 1
        return await original(self, group_key, only_active)

    monkeypatch.setattr(GroupKeyManager, "get_averagers", get_averagers)
    return counter


def test_a_lone_averager_looks_its_group_up_at_most_once_an_interval(dht, lookups):
    assert apply_hivemind_patches() and is_patched()
    averager = hivemind.averaging.DecentralizedAverager(
        [torch.zeros(16)],
        dht=dht,
        prefix="rate_test",
        target_group_size=None,
        min_group_size=2,
        min_matchmaking_time=MATCHMAKING_TIME,
        request_timeout=0.5,
        start=True,
    )
    try:
        started = time.monotonic()
        # nobody else looks for a group: hivemind as released would look the DHT up in a busy loop
        with pytest.raises(AllreduceException, match="could not find a group"):
            averager.step(timeout=2.5, allow_retries=True)
        elapsed = time.monotonic() - started
    finally:
        averager.shutdown()
    interval = lookup_interval(MATCHMAKING_TIME)
    # each matchmaking round (one per min_matchmaking_time) starts with a lookup of its own
    bound = elapsed / interval + elapsed / MATCHMAKING_TIME + 2
    assert 1 <= lookups.value <= bound, f"{lookups.value} lookups in {elapsed:.1f} s; at most {bound:.0f} allowed"


def test_a_peer_that_declares_itself_is_found_within_an_interval(dht, lookups, monkeypatch):
    monkeypatch.setattr(
        PotentialLeaders, "_update_queue_periodically", hivemind_patches.HIVEMIND_UPDATE_QUEUE_PERIODICALLY
    )
    assert apply_hivemind_patches()
    interval = lookup_interval(MATCHMAKING_TIME)
    other = PeerID.from_base58("QmTPAgyFyHNAhtTpB2yj7PbSgD8YUojZSW6e3QZzA5RKMh")

    async def search() -> tuple[PeerID, float, int]:
        key_manager = GroupKeyManager(dht, "rate_test", initial_group_bits="", target_group_size=None)
        leaders = PotentialLeaders(dht.peer_id, MATCHMAKING_TIME, target_group_size=None)
        step = SimpleNamespace(deadline=get_dht_time() + 10)  # all that a search without declaring reads
        async with leaders.begin_search(step, key_manager, declare=False):
            next_leader = asyncio.create_task(leaders.pop_next_leader())
            await asyncio.sleep(1.0)
            assert not next_leader.done()
            lookups_alone = lookups.value
            declared = time.monotonic()
            expiration = get_dht_time() + MATCHMAKING_TIME
            assert await key_manager.declare_averager(key_manager.current_key, other, expiration)
            leader = await asyncio.wait_for(next_leader, timeout=MATCHMAKING_TIME)
            return leader, time.monotonic() - declared, lookups_alone

    leader, found_after, lookups_alone = asyncio.run(search())
    assert leader == other
    assert found_after < interval + 0.3, f"found {found_after:.2f} s after it declared itself"
    assert 1 <= lookups_alone <= 1.0 / interval + 2
