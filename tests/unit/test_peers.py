import pytest

from volunteer.errors import PeerAddressError
from volunteer.swarm.multiaddrs import parse_listen_addresses, parse_peers, peer_id_of, split_addresses

PEER = "QmTPAgyFyHNAhtTpB2yj7PbSgD8YUojZSW6e3QZzA5RKMh"
PEER2 = "12D3KooWGQMHQyyBGKu76DQB4NrmvYQKB2Tiofb9eBVRDc84djjW"

VALID = [
    f"/ip4/127.0.0.1/tcp/31337/p2p/{PEER}",
    f"/ip4/203.0.113.5/udp/31337/quic-v1/p2p/{PEER2}",
    f"/ip6/::1/tcp/4001/p2p/{PEER}",
    f"/dns4/peer.example.org/tcp/443/p2p/{PEER2}",
    f"/ip4/198.51.100.2/tcp/4001/p2p/{PEER}/p2p-circuit/p2p/{PEER2}",
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses_are_accepted(address):
    assert parse_peers(address) == [address]


def test_our_validation_agrees_with_hivemind():
    from hivemind.utils.multiaddr import Multiaddr

    for address in VALID:
        assert str(Multiaddr(address)) == address


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1:31337", "starts with '/'"),
        (f"/ip4/127.0.0.1/tcp/31337/p2p/{PEER}x0", "peer id"),
        ("/ip4/127.0.0.1/tcp/31337", "must end with /p2p/"),
        (f"/ip4/300.0.0.1/tcp/31337/p2p/{PEER}", "not an IPv4 address"),
        (f"/ip4/127.0.0.1/tcp/99999/p2p/{PEER}", "0 to 65535"),
        (f"/ip4/127.0.0.1/sctp/1/p2p/{PEER}", "unknown protocol 'sctp'"),
        (f"/ip4/0.0.0.0/tcp/1/p2p/{PEER}", "listening address"),
        (f"/tcp/1/p2p/{PEER}", "must start with"),
        ("/ip4/127.0.0.1/tcp", "needs a value"),
    ],
)
def test_invalid_addresses_name_the_problem_and_the_fix(address, reason):
    with pytest.raises(PeerAddressError) as info:
        parse_peers(address, "--initial-peers")
    assert reason in info.value.message
    assert "--initial-peers" in info.value.message
    assert "/p2p/" in info.value.hint


def test_lists_split_on_commas_and_whitespace_and_deduplicate():
    a, b = VALID[0], VALID[1]
    assert split_addresses(f" {a}, {b}\n{a} ") == [a, b, a]
    assert parse_peers(f"{a},{b} {a}") == [a, b]
    assert parse_peers([a, f"{b},{a}"]) == [a, b]
    assert parse_peers(None) == [] and parse_peers("") == []


def test_listen_addresses_need_no_peer_id():
    assert parse_listen_addresses("/ip4/0.0.0.0/tcp/31337 /ip4/0.0.0.0/udp/31337/quic-v1") == [
        "/ip4/0.0.0.0/tcp/31337",
        "/ip4/0.0.0.0/udp/31337/quic-v1",
    ]
    with pytest.raises(PeerAddressError):
        parse_listen_addresses("tcp://0.0.0.0:31337")


def test_peer_id_of():
    assert peer_id_of(VALID[0]) == PEER
