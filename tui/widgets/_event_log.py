"""The log pane: the session's events as they happen."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from tui import format as fmt
from volunteer.stats import Event

KIND_STYLES: dict[str, str] = {
    "error": "bold red",
    "failed": "bold red",
    "reconnecting": "yellow",
    "recovered": "green",
    "bandwidth": "yellow",
    "joined": "cyan",
    "state_loaded": "cyan",
}
"""Event kinds that get a colour; any other kind is shown plain."""


def event_line(event: Event) -> Text:
    """One event as a log line: local clock time, kind, message."""
    try:
        clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    except (OverflowError, ValueError, OSError):  # a time no clock can show
        clock = "--:--:--"
    kind = fmt.plain(event.kind, 40)
    style = KIND_STYLES.get(kind, "")
    return Text.assemble((clock, "dim"), " ", (f"{kind:<12}", style), " ", fmt.text(event.message, style))


class EventLog(RichLog):
    """Joined, state loaded, reconnecting, recovered, errors: the newest at the bottom."""

    BORDER_TITLE = "Log"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, max_lines=1000, wrap=True, markup=False)
        self.last_seq = 0
        """The sequence number of the newest event shown."""

    def restart(self) -> None:
        """A new session numbers its events from 1 again: mark the break and accept them."""
        self.last_seq = 0
        self.write(Text("── the session restarted ──", style="dim"))

    def add_events(self, events: Iterable[Event]) -> None:
        """Append events not shown yet; the poller may repeat one after a reconnect."""
        for event in events:
            if event.seq <= self.last_seq:
                continue
            self.last_seq = event.seq
            self.write(event_line(event))
