"""The header: project, code revision, run, this peer and the session's state."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui import format as fmt
from volunteer.stats import Snapshot, State

STATE_STYLES: dict[State, str] = {
    State.TRAINING: "bold white on #2e7d32",
    State.LOADING_STATE: "bold white on #1565c0",
    State.CONNECTING: "bold white on #1565c0",
    State.DOWNLOADING: "bold white on #1565c0",
    State.STARTING: "bold white on #455a64",
    State.WAITING_FOR_CONSENT: "bold black on #fdd835",
    State.RECONNECTING: "bold black on #f9a825",
    State.PAUSED: "bold white on #616161",
    State.STOPPING: "bold white on #616161",
    State.STOPPED: "bold white on #616161",
    State.FAILED: "bold white on #c62828",
}
"""The badge colour of each state: green trains, blue syncs, yellow reconnects, grey idles, red failed."""

DISCONNECTED_STYLE = "bold white on #6a1b9a"


def state_badge(state: State | None, *, disconnected: bool = False) -> Text:
    """The state as a coloured badge, e.g. `` TRAINING ``."""
    if disconnected:
        return Text(" DISCONNECTED ", style=DISCONNECTED_STYLE)
    if state is None:
        return Text(" WAITING FOR SESSION ", style=STATE_STYLES[State.STARTING])
    return Text(f" {fmt.STATE_LABELS[state].upper()} ", style=STATE_STYLES[state])


class StatusHeader(Widget):
    """Two lines: what is trained where, and who this peer is and what it is doing."""

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The snapshot shown; None until the first one arrives."""

    disconnected: reactive[bool] = reactive(False)
    """True while the source cannot be reached: the figures below are stale."""

    finishing: reactive[bool] = reactive(False)
    """True once the volunteer asked to finish after the current global step."""

    def render(self) -> Group:
        snapshot = self.snapshot
        top = Table.grid(expand=True)
        top.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        top.add_column(justify="right", no_wrap=True)
        bottom = Table.grid(expand=True)
        bottom.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        bottom.add_column(justify="right", no_wrap=True)
        if snapshot is None:
            top.add_row(Text("volunteer", style="bold"), "")
            bottom.add_row(Text("connecting to the session…", style="dim"), state_badge(None))
            return Group(top, bottom)
        project = snapshot.project
        title = Text.assemble(
            (fmt.plain(project.name, 200) or "unnamed project", "bold"),
            ("  ", ""),
            (fmt.repo_at_sha(project), "cyan"),
        )
        run = Text.assemble(("run ", "dim"), (fmt.plain(project.run_id, 200) or fmt.NO_VALUE, "bold"))
        top.add_row(title, run)
        peer = Text.assemble(
            ("peer ", "dim"),
            (fmt.plain(snapshot.nickname, 200) or "anonymous", "bold"),
            (f" ({fmt.short_id(snapshot.peer_id)})" if snapshot.peer_id else "", "dim"),
        )
        badge = state_badge(snapshot.state, disconnected=self.disconnected)
        if self.finishing and snapshot.state not in (State.STOPPED, State.FAILED):
            badge = Text.assemble(("finishing after this step ", "italic"), badge)
        if snapshot.transfer is not None:
            badge = Text.assemble((snapshot.transfer.describe(), "cyan"), "  ", badge)
        bottom.add_row(peer, badge)
        return Group(top, bottom)
