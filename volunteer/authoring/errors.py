"""Errors of the authoring commands (each a :class:`~volunteer.errors.VolunteerError`: a message and a hint)."""

from __future__ import annotations

from volunteer.errors import ProjectError, VolunteerError


class CheckFailed(ProjectError):
    """The project imports, but training it fails or cannot work in a swarm."""

    title = "check failed"


class HubWriteError(VolunteerError):
    """Creating a repository or committing to it on the Hub failed."""

    title = "Hub error"

    def __init__(self, message: str, hint: str | None = None, *, status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status
        """The HTTP status the Hub answered (0: no answer)."""
