"""The matchmaking rate limit applies to hivemind 1.1.12 only, once, and leaves any other hivemind alone."""

from __future__ import annotations

import logging

import hivemind
import pytest
from hivemind.averaging.matchmaking import PotentialLeaders

from volunteer.swarm import hivemind_patches
from volunteer.swarm.hivemind_patches import apply_hivemind_patches, is_patched, lookup_interval


@pytest.fixture
def hivemind_as_released(monkeypatch):
    """hivemind's own matchmaking for the test, whatever earlier tests applied; restored afterwards."""
    original = hivemind_patches.HIVEMIND_UPDATE_QUEUE_PERIODICALLY
    monkeypatch.setattr(PotentialLeaders, "_update_queue_periodically", original)
    monkeypatch.setattr(hivemind_patches, "_declined", False)
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
    with caplog.at_level(logging.INFO, logger="volunteer.swarm.hivemind_patches"):
        assert apply_hivemind_patches() is False
        assert apply_hivemind_patches() is False
    assert PotentialLeaders._update_queue_periodically is changed_upstream
    assert not is_patched()
    assert len(caplog.records) == 1 and "left unpatched" in caplog.records[0].getMessage()


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
