"""``volunteer [--project ID] ...``: contribute, headless or with the dashboard.

Headless (``--headless``, or stdout not a terminal as under ``docker run -d``), this process runs the
session. On a terminal, the session runs headless in a child process and the Textual dashboard is a client
of its status endpoint, exactly as ``volunteer attach`` is: a dashboard crash never stops training, and
hivemind's processes are never forked from a process running Textual's threads. This module only decides;
the CLI (:mod:`volunteer.cli`) starts the front end it names, so the core never imports ``tui``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from volunteer.constants import INTERACTIVE_CHILD_ENV, env
from volunteer.datadir import DataDir
from volunteer.settings import Settings, parse_run_args


def plan_run(argv: Sequence[str]) -> tuple[Settings, bool]:
    """The settings for ``volunteer [flags]``, and whether the dashboard should show the session."""
    settings = parse_run_args(argv)
    headless = settings.headless if settings.headless is not None else not sys.stdout.isatty()
    return settings, not (headless or interactive_child())


def interactive_child() -> bool:
    """Whether this process is the headless session a dashboard started (consent goes through the endpoint)."""
    return env(INTERACTIVE_CHILD_ENV) == "1"


def run_headless(settings: Settings, *, interactive: bool = False) -> int:
    from volunteer.contribution.session import run_session

    data_dir = DataDir.open(settings.data_dir)
    with data_dir.lock():
        return run_session(settings, data_dir, interactive=interactive)
