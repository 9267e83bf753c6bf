"""The swarm keeper with real hivemind DHTs on 127.0.0.1: forgotten peers are found again, isolation is seen."""

from __future__ import annotations

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
