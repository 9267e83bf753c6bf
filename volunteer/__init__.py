"""volunteer: a volunteer-computing client for collaborative deep learning.

The package imports nothing heavy at import time: torch, Lightning and hivemind are loaded only by the
modules that need them, so that ``volunteer --help`` and input errors answer at once.
"""

__version__ = "0.1.0"

__all__ = ["HivemindStrategy", "__version__"]


def __getattr__(name: str):
    if name == "HivemindStrategy":
        from volunteer.strategy import HivemindStrategy

        return HivemindStrategy
    raise AttributeError(f"module 'volunteer' has no attribute {name!r}")
