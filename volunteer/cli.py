"""The ``volunteer`` command: parse, dispatch, and the one error boundary.

A :class:`~volunteer.errors.VolunteerError` becomes ``error: <message>`` and ``hint: <fix>`` on stderr and
exit status 2; anything else is a bug and keeps its traceback. Heavy modules are imported only by the
command that needs them, so ``--help`` and flag errors answer in a fraction of a second.

This is where the front end is chosen: the table below names the dashboard's commands (``tui.launch``) as
strings, so the rest of the core never imports the Textual front end.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from volunteer.errors import VolunteerError
from volunteer.stats import clean_text

EXIT_USAGE = 2


# sub-command -> "module:function"; each function takes the remaining arguments and returns an exit status
COMMANDS: dict[str, str] = {
    "attach": "tui.launch:attach_main",
    "demo": "tui.launch:demo_main",
    "doctor": "volunteer.doctor:main",
    "status": "volunteer.status_command:main",
    "init": "volunteer.authoring.init:main",
    "check": "volunteer.authoring.check:main",
    "publish": "volunteer.authoring.publish:main",
    "host": "volunteer.authoring.host:main",
}
DASHBOARD = "tui.launch:run_with_dashboard"
"""``volunteer [flags]`` on a terminal: a headless child session and the dashboard as its client."""


def _resolve(target: str) -> Callable[..., int]:
    module_name, function_name = target.split(":")
    function: Callable[..., int] = getattr(importlib.import_module(module_name), function_name)
    return function


def _dispatch(target: str, argv: Sequence[str]) -> int:
    return _resolve(target)(argv)


def _run(argv: Sequence[str]) -> int:
    """``volunteer [flags]``: the session, headless in this process or under the dashboard."""
    from volunteer.contribution.run import interactive_child, plan_run, run_headless

    settings, dashboard = plan_run(argv)
    if dashboard:
        return _resolve(DASHBOARD)(list(argv), settings)
    return run_headless(settings, interactive=interactive_child())


def report_error(error: VolunteerError) -> None:
    """``error:`` and ``hint:`` lines on stderr; what a project, a peer or a path put in them cannot drive the
    terminal (escape sequences and other control characters are dropped)."""
    print(f"error: {clean_text(error.message, newlines=True)}", file=sys.stderr)
    if error.hint:
        print(f"hint: {clean_text(error.hint, newlines=True)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volunteer`` console script; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return _dispatch(COMMANDS[args[0]], args[1:])
        return _run(args)
    except VolunteerError as e:
        report_error(e)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
