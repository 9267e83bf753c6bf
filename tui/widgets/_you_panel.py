"""The "You" panel: what this machine contributed, how fast, on what."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui import format as fmt
from volunteer.stats import Snapshot


def pending_samples(snapshot: Snapshot) -> int:
    """All-time samples counted in neither ``swarm_samples`` nor ``local_only_samples`` yet."""
    return max(0, snapshot.total_samples - snapshot.swarm_samples - snapshot.local_only_samples)


def network_mode_line(snapshot: Snapshot) -> Text:
    """ "full peer" or "client mode", and why (volunteer.swarm.reachability)."""
    style = "yellow" if snapshot.network_mode == "client mode" else "bold"
    line = Text(fmt.plain(snapshot.network_mode, 40), style=style)
    if snapshot.network_mode_reason:
        line.append(f" · {fmt.plain(snapshot.network_mode_reason, 200)}", style="dim")
    return line


class YouPanel(Widget):
    """Samples and steps this session and all time, split by credit, with speed, uptime and device."""

    BORDER_TITLE = "You"

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The snapshot shown; None until the first one arrives."""

    def render(self) -> Group | Text:
        snapshot = self.snapshot
        if snapshot is None:
            return Text("waiting for the first snapshot…", style="dim")
        counts = Table.grid(expand=True, padding=(0, 1))
        counts.add_column(no_wrap=True, style="dim")
        counts.add_column(justify="right", no_wrap=True)
        counts.add_column(justify="right", no_wrap=True)
        counts.add_row("", Text("session", style="dim"), Text("all time", style="dim"))
        counts.add_row(
            "Samples",
            Text(fmt.count(snapshot.session_samples), style="bold"),
            fmt.count(snapshot.total_samples),
        )
        counts.add_row("Steps", fmt.count(snapshot.session_steps), fmt.count(snapshot.total_steps))
        counts.add_row(f" {credited_label(snapshot)}", "", Text(fmt.count(snapshot.swarm_samples), style="bold green"))
        counts.add_row(" local only", "", Text(fmt.count(snapshot.local_only_samples), style="yellow"))
        counts.add_row(" pending", "", fmt.count(pending_samples(snapshot)))
        rest = Table.grid(expand=True, padding=(0, 1))
        rest.add_column(no_wrap=True, style="dim")
        rest.add_column(ratio=1)
        rest.add_row("Speed", Text.assemble((fmt.rate(snapshot.samples_per_second), "bold"), " samples/s"))
        uptime = Text(fmt.duration(snapshot.uptime))
        if snapshot.reconnects:
            plural = "s" if snapshot.reconnects != 1 else ""
            uptime.append(f" · {snapshot.reconnects} reconnect{plural}", style="yellow")
        rest.add_row("Uptime", uptime)
        rest.add_row("Device", Text(fmt.device_line(snapshot.device)))
        if snapshot.network_mode:
            rest.add_row("Mode", network_mode_line(snapshot))
        if snapshot.wire is not None:
            network = Text(snapshot.wire.describe())
            if snapshot.wire.cap:
                network.append(f"\n{fmt.plain(snapshot.wire.cap, 200)}", style="yellow")
            rest.add_row("Network", network)
        return Group(counts, rest)


CREDITED_LABELS = {"sync": "in global steps", "local": "in averaged steps", "diloco": "in outer steps"}
"""What a credited sample reached, by training mode (docs/projects.md#training-modes)."""


def credited_label(snapshot: Snapshot) -> str:
    """The label of the credited count: a project's unknown mode reads as the default's."""
    return CREDITED_LABELS.get(snapshot.project.training_mode, CREDITED_LABELS["sync"])
