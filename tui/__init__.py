"""The volunteer TUI: a Textual front end that renders :class:`volunteer.stats.Snapshot` values.

It depends on the core only through ``volunteer.stats``, ``volunteer.errors`` and
``volunteer.status_client``; the core never imports it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from volunteer.stats import SnapshotSource

__all__ = ["run_tui", "yield_cpu"]

DASHBOARD_NICENESS = 10
"""How much lower than training the dashboard runs: ten steps of ``nice`` give it about a tenth of the
share of a CPU that training gets when both want it, and all of what training leaves idle."""


def yield_cpu() -> None:
    """Lower this process's CPU priority so that rendering never takes a core from training.

    Children inherit the priority, so call this once every session process has been started; the
    headless session itself is never lowered. Where the system refuses, nothing changes.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.nice(DASHBOARD_NICENESS)


def run_tui(source: SnapshotSource, *, attach: bool = False) -> int:
    """Run the TUI on ``source`` until the volunteer quits.

    Args:
        source: A local session, or a :class:`volunteer.status_client.StatusClient` for a headless one.
        attach: True when the session runs headless elsewhere, so quitting can leave it training.

    Returns:
        The process exit code: 0 on a normal quit, 1 after a failed session (or if the app crashed).
    """
    from tui.app import VolunteerApp

    yield_cpu()
    app = VolunteerApp(source, attach=attach)
    app.run()
    return app.return_code if app.return_code is not None else 0
