"""``volunteer [--project ID] ...``: contribute, headless or with the dashboard.

Headless (``--headless``, or stdout not a terminal as under ``docker run -d``), this process runs the
session. On a terminal, the session runs headless in a child process and the Textual dashboard is a client
of its status endpoint, exactly as ``volunteer attach`` is: a dashboard crash never stops training, and
hivemind's processes are never forked from a process running Textual's threads.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from volunteer.constants import ENV_PREFIX, env
from volunteer.datadir import DataDir
from volunteer.settings import Settings, parse_run_args

INTERACTIVE_CHILD_ENV = ENV_PREFIX + "INTERACTIVE_CHILD"
"""Set by the dashboard for the headless session it starts: consent is then asked through the endpoint."""


def main(argv: Sequence[str]) -> int:
    settings = parse_run_args(argv)
    headless = settings.headless if settings.headless is not None else not sys.stdout.isatty()
    interactive_child = env(INTERACTIVE_CHILD_ENV) == "1"
    if headless or interactive_child:
        return run_headless(settings, interactive=interactive_child)
    from tui.launch import run_with_dashboard

    return run_with_dashboard(list(argv), settings)


def run_headless(settings: Settings, *, interactive: bool = False) -> int:
    from volunteer.session import run_session

    data_dir = DataDir.open(settings.data_dir)
    with data_dir.lock():
        return run_session(settings, data_dir, interactive=interactive)
