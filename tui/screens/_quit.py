"""The quit confirmation, asked while training."""

from __future__ import annotations

from typing import Literal, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

QuitChoice = Literal["stop", "finish", "detach"]
"""stop: stop the session now; finish: after the current global step; detach: leave it running."""


class QuitScreen(ModalScreen["QuitChoice | None"]):
    """Asks how to leave; dismisses with a :data:`QuitChoice`, or None to keep going."""

    BINDINGS = [
        Binding("y", "choose('stop')", "Stop now"),
        Binding("f", "choose('finish')", "Finish step"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("n,escape", "choose(None)", "Cancel"),
    ]

    def __init__(self, *, attach: bool) -> None:
        super().__init__()
        self.attach = attach
        """True when the session runs headless elsewhere: detaching leaves it training."""

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog") as dialog:
            dialog.border_title = "Quit?"
            if self.attach:
                text = (
                    "This peer is training. Detach to leave it training in the background, "
                    "or stop it. Finishing waits for the current global step, so no sample is wasted."
                )
            else:
                text = (
                    "This peer is training. Stopping now drops the samples gathered toward the "
                    "current global step; finishing waits for it, so no sample is wasted."
                )
            yield Static(text, id="quit-text")
            with Horizontal(id="quit-buttons"):
                if self.attach:
                    yield Button("Detach (d)", variant="primary", id="detach")
                yield Button("Stop now (y)", variant="error", id="stop")
                yield Button("Finish step (f)", variant="warning", id="finish")
                yield Button("Cancel (n)", id="cancel")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(None if event.button.id == "cancel" else event.button.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters == ("detach",):
            return self.attach
        return True

    def action_choose(self, choice: str | None) -> None:
        # the buttons' ids and the bindings' parameters are QuitChoice values
        self.dismiss(cast("QuitChoice | None", choice))
