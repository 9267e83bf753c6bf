"""A banner for what needs the volunteer's attention: the session's last error, or a lost connection."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui import format as fmt
from volunteer.stats import ErrorInfo


class Banner(Widget):
    """Shown only while there is an error or the source is unreachable; the error's hint says what to do."""

    error: reactive[ErrorInfo | None] = reactive(None)
    """The session's ``last_error``, or None."""

    connection_problem: reactive[str | None] = reactive(None)
    """Why the source cannot be reached and when the next try is, or None while connected."""

    def on_mount(self) -> None:
        self._update_display()

    def watch_error(self) -> None:
        self._update_display()

    def watch_connection_problem(self) -> None:
        self._update_display()

    def _update_display(self) -> None:
        self.display = self.error is not None or self.connection_problem is not None
        self.set_class(self.connection_problem is not None, "-disconnected")

    def render(self) -> Group:
        lines: list[Text] = []
        if self.connection_problem is not None:
            lines.append(Text.assemble(("⚠ disconnected, retrying: ", "bold"), fmt.text(self.connection_problem)))
        if self.error is not None:
            lines.append(Text.assemble(("✖ ", "bold"), fmt.text(self.error.message, "bold")))
            if self.error.hint:
                lines.append(Text.assemble(("  hint: ", "italic"), fmt.text(self.error.hint)))
        return Group(*lines)
