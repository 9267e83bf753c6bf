"""The reachability check's decision and its dial-back, on real sockets; the mode's line on the dashboard."""

from __future__ import annotations

import asyncio
import socket

import pytest

from volunteer.swarm import reachability as r


def test_any_yes_makes_a_full_peer() -> None:
    mode = r.decide([False, True, None])
    assert not mode.client_mode and mode.label == "full peer"
    assert mode.reason == "peers could dial this machine back (1 of 2 asked)"


def test_only_no_makes_a_client() -> None:
    mode = r.decide([False, None, False])
    assert mode.client_mode and mode.label == "client mode"
    assert mode.reason.startswith("peers could not dial this machine (behind NAT or a firewall)")
    assert "2 of 2 asked could not" in mode.reason


@pytest.mark.parametrize(("answers", "reason"), [([], r.NOBODY_TO_ASK), ([None, None], r.NO_ANSWER)])
def test_unknown_stays_a_full_peer(answers: list[bool | None], reason: str) -> None:
    assert r.decide(answers) == r.NetworkMode(False, reason)


def test_forced_modes_say_which_flag() -> None:
    assert r.FORCED_CLIENT.client_mode and "--client-mode" in r.FORCED_CLIENT.reason
    assert not r.FORCED_FULL.client_mode and "--no-client-mode" in r.FORCED_FULL.reason


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("/ip4/10.0.0.5/tcp/31337", ("10.0.0.5", 31337)),
        ("/ip4/10.0.0.5/tcp/31337/p2p/QmPeer", ("10.0.0.5", 31337)),
        ("/ip6/::1/tcp/4001", ("::1", 4001)),
        ("/ip4/10.0.0.5/udp/31337/quic", None),
        ("/ip4/1.2.3.4/tcp/1/p2p/QmRelay/p2p-circuit/p2p/QmMe", None),
        ("/dns4/example.org/tcp/31337", None),
        ("/ip4/999.1.1.1/tcp/1", None),
        ("/ip4/10.0.0.5/tcp/0", None),
        ("/ip4/10.0.0.5/tcp/notaport", None),
        ("garbage", None),
    ],
)
def test_only_direct_tcp_addresses_are_dialled(address: str, endpoint: tuple[str, int] | None) -> None:
    assert r.tcp_endpoint(address) == endpoint


def test_loopback_addresses_go_only_to_a_peer_on_this_machine() -> None:
    mine = ["/ip4/127.0.0.1/tcp/5000", "/ip4/192.168.1.7/tcp/5000", "/ip4/192.168.1.7/udp/5000/quic"]
    assert r.addresses_for("/ip4/203.0.113.9/tcp/1/p2p/QmA", mine) == ["/ip4/192.168.1.7/tcp/5000"]
    assert r.addresses_for("/ip4/127.0.0.1/tcp/1/p2p/QmA", mine) == mine[:2]
    many = [f"/ip4/10.0.0.{i}/tcp/5000" for i in range(20)]
    assert len(r.addresses_for("/ip4/203.0.113.9/tcp/1/p2p/QmA", many)) == r.MAX_ADDRESSES


def test_dial_back_opens_a_new_connection_or_says_no() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    open_port, closed_port = listener.getsockname()[1], closed.getsockname()[1]
    closed.close()
    try:
        assert asyncio.run(r.dial_back([f"/ip4/127.0.0.1/tcp/{open_port}"]))
        conn, _ = listener.accept()  # the dial-back really arrived as a connection of its own
        conn.close()
        assert not asyncio.run(r.dial_back([f"/ip4/127.0.0.1/tcp/{closed_port}"]))
        assert asyncio.run(r.dial_back([f"/ip4/127.0.0.1/tcp/{closed_port}", f"/ip4/127.0.0.1/tcp/{open_port}"]))
        assert not asyncio.run(r.dial_back(["/ip4/127.0.0.1/udp/5/quic"]))
    finally:
        listener.close()


def test_an_asked_peer_dials_only_the_ip_the_asker_is_seen_from() -> None:
    import ipaddress

    asked = [
        "/ip4/203.0.113.9/tcp/5000",
        "/ip4/127.0.0.1/tcp/22",  # the answering machine's own services
        "/ip4/10.0.0.1/tcp/80",  # somebody else's machine
        "/ip4/203.0.113.9/udp/5000/quic",
    ]
    seen = {ipaddress.ip_address("203.0.113.9")}
    assert r.only_at(asked, seen) == ["/ip4/203.0.113.9/tcp/5000"]
    assert r.only_at(asked, set()) == []  # not connected (any more): nothing is dialled
