"""VOLUNTEER_ISOLATION_HOLD: how long an isolated peer holds its global steps, set from the environment."""

from __future__ import annotations

import logging

import pytest

from volunteer.swarm.keeper import ISOLATION_HOLD_ENV, swarm_keeper_env


def test_unset_leaves_the_default(monkeypatch):
    monkeypatch.delenv(ISOLATION_HOLD_ENV, raising=False)
    assert swarm_keeper_env() == {}


def test_seconds_are_read(monkeypatch):
    monkeypatch.setenv(ISOLATION_HOLD_ENV, "8.5")
    assert swarm_keeper_env() == {"isolation_hold": 8.5}


@pytest.mark.parametrize("value", ["soon", "-3", "nan"])
def test_an_unusable_value_is_ignored_and_said(monkeypatch, caplog, value):
    monkeypatch.setenv(ISOLATION_HOLD_ENV, value)
    with caplog.at_level(logging.WARNING, logger="volunteer.swarm.keeper"):
        assert swarm_keeper_env() == {}
    assert ISOLATION_HOLD_ENV in caplog.text and "60 s" in caplog.text
