"""Messages the polling worker posts to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from volunteer.stats import Command, Event, Snapshot


@dataclass
class SnapshotUpdated(Message):
    """A snapshot that differs from the previous one."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        # Only the newest snapshot matters: a backlog never piles up behind a slow UI.
        return isinstance(message, SnapshotUpdated)


@dataclass
class EventsArrived(Message):
    """New events, oldest first."""

    events: tuple[Event, ...]


@dataclass
class SourceDisconnected(Message):
    """The source raised ``ConnectionError``; the poller retries after ``retry_in`` seconds."""

    error: str
    retry_in: float
    attempt: int


@dataclass
class SourceReconnected(Message):
    """The source answers again after a ``SourceDisconnected``."""


@dataclass
class SessionRestarted(Message):
    """The session's uptime went backwards: a new session behind the same source, counting events anew."""


@dataclass
class CommandFailed(Message):
    """A command could not be delivered to the session."""

    command: Command
    error: str
