"""The ``volunteer`` command: parse, dispatch, and the one error boundary.

A :class:`~volunteer.errors.VolunteerError` becomes ``error: <message>`` and ``hint: <fix>`` on stderr and
exit status 2; anything else is a bug and keeps its traceback. Heavy modules are imported only by the
command that needs them, so ``--help`` and flag errors answer in a fraction of a second.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from volunteer.errors import VolunteerError

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
RUN = "volunteer.runner:main"


def _dispatch(target: str, argv: Sequence[str]) -> int:
    module_name, function_name = target.split(":")
    module = importlib.import_module(module_name)
    function: Callable[[Sequence[str]], int] = getattr(module, function_name)
    return function(argv)


def report_error(error: VolunteerError) -> None:
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volunteer`` console script; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return _dispatch(COMMANDS[args[0]], args[1:])
        return _dispatch(RUN, args)
    except VolunteerError as e:
        report_error(e)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
