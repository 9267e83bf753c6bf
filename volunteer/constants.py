"""Names of every environment variable volunteer reads, and the one place that reads them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

INITIAL_PEERS_ENV = "INITIAL_PEERS"
ENV_PREFIX = "VOLUNTEER_"
DEFAULT_STATUS_PORT = 8471
"""The status endpoint's port on 127.0.0.1, shared by the client, ``volunteer attach`` and the health check."""
CONTROL_TOKEN_ENV = ENV_PREFIX + "CONTROL_TOKEN"
"""The status endpoint's control token: set by the dashboard for the session it starts, or for ``attach``."""
INTERACTIVE_CHILD_ENV = ENV_PREFIX + "INTERACTIVE_CHILD"
"""Set by the dashboard for the headless session it starts: consent is then asked through the endpoint."""


def env(name: str, default: str | None = None) -> str | None:
    """The value of an environment variable, ``None`` (or ``default``) when unset or empty."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value


def initial_peers_from_env() -> str | None:
    """Initial peers from ``VOLUNTEER_INITIAL_PEERS`` or the seed's ``INITIAL_PEERS``."""
    return env(ENV_PREFIX + "INITIAL_PEERS") or env(INITIAL_PEERS_ENV)


HUB_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Where huggingface_hub reads an access token from the environment."""


def drop_hub_token() -> None:
    """Remove the Hub access token from this process's environment before a project's code runs in it.

    The project is downloaded by then; its code has no need of the volunteer's token. (Code running with the
    volunteer's rights can still read files the volunteer can read: see docs/security.md.)
    """
    for name in HUB_TOKEN_VARIABLES:
        os.environ.pop(name, None)


@contextlib.contextmanager
def without_hub_token() -> Iterator[None]:
    """No Hub access token in the environment while a project's code runs in this process; put back after."""
    saved = {name: os.environ[name] for name in HUB_TOKEN_VARIABLES if name in os.environ}
    drop_hub_token()
    try:
        yield
    finally:
        os.environ.update(saved)
