"""Leaderboard records from peers are validated before anything uses them: identity, numbers, time, text."""

from __future__ import annotations

import math
import time

import pytest
from hivemind.dht.crypto import RSASignatureValidator
from hivemind.p2p import P2P, PeerID
from hivemind.utils.crypto import RSAPrivateKey
from hivemind.utils.timed_storage import ValueWithExpiration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volunteer.errors import DataDirError
from volunteer.stats import clean_text
from volunteer.swarm import leaderboard
from volunteer.swarm.leaderboard import (
    CLOCK_WINDOW,
    MAX_SAMPLES,
    NICKNAME_CHARS,
    load_identity_key,
    make_record,
    parse_entries,
    peer_id_of_subkey,
    use_identity_for_signing,
)

NOW = 1_800_000_000.0


class Peer:
    """A key pair as a peer has one: the sub-key it writes under and the peer id that key stands for."""

    def __init__(self, tmp_path, name: str) -> None:
        path = str(tmp_path / f"{name}.key")
        P2P.generate_identity(path)
        with open(path, "rb") as f:
            self.peer_id = PeerID.from_identity(f.read()).to_base58()  # what the DHT calls this peer
        self.subkey = RSASignatureValidator(load_identity_key(path)).local_public_key

    def record(self, **changes) -> dict:
        record = dict(peer_id=self.peer_id, nickname="ada", samples=100, samples_per_second=5.0, time=NOW)
        return {**record, **changes}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    return [Peer(tmp, f"peer{i}") for i in range(5)]


def board(*items: tuple[bytes, object]) -> dict:
    return {subkey: ValueWithExpiration(value, NOW + 60) for subkey, value in items}


def test_the_peer_id_of_a_subkey_is_the_libp2p_id_of_its_identity(peers):
    for peer in peers:
        assert peer_id_of_subkey(peer.subkey) == peer.peer_id


def test_a_valid_record_becomes_an_entry_and_marks_this_peer(peers):
    me, other = peers[:2]
    result = parse_entries(board((me.subkey, me.record()), (other.subkey, other.record(samples=500))), me.peer_id, NOW)
    assert result.dropped == 0
    assert [(e.peer_id, e.samples, e.is_self) for e in result.entries] == [
        (other.peer_id, 500, False),
        (me.peer_id, 100, True),
    ]


def test_a_record_claiming_another_peers_id_is_dropped(peers):
    """The rogue used to show with the victim's id, and as the victim's own entry on the victim's board."""
    victim, rogue = peers[:2]
    forged = rogue.record(peer_id=victim.peer_id, samples=10**12, nickname="victim")
    result = parse_entries(board((victim.subkey, victim.record()), (rogue.subkey, forged)), victim.peer_id, NOW)
    assert [e.peer_id for e in result.entries] == [victim.peer_id]
    assert [e.is_self for e in result.entries] == [True]
    assert result.dropped == 1


@pytest.mark.parametrize(
    "changes",
    [
        dict(time=-math.inf),
        dict(time=math.inf),
        dict(time=math.nan),
        dict(time=NOW - CLOCK_WINDOW - 1),
        dict(time=NOW + CLOCK_WINDOW + 1),
        dict(samples=10**30),
        dict(samples=MAX_SAMPLES + 1),
        dict(samples=-1),
        dict(samples=1.5),
        dict(samples=True),
        dict(samples_per_second=math.inf),
        dict(samples_per_second=math.nan),
        dict(samples_per_second=-1.0),
        dict(samples_per_second=1e300),
        dict(nickname=None),
        dict(nickname="x" * 65),
        dict(peer_id=""),
        dict(peer_id=7),
    ],
)
def test_a_record_with_a_number_or_field_out_of_bounds_is_dropped(peers, changes):
    peer = peers[0]
    result = parse_entries(board((peer.subkey, peer.record(**changes))), "", NOW)
    assert result.entries == () and result.dropped == 1


@pytest.mark.parametrize(
    ("subkey", "value"),
    [
        (b"no key here", None),
        ("a string", None),
        (7, None),
        (b"[owner:ssh-rsa AAAAnot-base64]", None),
        (b"[owner:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkq]", None),
    ],
)
def test_a_record_under_a_subkey_that_names_no_rsa_key_is_dropped(peers, subkey, value):
    result = parse_entries({subkey: ValueWithExpiration(value or peers[0].record(), NOW)}, "", NOW)
    assert result.entries == () and result.dropped == 1


def test_malformed_items_are_dropped_and_counted(peers):
    peer = peers[0]
    value = {peer.subkey: "not a ValueWithExpiration", peers[1].subkey: ValueWithExpiration([1, 2], NOW)}
    assert parse_entries(value, "", NOW).dropped == 2
    assert parse_entries(None, "", NOW).entries == ()
    assert parse_entries([1, 2, 3], "", NOW).entries == ()


