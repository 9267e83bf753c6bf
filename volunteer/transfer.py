"""Progress of the long waits a newcomer sees: the project download and the model state loaded from peers.

Both report into a :class:`TransferMeter`, whose :meth:`~TransferMeter.snapshot` is a frozen
:class:`~volunteer.stats.Transfer` (bytes done and total, rate, ETA) that the session puts in its snapshots.

- The project download is measured by what lands in huggingface_hub's cache folder (:func:`watching`); the
  total comes from the repository listing.
- The model state is downloaded by hivemind's state averager, in a process of its own. :func:`count_state_bytes`
  wraps the one stream ``DecentralizedAverager._load_state_from_peers`` reads (hivemind 1.1.12, checked by the
  source's hash, as ``volunteer.swarm.hivemind_patches`` does) so that each tensor part's bytes are added to a counter
  in shared memory, which the averager inherits when hivemind forks it; the training process reads it. The
  total is this peer's own copy of the same state (parameters and optimizer state), which the swarm's has the
  size of.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from volunteer.stats import Transfer
from volunteer.swarm.source_guard import matches

log = logging.getLogger(__name__)

RATE_WINDOW = 5.0
"""Seconds over which the transfer rate is measured."""


class TransferMeter:
    """Bytes of one transfer at a time, safe to feed from one thread and read from another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._what: str | None = None
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._samples: list[tuple[float, int]] = []
        self._source: Callable[[], int] | None = None

    def start(self, what: str, total: int | None = None, done: Callable[[], int] | None = None) -> None:
        """Begin a transfer; ``done``, if given, is asked for the bytes so far whenever a snapshot is taken."""
        with self._lock:
            self._what, self._total, self._done, self._source = what, total, 0, done
            self._started = time.monotonic()
            self._samples = [(self._started, 0)]

    def add_total(self, more: int) -> None:
        """A transfer made of several files learns its total file by file."""
        with self._lock:
            self._total = (self._total or 0) + max(0, more)

    def add(self, done: int) -> None:
        self.set_done(self._done + done)

    def set_done(self, done: int) -> None:
        with self._lock:
            self._record(done)

    def _record(self, done: int) -> None:
        if self._what is None:
            return
        self._done = max(0, done)
        now = time.monotonic()
        self._samples.append((now, self._done))
        while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW:
            self._samples.pop(0)

    def finish(self) -> None:
        with self._lock:
            self._what = None

    def snapshot(self) -> Transfer | None:
        """The transfer now, or None when none is under way."""
        with self._lock:
            if self._what is None:
                return None
            if self._source is not None:
                self._record(self._source())
            (t0, d0), d1 = self._samples[0], self._done
            now = time.monotonic()
            rate = (d1 - d0) / (now - t0) if now - t0 > 0.5 else 0.0
            return Transfer(
                what=self._what,
                done_bytes=self._done,
                total_bytes=self._total,
                bytes_per_second=rate,
                elapsed=now - self._started,
            )


def folder_bytes(folder: Path) -> int:
    """Bytes in the files under ``folder``, partial downloads included (a file may vanish while we look)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


@contextlib.contextmanager
def watching(meter: TransferMeter, folder: Path, interval: float = 0.5) -> Iterator[None]:
    """Count what lands in ``folder`` (huggingface_hub's ``blobs/``, ``.incomplete`` files too) while the block runs.

    Watching the folder rather than huggingface_hub's progress bars works the same on every huggingface_hub
    version, whichever way it splits a download into files, chunks or Xet transfers.
    """
    before = folder_bytes(folder) if folder.exists() else 0

    def poll() -> None:
        meter.set_done(folder_bytes(folder) - before if folder.exists() else 0)

    try:
        with repeating(interval, poll, "volunteer-download-meter"):
            yield
    finally:
        poll()


@contextlib.contextmanager
def repeating(interval: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Run ``action`` every ``interval`` seconds in a daemon thread while the block runs (it blocks its thread)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            action()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# -- the model state, downloaded in hivemind's averager process -------------------------------------------------

PATCHED_SOURCE_SHA256 = "fe7b419d01ced5fecfe410f8a12b2a770c15ad13e37bd04298792cb3928f5857"
"""The sha256 of ``inspect.getsource(DecentralizedAverager._load_state_from_peers)`` in hivemind 1.1.12."""

_state_bytes: Any = None
"""Bytes of model state received, in shared memory (made by :func:`count_state_bytes`) so that forked averagers
add to the same counter."""
_wrapped: Any = None


def state_bytes_received() -> int:
    """Bytes of model state every averager forked from this process has received so far."""
    return int(_state_bytes.value) if _state_bytes is not None else 0


def _counting(aiter_with_timeout: Any) -> Any:
    def counted(stream: Any, timeout: float | None = None) -> Any:
        async def parts() -> Any:
            async for message in aiter_with_timeout(stream, timeout=timeout):
                part = getattr(message, "tensor_part", None)
                if part is not None:
                    _state_bytes.value += len(part.buffer)
                yield message

        return parts()

    return counted


def count_state_bytes() -> bool:
    """Count the bytes of model state hivemind downloads; call before hivemind forks its averagers.

    Returns:
        Whether the counter is in place: False for a hivemind other than the one it was written against.
    """
    global _wrapped, _state_bytes
    from hivemind.averaging import averager

    if _wrapped is not None and averager.aiter_with_timeout is _wrapped:
        return True
    method = averager.DecentralizedAverager._load_state_from_peers
    if not matches("progress of state downloads", [(method, PATCHED_SOURCE_SHA256)]):
        return False
    _state_bytes = multiprocessing.Value(ctypes.c_uint64, 0, lock=False)
    _wrapped = _counting(averager.aiter_with_timeout)
    averager.aiter_with_timeout = _wrapped
    return True


def meter_state_loads(optimizer: Any, meter: TransferMeter) -> None:
    """Show every state download of ``optimizer`` in ``meter``: the first one, and hivemind's own when this peer
    has fallen behind (hivemind calls the instance's method, so the wrapper sees both)."""
    load = optimizer.load_state_from_peers

    @functools.wraps(load)
    def metered(**kwargs: Any) -> Any:
        base = state_bytes_received()
        meter.start("model state", local_state_bytes(optimizer), done=lambda: state_bytes_received() - base)
        try:
            return load(**kwargs)
        finally:
            meter.finish()

    optimizer.load_state_from_peers = metered


def local_state_bytes(optimizer: Any) -> int | None:
    """The size of what ``hivemind.Optimizer.load_state_from_peers`` downloads, from this peer's own copy.

    That is the state averager's parameters, extra tensors and optimizer statistics, and, with gradient
    averaging, the gradient accumulators (one per parameter) that the gradient averager loads after them.
    """
    try:
        averager = optimizer.state_averager
        parameters = list(averager.main_parameters)
        tensors = parameters + list(getattr(averager, "extra_tensors", ()))
        for state in averager.optimizer.state.values():
            tensors += [value for value in state.values() if hasattr(value, "element_size")]
        if getattr(optimizer, "grad_averager", None) is not None:
            tensors += parameters
        return sum(t.numel() * t.element_size() for t in tensors)
    except Exception:  # an optimizer without a state averager (or a future hivemind): no total, still a count
        return None
