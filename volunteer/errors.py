"""Every error that volunteer raises for a user to read: a message that names the problem and a hint.

The CLI has one boundary that prints ``error: <message>`` and ``hint: <hint>`` and exits with status 2;
anything that is not a :class:`VolunteerError` is a bug and keeps its traceback. This module imports
nothing heavy, so the CLI can raise and report these before torch is loaded.
"""

from __future__ import annotations


class VolunteerError(Exception):
    """Base class: a one-line ``message`` naming the problem and a ``hint`` naming the fix."""

    title = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} HINT: {self.hint}"
        return self.message


class ConfigError(VolunteerError):
    """A flag, environment variable or setting has a value that cannot work."""

    title = "configuration error"


class PeerAddressError(ConfigError):
    """A peer multiaddress cannot be parsed."""

    def __init__(self, address: str, reason: str, source: str | None = None) -> None:
        where = f" (from {source})" if source else ""
        super().__init__(
            f"invalid peer address {address!r}{where}: {reason}",
            "write each peer as a full multiaddress with its peer id, e.g. "
            "/ip4/203.0.113.5/tcp/31337/p2p/QmXyz...; separate several with commas or spaces",
        )
        self.address = address


class StrategyConfigError(ConfigError):
    """The Trainer or LightningModule is set up in a way HivemindStrategy cannot train."""

    title = "strategy error"


class ProjectError(VolunteerError):
    """A project cannot be found, downloaded, validated or imported."""

    title = "project error"


class TrustError(VolunteerError):
    """A project's code has not been trusted to run on this machine."""

    title = "consent required"


class DataDirError(VolunteerError):
    """The data directory, or a file in it, cannot be read or written."""

    title = "data directory error"


class SwarmError(VolunteerError):
    """The swarm cannot be joined or left as asked."""

    title = "swarm error"
