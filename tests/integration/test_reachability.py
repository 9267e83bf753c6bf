"""The reachability check between real hivemind DHTs on 127.0.0.1, and the strategy choosing its mode by it."""

from __future__ import annotations

import socket

import hivemind
import pytest
from hivemind.utils import get_dht_time

from volunteer.strategy import HivemindStrategy
from volunteer.swarm import reachability

pytestmark = pytest.mark.integration

LOCAL = ["/ip4/127.0.0.1/tcp/0"]


def _closed_port() -> int:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def public():
    """A full peer that answers reachability questions."""
    dht = hivemind.DHT(host_maddrs=LOCAL, start=True)
    reachability.serve(dht)
    try:
        yield dht
    finally:
        dht.shutdown()


def _addresses(dht: hivemind.DHT) -> list[str]:
    return [str(m) for m in dht.get_visible_maddrs()]


def test_a_peer_that_can_be_dialled_is_a_full_peer(public):
    dht = hivemind.DHT(initial_peers=_addresses(public), host_maddrs=LOCAL, start=True)
    try:
        mode = reachability.check(dht, _addresses(public))
    finally:
        dht.shutdown()
    assert mode == reachability.NetworkMode(False, "peers could dial this machine back (1 of 1 asked)")


def test_a_peer_announcing_an_address_nobody_can_dial_is_a_client(public):
    # what a peer behind NAT announces: its own LAN address and port, which no connection from outside reaches
    unreachable = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
    dht = hivemind.DHT(initial_peers=_addresses(public), host_maddrs=LOCAL, announce_maddrs=[unreachable], start=True)
    try:
        mode = reachability.check(dht, _addresses(public))
    finally:
        dht.shutdown()
    assert mode.client_mode and mode.reason.startswith(reachability.UNREACHABLE), mode


def test_a_peer_without_the_handler_does_not_decide():
    old = hivemind.DHT(host_maddrs=LOCAL, start=True)  # an older client: no reachability handler
    dht = hivemind.DHT(initial_peers=_addresses(old), host_maddrs=LOCAL, start=True)
    try:
        assert reachability.check(dht, _addresses(old)) == reachability.NetworkMode(False, reachability.NO_ANSWER)
    finally:
        dht.shutdown()
        old.shutdown()


def test_the_strategy_restarts_its_dht_in_client_mode_when_nobody_can_dial_it(public, tmp_path):
    unreachable = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
    strategy = HivemindStrategy(
        initial_peers=_addresses(public),
        host_maddrs=LOCAL,
        announce_maddrs=[unreachable],
        identity_path=str(tmp_path / "identity.key"),
        print_join_message=False,
    )
    strategy._start_dht()
    try:
        assert strategy.dht is not None and strategy.dht.client_mode
        assert strategy.network_mode is not None and strategy.network_mode.label == "client mode"
        # still in the swarm: it reaches the public peer's records
        assert strategy.dht.store("k", "v", get_dht_time() + 60)
        assert public.get("k") is not None
    finally:
        assert strategy.dht is not None
        strategy.dht.shutdown()


def test_a_forced_mode_is_not_checked(public):
    strategy = HivemindStrategy(
        initial_peers=_addresses(public), host_maddrs=LOCAL, client_mode=False, print_join_message=False
    )
    strategy._start_dht()
    try:
        assert strategy.network_mode == reachability.FORCED_FULL
        assert strategy.dht is not None and not strategy.dht.client_mode
        # a full peer answers others' questions
        other = hivemind.DHT(initial_peers=strategy.visible_maddrs(), host_maddrs=LOCAL, start=True)
        try:
            assert not reachability.check(other, strategy.visible_maddrs()).client_mode
        finally:
            other.shutdown()
    finally:
        assert strategy.dht is not None
        strategy.dht.shutdown()


def test_dead_peers_listed_first_do_not_hide_a_live_one(public, tmp_path):
    # a cached peer list goes stale: the peers the DHT is connected to are asked first
    from hivemind.p2p import P2P, PeerID

    dead = []
    for i in range(reachability.MAX_ASKED):
        key = tmp_path / f"dead{i}.key"
        P2P.generate_identity(str(key))
        dead.append(f"/ip4/127.0.0.1/tcp/{_closed_port()}/p2p/{PeerID.from_identity(key.read_bytes()).to_base58()}")
    peers = [*dead, *_addresses(public)]
    dht = hivemind.DHT(initial_peers=peers, host_maddrs=LOCAL, start=True)
    try:
        mode = reachability.check(dht, peers)
    finally:
        dht.shutdown()
    assert mode == reachability.NetworkMode(False, "peers could dial this machine back (1 of 1 asked)")


def _capped(public, **kwargs) -> HivemindStrategy:
    strategy = HivemindStrategy(
        initial_peers=_addresses(public),
        host_maddrs=LOCAL,
        max_upload=64_000.0,
        run_id="capped",
        print_join_message=False,
        **kwargs,
    )
    strategy._start_dht()
    return strategy


def test_a_capped_peer_is_a_client_when_a_full_peer_trains_unless_told_otherwise(public):
    """Answering the swarm's lookups would be sent on the volunteer's upload budget (docs/bandwidth.md)."""
    first = _capped(public)
    try:  # nobody trains yet: a client could average with nobody, so the first capped peer stays full
        assert first.dht is not None and not first.dht.client_mode
        mode = first.network_mode
        assert mode is not None and not mode.client_mode and reachability.CAPPED_BUT_NEEDED in mode.reason, mode
    finally:
        assert first.dht is not None
        first.dht.shutdown()
    # a full peer training, as hivemind's progress tracker records it (and a client, which does not count)
    record = dict(peer_id=b"other", epoch=3, samples_accumulated=0, samples_per_second=1.0, time=0.0)
    expires = get_dht_time() + 60
    assert public.store("capped_progress", {**record, "client_mode": True}, expires, subkey=b"client")
    second = _capped(public)
    try:
        assert second.dht is not None and not second.dht.client_mode, "a client is no full peer to average through"
    finally:
        assert second.dht is not None
        second.dht.shutdown()
    assert public.store("capped_progress", {**record, "client_mode": False}, expires, subkey=b"full")
    capped = _capped(public)
    try:
        assert capped.dht is not None and capped.dht.client_mode
        mode = capped.network_mode
        assert mode is not None and mode.client_mode and "upload cap 512 kbit/s" in mode.reason, mode
        assert "--no-client-mode" in mode.reason
    finally:
        assert capped.dht is not None
        capped.dht.shutdown()
    told = _capped(public, client_mode=False)
    try:
        assert told.network_mode == reachability.FORCED_FULL
    finally:
        assert told.dht is not None
        told.dht.shutdown()