def test_nicknames_lose_control_characters_and_markup_stays_text(peers):
    peer = peers[0]
    nasty = "\x1b]0;pwned\x07\x1b[2J[@click=screen.accept]ok[/]\u202eevil\u200b\tname"
    (entry,) = parse_entries(board((peer.subkey, peer.record(nickname=nasty))), "", NOW).entries
    assert entry.nickname == "]0;pwned[2J[@click=screen.accept]ok[/]evil name"[:NICKNAME_CHARS]
    assert all(ord(c) >= 32 for c in entry.nickname)
    assert len(entry.nickname) <= NICKNAME_CHARS


def test_clean_text():
    assert clean_text("  a\n\nb\x00c\u202e  ", 10) == "  a  bc  "
    assert clean_text("a\nb\x1b[2J", newlines=True) == "a\nb[2J"
    assert clean_text("x" * 100, 5) == "xxxxx"
    assert clean_text(None) == "None"


def test_entries_are_capped_keeping_this_peer(peers, monkeypatch):
    monkeypatch.setattr(leaderboard, "MAX_ENTRIES", 3)
    me = peers[4]
    items = [(p.subkey, p.record(samples=1000 - i)) for i, p in enumerate(peers[:4])] + [(me.subkey, me.record())]
    result = parse_entries(board(*items), me.peer_id, NOW)
    assert [e.peer_id for e in result.entries] == [peers[0].peer_id, peers[1].peer_id, me.peer_id]
    assert result.dropped == 2


def test_records_beyond_the_read_limit_are_dropped_unread(peers, monkeypatch):
    monkeypatch.setattr(leaderboard, "MAX_RECORDS", 2)
    result = parse_entries(board(*[(p.subkey, p.record()) for p in peers]), "", NOW)
    assert len(result.entries) == 2 and result.dropped == 3


def test_own_record_is_bounded_and_clean():
    record = make_record("QmSelf", "\x1b[31mred\x1b[0m" + "n" * 100, 10**20, math.nan)
    assert record.samples == MAX_SAMPLES and record.samples_per_second == 0.0
    assert record.nickname.startswith("[31mred[0m") and len(record.nickname) == NICKNAME_CHARS
    assert abs(record.time - time.time()) < 60


def test_this_process_signs_with_its_identity_key(tmp_path, monkeypatch):
    monkeypatch.setattr(RSAPrivateKey, "_process_wide_key", None)
    path = str(tmp_path / "identity.key")
    key = use_identity_for_signing(path)  # creates the identity, as hivemind would
    assert RSAPrivateKey.process_wide() is key
    with open(path, "rb") as f:
        expected = PeerID.from_identity(f.read()).to_base58()
    # hivemind's progress tracker makes its validator with the process-wide key: it signs as this identity too
    assert peer_id_of_subkey(RSASignatureValidator().local_public_key) == expected


def test_a_damaged_identity_is_a_data_dir_error(tmp_path):
    path = tmp_path / "identity.key"
    path.write_bytes(b"\x08\x00\x12\x04junk" * 20)
    with pytest.raises(DataDirError, match="rm "):
        load_identity_key(str(path))


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
_values = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner))
_records = st.fixed_dictionaries(
    {},
    optional={
        "peer_id": st.text(max_size=60) | _json_scalars,
        "nickname": st.text(max_size=80) | _json_scalars,
        "samples": st.integers() | _json_scalars,
        "samples_per_second": st.floats() | _json_scalars,
        "time": st.floats() | st.just(NOW) | _json_scalars,
    },
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_record_can_make_the_parser_raise_or_yield_an_unbounded_entry(peers, data):
    items = {}
    for peer in peers[: data.draw(st.integers(0, len(peers)))]:
        record = data.draw(_records | _values)
        if isinstance(record, dict) and data.draw(st.booleans()):
            record = {**peer.record(), **record}
        items[peer.subkey] = ValueWithExpiration(record, NOW)
    items.update(data.draw(st.dictionaries(st.binary(max_size=40) | st.text(max_size=10), _values, max_size=3)))
    result = parse_entries(
        {k: v if isinstance(v, ValueWithExpiration) else ValueWithExpiration(v, NOW) for k, v in items.items()},
        peers[0].peer_id,
        NOW,
    )
    assert len(result.entries) + result.dropped == len(items)
    for entry in result.entries:
        assert entry.peer_id in {p.peer_id for p in peers}
        assert 0 <= entry.samples <= MAX_SAMPLES
        assert math.isfinite(entry.samples_per_second) and entry.samples_per_second >= 0
        assert abs(entry.last_seen - NOW) <= CLOCK_WINDOW
        assert len(entry.nickname) <= NICKNAME_CHARS and all(ord(c) >= 32 for c in entry.nickname)


def test_a_subkey_with_an_unknown_key_type_is_dropped(peers):
    subkey = b"[owner:ssh-unknown AAAAC3NzaC1sZDI1NTE5AAAAIBkq]"
    result = parse_entries({subkey: ValueWithExpiration(peers[0].record(), NOW)}, "", NOW)
    assert result.entries == () and result.dropped == 1
