"""The one check behind every reach into hivemind's insides: its version and the source we rely on.

The patches (:mod:`volunteer.swarm.hivemind_patches`), the private reaches
(:mod:`volunteer.swarm.hivemind_private`) and the byte counters (:mod:`volunteer.transfer`,
:mod:`volunteer.wire`) each apply only to the exact hivemind they were written against: the version below and
the sha256 of ``inspect.getsource`` of every function they replace or depend on. On any other hivemind they
step aside with one log line each, and the client works without them.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

HIVEMIND_VERSION = "1.1.12"
"""The hivemind every guarded reach was written against."""

_declined: set[str] = set()


def source_sha256(function: object) -> str | None:
    """The sha256 of ``function``'s source, or None where there is none (missing, built-in, not Python)."""
    try:
        # anything: a missing attribute is None, and getsource raises TypeError for it
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None


def matches(what: str, sources: Iterable[tuple[object, str]]) -> bool:
    """Whether this is hivemind 1.1.12 and each ``(function, sha256)`` pair is its own code.

    Otherwise says once per process that ``what`` is left out, and returns False.
    """
    import hivemind

    if hivemind.__version__ == HIVEMIND_VERSION and all(source_sha256(f) == sha for f, sha in sources):
        return True
    if what not in _declined:
        _declined.add(what)
        log.info(
            "hivemind %s is not the code volunteer's %s was written for (hivemind %s): left out",
            hivemind.__version__,
            what,
            HIVEMIND_VERSION,
        )
    return False
