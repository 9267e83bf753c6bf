"""The swarm keeper with real hivemind DHTs on 127.0.0.1: forgotten peers are found again, isolation is seen."""

from __future__ import annotations

import functools

import hivemind
import pytest

from volunteer.swarm.keeper import SwarmKeeper

pytestmark = pytest.mark.integration

LOCAL = ["/ip4/127.0.0.1/tcp/0"]


async def _forget_everyone(dht, node) -> int:
    """What hivemind does to a peer after one failed request to it: drop it from the routing table."""
    table = node.protocol.routing_table
    for node_id in list(table.uid_to_peer_id):
        del table[node_id]
    return len(table.uid_to_peer_id)


async def _table_size(dht, node) -> int:
    return len(node.protocol.routing_table.uid_to_peer_id)


@pytest.fixture
def two_dhts():
    a = hivemind.DHT(host_maddrs=LOCAL, start=True)
    b = hivemind.DHT(initial_peers=[str(m) for m in a.get_visible_maddrs()], host_maddrs=LOCAL, start=True)
    try:
        yield a, b
    finally:
        b.shutdown()
        a.shutdown()


def test_peers_that_forgot_each_other_meet_again(two_dhts):
    a, b = two_dhts
    events: list[str] = []
    keeper = SwarmKeeper(b, interval=1.0, on_event=lambda kind, message: events.append(kind))
    assert keeper.check().routing_peers == 1  # b has seen a: remembered from now on

    # both sides drop each other, as after a partition; without the keeper nothing would ever re-add them
    assert a.run_coroutine(_forget_everyone) == 0 and b.run_coroutine(_forget_everyone) == 0
    state = keeper.check()
    assert state.routing_peers == 1 and state.rejoined == 1 and not state.isolated
    assert b.run_coroutine(_table_size) == 1
    assert a.run_coroutine(_table_size) == 1, "a pinged by b adds b back to its own table"
    assert events == []  # never isolated: found again within the same check


def test_isolation_is_reported_and_held_then_released(two_dhts):
    a, b = two_dhts
    events: list[str] = []
    keeper = SwarmKeeper(b, interval=0.5, isolation_hold=3600, others_active=lambda: True)
    keeper.on_event = lambda kind, message: events.append(kind)
    keeper.check()
    a.shutdown()
    b.run_coroutine(_forget_everyone)
    state = keeper.check()
    assert state.isolated and state.holding and state.known_peers == 1
    assert events == ["reconnecting"] and "reconnecting" in state.reason
    keeper.isolation_hold = 0  # after isolation_hold the peer gives up waiting and trains alone (still dialling)
    state = keeper.check()
    assert state.isolated and not state.holding and "training alone" in state.reason
    assert events == ["reconnecting", "alone"]


def test_peers_that_said_goodbye_are_not_waited_for(two_dhts):
    a, b = two_dhts
    keeper = SwarmKeeper(b, interval=0.5, isolation_hold=3600, others_active=lambda: False)
    keeper.check()
    a.shutdown()
    b.run_coroutine(_forget_everyone)
    state = keeper.check()
    assert state.isolated and not state.holding


def test_initial_peers_count_as_known(two_dhts):
    a, b = two_dhts
    address = str(a.get_visible_maddrs()[0])
    keeper = SwarmKeeper(b, initial_peers=[address], interval=1.0)
    assert keeper.state.known_peers == 1
    b.run_coroutine(_forget_everyone)
    a.run_coroutine(_forget_everyone)
    assert keeper.check().routing_peers == 1  # dialled at the initial peer's address without ever probing


async def _forget(peer_b58: str, dht, node) -> bool:
    """Drop one peer from the routing table, as one timed-out request to it does."""
    from hivemind.p2p import PeerID

    table = node.protocol.routing_table
    node_id = table.get(peer_id=PeerID.from_base58(peer_b58))
    if node_id is not None:
        del table[node_id]
    return PeerID.from_base58(peer_b58) not in table.peer_id_to_uid


async def _disconnect(peer_b58: str, dht, node) -> None:
    from hivemind.p2p import PeerID

    await node.p2p._client.disconnect(PeerID.from_base58(peer_b58))


@pytest.fixture
def bootstrap_and_two():
    """A standalone bootstrap DHT (as hivemind's examples and ``hivemind-dht`` run it) and two peers that
    joined through it only."""
    boot = hivemind.DHT(host_maddrs=LOCAL, start=True)
    peers = [str(m) for m in boot.get_visible_maddrs()]
    b = hivemind.DHT(initial_peers=peers, host_maddrs=LOCAL, start=True)
    c = hivemind.DHT(initial_peers=peers, host_maddrs=LOCAL, start=True)
    try:
        yield boot, b, c, peers
    finally:
        for dht in (c, b, boot):
            dht.shutdown()


def test_a_peer_never_seen_in_the_routing_table_is_found_after_the_bootstrap_dies(bootstrap_and_two):
    # the shape of the compose swarm that split: b and c talk (matchmaking, all-reduce), but c's entry in b's
    # routing table came and went between two looks of the keeper (one slow request drops it); b's keeper saw
    # only the bootstrap there. Once the bootstrap dies, c must still be known to b, and dialled.
    boot, b, c, peers = bootstrap_and_two
    c_id = str(c.peer_id)
    assert b.run_coroutine(functools.partial(_forget, c_id))
    keeper = SwarmKeeper(b, initial_peers=peers, interval=1.0, isolation_hold=3600, others_active=lambda: True)
    state = keeper.check()
    assert c_id in keeper.known, "a peer connected to b but missing from its table is remembered"
    boot.shutdown()
    b.run_coroutine(_forget_everyone)
    c.run_coroutine(_forget_everyone)
    state = keeper.check()
    assert not state.isolated and state.routing_peers >= 1, state
    assert c.run_coroutine(_table_size) >= 1, "c learnt b back from b's ping"


def test_a_peer_known_only_from_its_progress_record_is_dialled(bootstrap_and_two):
    # c reported progress, so b knows it trains in this run, though b never held it in its routing table nor has
    # a connection to it now: b pings it by its id (libp2p finds the address), and the two meet again
    boot, b, c, _ = bootstrap_and_two
    from hivemind.utils import get_dht_time

    key = "volunteer-tests-keeper_progress"
    assert c.store(key, subkey="c", value={"peer_id": c.peer_id.to_bytes()}, expiration_time=get_dht_time() + 120)
    assert b.get(key, latest=True) is not None  # what b's tracker does; the record stays in b's cache
    c_id = str(c.peer_id)
    b.run_coroutine(functools.partial(_forget, c_id))
    b.run_coroutine(functools.partial(_disconnect, c_id))
    boot.shutdown()
    keeper = SwarmKeeper(b, interval=1.0, isolation_hold=3600, progress_key=key)
    b.run_coroutine(_forget_everyone)
    c.run_coroutine(_forget_everyone)
    state = keeper.check()
    assert not state.isolated and state.routing_peers >= 1, (state, keeper.known)
