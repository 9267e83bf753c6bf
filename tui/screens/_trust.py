"""The trust dialog: consent before a project's code runs on this machine."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from tui import format as fmt
from volunteer.stats import ProjectInfo


class TrustScreen(ModalScreen[bool]):
    """Shows the project, its repo and sha and the files that will run; dismisses True to trust it."""

    BINDINGS = [
        Binding("a", "accept", "Trust and run"),
        Binding("q,escape", "decline", "Quit"),
    ]

    def __init__(self, project: ProjectInfo) -> None:
        super().__init__()
        self.project = project
        """The project asking for consent."""

    def compose(self) -> ComposeResult:
        project = self.project
        with Vertical(id="trust-dialog") as dialog:
            dialog.border_title = "Run this project's code?"
            yield Static(
                "This project runs its own Python code on your machine, with your permissions. "
                "Trust it only if you trust its authors.",
                id="trust-intro",
            )
            yield Label(f"Project   {project.name or fmt.NO_VALUE}", id="trust-name")
            yield Label(f"Repo      {project.repo or fmt.NO_VALUE}", id="trust-repo")
            yield Label(f"Commit    {project.revision or 'none (local or built-in)'}", id="trust-sha")
            yield Label(f"Run       {project.run_id or fmt.NO_VALUE}", id="trust-run")
            yield Label(f"Files that will run ({len(project.files)}):", id="trust-files-title")
            with VerticalScroll(id="trust-files"):
                # file names come from the project: shown as plain text, never as markup
                yield Static("\n".join(project.files) or "(none listed)", id="trust-files-list", markup=False)
            with Horizontal(id="trust-buttons"):
                yield Button("Trust and run (a)", variant="success", id="accept")
                yield Button("Quit (q)", variant="error", id="decline")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "accept")

    def action_accept(self) -> None:
        self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)
