"""Flags the authoring commands share with ``volunteer`` itself, and duration flags.

The run flags (``--endpoint``, ``--data-dir``, ``--host-maddrs`` ...) are the client's own options from
:data:`volunteer.settings.RUN_OPTIONS`, with the same ``VOLUNTEER_*`` environment variables, so an author's
shell set up for the client works for these commands too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from volunteer.errors import ConfigError
from volunteer.settings import parse_duration, parse_positive_int


def checked(flag: str, parse: Callable[[str], Any], value: str | None) -> Any:
    """``parse(value)``, with a ``ValueError`` turned into a one-line :class:`ConfigError` naming ``flag``."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"{flag}: {e}", f"fix the value of {flag}") from None


def duration(flag: str, value: str | None) -> float | None:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    return checked(flag, parse_duration, value)


def positive_int(flag: str, value: str | None) -> int | None:
    return checked(flag, parse_positive_int, value)


def non_negative_int(flag: str, value: str | None) -> int | None:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if number < 0:
            raise ValueError(f"{text!r} must be 0 or more")
        return number

    return checked(flag, parse, value)


def repo_id(flag: str, value: str, example: str = "my-lab/spirals") -> str:
    """A Hub repository id (``org/name``, no revision) given with ``flag``.

    Raises:
        ProjectError: naming the flag, with an example.
    """
    from volunteer.errors import ProjectError
    from volunteer.project.ids import parse_project_id

    try:
        ref = parse_project_id(value)
    except ProjectError:
        ref = None
    if ref is None or ref.kind != "hub" or "@" in value:
        raise ProjectError(
            f"{flag} {value!r} is not a Hub repository id",
            f"write org/name (letters, digits, '-', '_', '.'), e.g. {flag} {example}",
        )
    return ref.repo
