"""The failure screen: what went wrong and what to do, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui import format as fmt
from tui.widgets._event_log import event_line
from volunteer.stats import ErrorInfo, Event, Snapshot

RECENT_EVENTS = 8
"""Events shown under the error, for context and for a bug report."""


def what_to_do(snapshot: Snapshot | None, *, attach: bool) -> list[str]:
    """Numbered steps for a failed session."""
    error = snapshot.last_error if snapshot else None
    steps = [
        "Read the hint above and fix what it names." if error and error.hint else "Read the error above.",
    ]
    repo = fmt.plain(snapshot.project.repo, 200) if snapshot else ""
    if attach:
        steps.append("Restart the headless volunteer (or its container); this screen reconnects by itself.")
    else:
        steps.append(f"Start it again: volunteer --project {repo or '<project>'}")
    if snapshot is not None:
        steps.append(f"Samples already in global steps stay credited ({fmt.count(snapshot.swarm_samples)} so far).")
    steps.append("If it keeps failing, report it with the error and the events below.")
    return [f"{number}. {step}" for number, step in enumerate(steps, start=1)]


class FailureScreen(Screen[None]):
    """Shown while the session is FAILED: the error, its hint, numbered steps and the latest events."""

    BINDINGS = [Binding("q", "quit_failed", "Quit")]

    def __init__(self, snapshot: Snapshot | None, events: Sequence[Event] = (), *, attach: bool = False) -> None:
        super().__init__()
        self.snapshot = snapshot
        """The failed snapshot."""
        self.events = tuple(events)[-RECENT_EVENTS:]
        """The latest events, oldest first."""
        self.attach = attach

    def compose(self) -> ComposeResult:
        error = self.snapshot.last_error if self.snapshot else None
        error = error or ErrorInfo("the session stopped without reporting an error")
        with VerticalScroll(id="failure-body") as body:
            body.border_title = "Training stopped: the session failed"
            yield Static(fmt.text(error.message, "bold", newlines=True), id="failure-message")
            if error.hint:
                yield Static(Text.assemble(("hint: ", "italic"), fmt.text(error.hint)), id="failure-hint")
            yield Static(Text("\n".join(what_to_do(self.snapshot, attach=self.attach))), id="failure-steps")
            if self.events:
                yield Static(Text("\n").join(event_line(event) for event in self.events), id="failure-events")
        yield Footer()

    def action_quit_failed(self) -> None:
        self.app.exit(return_code=1)
