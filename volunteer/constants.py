"""Names of every environment variable volunteer reads, and the one place that reads them."""

from __future__ import annotations

import os

INITIAL_PEERS_ENV = "INITIAL_PEERS"
ENV_PREFIX = "VOLUNTEER_"
DEFAULT_STATUS_PORT = 8471
"""The status endpoint's port on 127.0.0.1, shared by the client, ``volunteer attach`` and the health check."""
CONTROL_TOKEN_ENV = ENV_PREFIX + "CONTROL_TOKEN"
"""The status endpoint's control token: set by the dashboard for the session it starts, or for ``attach``."""


def env(name: str, default: str | None = None) -> str | None:
    """The value of an environment variable, ``None`` (or ``default``) when unset or empty."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value


def initial_peers_from_env() -> str | None:
    """Initial peers from ``VOLUNTEER_INITIAL_PEERS`` or the seed's ``INITIAL_PEERS``."""
    return env(ENV_PREFIX + "INITIAL_PEERS") or env(INITIAL_PEERS_ENV)
