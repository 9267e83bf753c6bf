"""The matchmaking rate limit applies to hivemind 1.1.12 only, once, and leaves any other hivemind alone."""

from __future__ import annotations

import logging

import hivemind
import pytest
from hivemind.averaging.matchmaking import PotentialLeaders

from volunteer.swarm import hivemind_patches, source_guard
from volunteer.swarm.hivemind_patches import apply_hivemind_patches, is_patched, lookup_interval


@pytest.fixture
def hivemind_as_released(monkeypatch):
    """hivemind's own matchmaking for the test, whatever earlier tests applied; restored afterwards."""
    original = hivemind_patches.HIVEMIND_UPDATE_QUEUE_PERIODICALLY
    monkeypatch.setattr(PotentialLeaders, "_update_queue_periodically", original)
    monkeypatch.setattr(source_guard, "_declined", set())
    return original


def test_applies_to_hivemind_1_1_12_once(hivemind_as_released):
    assert hivemind.__version__ == "1.1.12"
    assert not is_patched()
    assert apply_hivemind_patches() is True
    assert is_patched()
    assert apply_hivemind_patches() is True
    assert PotentialLeaders._update_queue_periodically is hivemind_patches._update_queue_periodically


def test_leaves_other_matchmaking_code_alone_with_one_log_line(hivemind_as_released, monkeypatch, caplog):
    async def changed_upstream(self, key_manager):  # stands in for a hivemind that changed this method
        pass

    monkeypatch.setattr(PotentialLeaders, "_update_queue_periodically", changed_upstream)
    with caplog.at_level(logging.INFO, logger="volunteer.swarm.source_guard"):
        assert apply_hivemind_patches() is False
        assert apply_hivemind_patches() is False
    assert PotentialLeaders._update_queue_periodically is changed_upstream
    assert not is_patched()
    assert len(caplog.records) == 1 and "matchmaking rate limit" in caplog.records[0].getMessage()


def test_leaves_another_hivemind_version_alone(hivemind_as_released, monkeypatch):
    monkeypatch.setattr(hivemind, "__version__", "1.1.13")
    assert apply_hivemind_patches() is False
    assert PotentialLeaders._update_queue_periodically is hivemind_as_released


@pytest.mark.parametrize(
    "matchmaking_time, interval",
    [(15.0, 0.5), (10.0, 0.5), (5.0, 0.25), (2.0, 0.1), (0.5, 0.025)],
)
def test_lookups_are_a_twentieth_of_the_matchmaking_time_apart_at_most_half_a_second(matchmaking_time, interval):
    assert lookup_interval(matchmaking_time) == pytest.approx(interval)


@pytest.fixture
def join_as_released(monkeypatch):
    from hivemind.averaging.matchmaking import Matchmaking

    original = hivemind_patches.HIVEMIND_RPC_JOIN_GROUP
    monkeypatch.setattr(Matchmaking, "rpc_join_group", original)
    monkeypatch.setattr(source_guard, "_declined", set())
    return original


def test_group_assembly_applies_to_hivemind_1_1_12_once(join_as_released):
    from hivemind.averaging.matchmaking import Matchmaking

    assert not hivemind_patches.is_group_patched()
    assert hivemind_patches.apply_group_patches() is True
    assert hivemind_patches.apply_group_patches() is True
    assert Matchmaking.rpc_join_group is hivemind_patches._rpc_join_group


def test_group_assembly_leaves_other_code_and_versions_alone(join_as_released, monkeypatch):
    from hivemind.averaging.matchmaking import Matchmaking

    async def changed_upstream(self, request, context):
        yield None

    monkeypatch.setattr(Matchmaking, "rpc_join_group", changed_upstream)
    assert hivemind_patches.apply_group_patches() is False
    assert Matchmaking.rpc_join_group is changed_upstream
    monkeypatch.setattr(Matchmaking, "rpc_join_group", join_as_released)
    monkeypatch.setattr(hivemind, "__version__", "1.1.13")
    assert hivemind_patches.apply_group_patches() is False
    assert Matchmaking.rpc_join_group is join_as_released


def _gather(user_data: object) -> bytes:
    """A round's gather bytes as ``DecentralizedAverager.step`` builds them: bandwidth, mode, user data."""
    from hivemind.utils import MSGPackSerializer

    return MSGPackSerializer.dumps([100.0, 0, MSGPackSerializer.dumps(user_data)])


@pytest.mark.parametrize(
    "user_data, expected",
    [
        ({hivemind_patches.EXPECTED_GROUP_KEY: 3}, 3),
        ({hivemind_patches.EXPECTED_GROUP_KEY: 2, "epoch": 7}, 2),
        (7, None),  # hivemind's state round: the next epoch
        (None, None),  # hivemind's gradient round
        ({hivemind_patches.EXPECTED_GROUP_KEY: True}, None),
        ({hivemind_patches.EXPECTED_GROUP_KEY: 0}, None),
        ({hivemind_patches.EXPECTED_GROUP_KEY: "3"}, None),
    ],
)
def test_only_a_count_we_sent_is_read_from_a_round(user_data, expected):
    assert hivemind_patches._expected_in(_gather(user_data)) == expected


def test_garbage_gather_data_is_no_count():
    assert hivemind_patches._expected_in(b"\xc1 not msgpack") is None
    assert hivemind_patches._expected_in(b"") is None


def test_training_peers_are_those_reporting_a_rate():
    from hivemind.utils import ValueWithExpiration

    def record(rate: float) -> ValueWithExpiration:
        return ValueWithExpiration({"samples_per_second": rate}, 0.0)

    metadata = {
        b"me": record(0.0),  # this peer counts itself, whatever its record says
        b"trainer": record(512.0),
        b"auxiliary": record(1e-20),  # hivemind's PerformanceEMA floor: an auxiliary peer, or no batch yet
        b"left": ValueWithExpiration(None, 0.0),
    }
    assert hivemind_patches._count_others_training(metadata, b"me") == 1
    assert hivemind_patches._count_others_training(None, b"me") == 0
