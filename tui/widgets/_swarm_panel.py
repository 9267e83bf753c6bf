"""The "Swarm" panel: where the collaboration stands and how close the next global step is."""

from __future__ import annotations

import math

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui import format as fmt
from volunteer.stats import Snapshot


class SwarmPanel(Widget):
    """Global epoch, peers online, progress toward ``target_batch_size``, ETA and swarm speed."""

    BORDER_TITLE = "Swarm"

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The snapshot shown; None until the first one arrives."""

    def render(self) -> Table | Text:
        snapshot = self.snapshot
        if snapshot is None:
            return Text("waiting for the first snapshot…", style="dim")
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        epoch = Text(fmt.count(snapshot.global_epoch), style="bold")
        if snapshot.local_epoch < snapshot.global_epoch:
            epoch.append(f" (you: {fmt.count(snapshot.local_epoch)})", style="yellow")
        grid.add_row("Epoch", epoch)
        grid.add_row("Peers", Text.assemble((fmt.count(snapshot.num_peers), "bold"), " online"))
        target = snapshot.target_batch_size or snapshot.project.target_batch_size
        if 0 < target < fmt.HUGE:
            done = max(0, min(snapshot.samples_accumulated, target))
            bar = Table.grid(expand=True, padding=(0, 1))
            bar.add_column(ratio=1)
            bar.add_column(justify="right", no_wrap=True)
            bar.add_row(
                ProgressBar(total=target, completed=done, complete_style="green", finished_style="green"),
                Text(f"{100 * done / target:3.0f}%"),
            )
            grid.add_row("Next step", bar)
            grid.add_row("", Text(f"{fmt.count(snapshot.samples_accumulated)} / {fmt.count(target)} samples"))
        else:
            grid.add_row("Next step", Text("target batch size not known yet", style="dim"))
            grid.add_row("", "")
        eta = fmt.duration(snapshot.eta_next_step)
        grid.add_row("ETA", Text(eta if eta == fmt.NO_VALUE else f"~{eta}"))
        grid.add_row(
            "Swarm speed",
            Text.assemble((fmt.rate(snapshot.swarm_samples_per_second), "bold"), " samples/s"),
        )
        share = your_share(snapshot)
        grid.add_row("Your share", Text(fmt.NO_VALUE if share is None else f"{share:.0f}% of the swarm's speed"))
        return grid


def your_share(snapshot: Snapshot) -> float | None:
    """This peer's part of the swarm's samples/s, in percent; None while the swarm's speed is unknown."""
    mine, swarm = snapshot.samples_per_second, snapshot.swarm_samples_per_second
    if not (math.isfinite(mine) and math.isfinite(swarm)) or swarm <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * mine / swarm))
