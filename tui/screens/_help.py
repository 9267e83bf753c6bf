"""The help screen: what every figure and key means."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown

from tui.figures import help_markdown


class HelpScreen(ModalScreen[None]):
    """The figure guide from :mod:`tui.figures`, closed with escape, q or ?."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False, key_display="?"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "What the figures mean"
            yield Markdown(help_markdown())
        yield Footer()
