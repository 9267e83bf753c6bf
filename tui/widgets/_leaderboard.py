"""The leaderboard: every peer's contribution, this peer highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from tui import format as fmt
from volunteer.stats import LeaderboardEntry, Snapshot

SELF_STYLE = "bold #ffd54f"

MIN_NAME_WIDTH = 6
"""Nicknames are never cut shorter than this; below it, the table scrolls sideways."""


def ranked(entries: tuple[LeaderboardEntry, ...]) -> list[LeaderboardEntry]:
    """Entries by samples contributed, most first; ties by nickname for a stable order."""
    return sorted(entries, key=lambda entry: (-entry.samples, entry.nickname, entry.peer_id))


class Leaderboard(DataTable):
    """Peers with nickname, samples contributed, samples/s and last seen."""

    BORDER_TITLE = "Leaderboard"

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The snapshot whose leaderboard is shown; "last seen" is measured from its time."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="none", zebra_stripes=True)
        self._shown: tuple[object, ...] | None = None
        """What the table shows now (name width and rows): a snapshot that would show the same is skipped."""

    def on_mount(self) -> None:
        self._fill()

    def watch_snapshot(self) -> None:
        if self.is_mounted:
            self._fill()

    def on_resize(self) -> None:
        self._fill()

    def _fill(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            shown: tuple[object, ...] = ()
            if shown != self._shown:
                self._shown = shown
                self._rebuild_columns()
                self.border_subtitle = ""
            return
        entries = ranked(snapshot.leaderboard)
        rows = [
            (
                f"▶{rank}" if entry.is_self else str(rank),
                fmt.plain(entry.nickname, 200).strip() or fmt.short_id(entry.peer_id),
                fmt.count(entry.samples),
                fmt.rate(entry.samples_per_second),
                fmt.ago(snapshot.time - entry.last_seen),
                entry,
            )
            for rank, entry in enumerate(entries, start=1)
        ]
        name_width = self._name_width(rows)
        shown = (
            name_width,
            snapshot.leaderboard_dropped,
            tuple((*row[:5], row[5].is_self, row[5].peer_id) for row in rows),
        )
        if shown == self._shown:
            return  # a rebuild costs far more than this comparison: most polls change nothing here
        self._shown = shown
        self._rebuild_columns()
        for rank, name, samples, speed, seen, entry in rows:
            style = SELF_STYLE if entry.is_self else ""
            if len(name) > name_width:
                name = name[: name_width - 1] + "…"
            self.add_row(
                Text(rank, style=style, justify="right"),
                Text(name, style=style),
                Text(samples, style=style, justify="right"),
                Text(speed, style=style, justify="right"),
                Text(seen, style=style, justify="right"),
            )
        me = next((rank for rank, entry in enumerate(entries, start=1) if entry.is_self), None)
        subtitle = f"you: #{me} of {len(entries)}" if me else f"{len(entries)} peers"
        if snapshot.leaderboard_dropped:
            subtitle += f" · {fmt.count(snapshot.leaderboard_dropped)} records dropped"
        self.border_subtitle = subtitle

    def _rebuild_columns(self) -> None:
        # Columns only ever widen in a DataTable: rebuild them so widths follow the current rows.
        self.clear(columns=True)
        self.add_column(Text("#", justify="right"), key="rank")
        self.add_column("Peer", key="peer")
        self.add_column(Text("Samples", justify="right"), key="samples")
        self.add_column(Text("Speed", justify="right"), key="speed")
        self.add_column(Text("Seen", justify="right"), key="seen")

    def _name_width(self, rows: list[tuple[str, str, str, str, str, LeaderboardEntry]]) -> int:
        """The widest nickname that keeps every column in view (long nicknames are cut with …)."""
        headers = ("#", "", "Samples", "Speed", "Seen")
        texts = [headers[:5], *(row[:5] for row in rows)]
        others = sum(max(len(str(cells[column])) for cells in texts) for column in (0, 2, 3, 4))
        available = self.scrollable_content_region.width - others - 2 * self.cell_padding * 5
        return max(MIN_NAME_WIDTH, available)
