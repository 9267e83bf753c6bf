"""Waiting on and reading a running app in Pilot tests."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

WAIT_LIMIT = 5.0
"""Seconds any wait may take before the test fails."""


async def wait_for(pilot: Pilot, condition: Callable[[], object], what: str = "condition") -> None:
    """Let the app run until ``condition()`` is true, at most :data:`WAIT_LIMIT` seconds."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_LIMIT}s waiting for {what}")
        await pilot.pause(0.01)


async def wait_for_screen(pilot: Pilot, screen_type: type) -> None:
    """Wait until a screen of ``screen_type`` is on top and composed."""
    app = pilot.app
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, screen_type) and app.screen.is_mounted and app.screen.children,
        screen_type.__name__,
    )
    await pilot.pause()


def screen_text(app: App) -> str:
    """What the terminal shows right now, as plain text (dialogs over the screens below them)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def widget_text(app: App, selector: str) -> str:
    """The text inside one widget's border, with runs of whitespace (and line breaks) made one space."""
    region = app.screen.query_one(selector).content_region
    lines = screen_text(app).splitlines()[region.y : region.bottom]
    return " ".join(" ".join(line[region.x : region.right].split()) for line in lines).strip()
