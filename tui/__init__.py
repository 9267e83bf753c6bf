"""The volunteer TUI: a Textual front end that renders :class:`volunteer.stats.Snapshot` values.

It depends on the core only through ``volunteer.stats``, ``volunteer.errors`` and
``volunteer.status_client``; the core never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from volunteer.stats import SnapshotSource

__all__ = ["run_tui"]


def run_tui(source: SnapshotSource, *, attach: bool = False) -> int:
    """Run the TUI on ``source`` until the volunteer quits.

    Args:
        source: A local session, or a :class:`volunteer.status_client.StatusClient` for a headless one.
        attach: True when the session runs headless elsewhere, so quitting can leave it training.

    Returns:
        The process exit code: 0 on a normal quit, 1 after a failed session (or if the app crashed).
    """
    from tui.app import VolunteerApp

    app = VolunteerApp(source, attach=attach)
    app.run()
    return app.return_code if app.return_code is not None else 0
