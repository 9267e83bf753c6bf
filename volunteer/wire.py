"""Bytes on the wire: what this volunteer sends and receives through hivemind, and the upload cap.

**Counting.** Every byte a hivemind process exchanges with another peer passes through its ``p2pd`` control
client (``hivemind/p2p/p2p_daemon_bindings/control.py``): unary calls (the DHT, matchmaking) as
``call_unary_handler`` and the handlers registered with ``add_unary_handler``, streams (all-reduce parts,
state downloads) through the reader and writer of ``stream_open`` and of the handlers given to
``stream_handler``. :func:`count_wire_bytes` wraps those four methods of ``ControlClient`` (hivemind 1.1.12,
each checked by its source's hash, as ``volunteer.swarm.hivemind_patches`` does) so that every payload is added to
counters in shared memory, by direction and by what it is for (:data:`KINDS`, from the protocol name). The
counters are created before hivemind forks its DHT and averager processes, which inherit them; every process
claims a slot of its own, so no two processes ever add to the same number. What is counted is the payload
that hivemind hands to ``p2pd``: TCP/IP headers, libp2p's encryption and multiplexing, and ``p2pd``'s own
chatter (identify, ping, relay) are not, so the interface counts a little more (docs/bandwidth.md).

**The cap.** :class:`UploadCap` is a token bucket, empty at start: it fills at the allowed rate and what this
peer sends drains it. The rounds a peer must take part in (gradient averaging in the synchronous mode) cannot
be cut in pieces without failing them for the whole group, so the cap acts between global steps only: after
a step that left the bucket in debt it holds training back (nothing computed, nothing averaged, no state
served) until the debt is repaid, and it stretches the interval of optional rounds (state averaging, through
a :class:`RoundInterval`) so that it needs to hold back less often. A peer held back simply falls behind and
loads the swarm's state when it resumes, as any slow peer does: it never sends a partial contribution.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from volunteer.swarm.source_guard import matches

log = logging.getLogger(__name__)

KINDS = ("gradients", "state_averaging", "state_download", "dht", "other")
"""What the counted bytes were for: gradient all-reduce, parameter and optimizer-state averaging, model state
served to or loaded from peers, DHT requests (progress, matchmaking keys, leaderboard), anything else
(matchmaking calls between averagers)."""

MESSAGES = len(KINDS)
"""Index after the kinds where messages (hivemind's protobuf frames, unary calls) are counted, not bytes."""
SENT, RECEIVED = 0, 1

TX_BYTE_OVERHEAD, TX_MESSAGE_OVERHEAD = 1.01, 580
"""The interface sends about this many bytes per payload byte, plus this many per message sent (TCP/IP headers,
libp2p's encryption, multiplexing and stream set-up, and the acknowledgements of what comes back): fitted to
the namespace harness' interface counters (docs/bandwidth.md), within 2 % there."""
RX_BYTE_OVERHEAD, RX_MESSAGE_OVERHEAD = 1.08, 290
"""Likewise for what the interface receives."""
SLOTS = 32
"""Processes that can count on their own slot (main, DHT, averagers and their restarts); more share the last."""

FRAMING_SOURCES = {
    "send_protobuf": "4f5a437c202da6a91decbddddd8db8405b41993ef41ed8a6c0f2f4b292d4bd40",
    "receive_protobuf": "9d870718fbdc1c4fd296e7a45c7b8b81e9b748609d61381d87d4b194df03ac4a",
}
"""sha256 of ``P2P.send_protobuf`` and ``receive_protobuf``: a stream message starts with a one-byte marker, written
and read on its own, which is how the wrappers count messages."""

PATCHED_SOURCES = {
    "call_unary_handler": "f2704627a5ed76b512cc74679d617c3b991892d4028fb50089ffc3ecd8ffbe03",
    "add_unary_handler": "f6e499ca44aff3c7e65e71ba26558c8c4df4bf7e7a6bc970a19e6bd8616f2cbb",
    "stream_open": "002f5d5b8262c7fa3fad67ec0e07e43fd6e4c6d7cf7a302c71c03172ff4dd711",
    "stream_handler": "bb24ab95fa99bc73fdcdb01e2a45b8094284033d48c041581f73b03243b9afe7",
}
"""sha256 of ``inspect.getsource`` of each wrapped ``ControlClient`` method in hivemind 1.1.12."""


def kind_of(protocol: str) -> int:
    """Index in :data:`KINDS` for a hivemind protocol (handler) name like ``ns::GradientAverager.rpc_x``."""
    name = protocol.rsplit("::", 1)[-1]
    owner, _, method = name.rpartition(".")
    if method == "rpc_aggregate_part":
        return 0 if "Gradient" in owner else 1
    if method == "rpc_download_state":
        return 2
    if owner.startswith("DHT"):
        return 3
    return 4


# -- shared counters ---------------------------------------------------------------------------------------------

_counts: Any = None
"""``SLOTS * len(KINDS) * 2`` unsigned 64-bit counters in shared memory: slot, kind, direction."""
_next_slot: Any = None
_slot = -1
_slot_pid = -1
_installed = False


def _claim_slot() -> int:
    global _slot, _slot_pid
    slot = SLOTS - 1
    if _next_slot is not None and _next_slot.acquire(timeout=1.0):  # a process killed holding it: share
        try:
            slot = min(SLOTS - 1, int(_next_slot.value))
            _next_slot.value = slot + 1
        finally:
            _next_slot.release()
    _slot, _slot_pid = slot, os.getpid()
    return slot


def add_bytes(kind: int, direction: int, count: int) -> None:
    """Count ``count`` bytes of ``kind`` sent or received in this process (no-op before :func:`install`)."""
    counts = _counts
    if counts is None or count <= 0:
        return
    slot = _slot if _slot_pid == os.getpid() else _claim_slot()
    counts[(slot * (len(KINDS) + 1) + kind) * 2 + direction] += count


@dataclass(frozen=True)
class WireTotals:
    """Bytes counted so far by every process forked after :func:`count_wire_bytes`, by kind."""

    sent: tuple[int, ...]
    received: tuple[int, ...]
    sent_messages: int = 0
    received_messages: int = 0

    @property
    def sent_bytes(self) -> int:
        """hivemind's payload sent, counted exactly."""
        return sum(self.sent)

    @property
    def received_bytes(self) -> int:
        return sum(self.received)

    @property
    def wire_sent(self) -> int:
        """Bytes the network interface sends for this traffic: the payload and its framing (estimated)."""
        return round(self.sent_bytes * TX_BYTE_OVERHEAD + self.sent_messages * TX_MESSAGE_OVERHEAD)

    @property
    def wire_received(self) -> int:
        return round(self.received_bytes * RX_BYTE_OVERHEAD + self.received_messages * RX_MESSAGE_OVERHEAD)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        return {kind: (self.sent[i], self.received[i]) for i, kind in enumerate(KINDS)}


def totals() -> WireTotals:
    """What this process and its forked children have sent and received, by kind (zeros when not counting)."""
    sent = [0] * (len(KINDS) + 1)
    received = [0] * (len(KINDS) + 1)
    counts = _counts
    if counts is not None:
        values = list(counts)
        for slot in range(SLOTS):
            for kind in range(len(KINDS) + 1):
                base = (slot * (len(KINDS) + 1) + kind) * 2
                sent[kind] += values[base + SENT]
                received[kind] += values[base + RECEIVED]
    return WireTotals(tuple(sent[:-1]), tuple(received[:-1]), sent[-1], received[-1])


def is_counting() -> bool:
    return _installed


# -- the wrappers -------------------------------------------------------------------------------------------------


class _CountingReader:
    """An ``asyncio.StreamReader`` whose reads are counted as received bytes of one kind."""

    def __init__(self, reader: asyncio.StreamReader, kind: int) -> None:
        self._reader = reader
        self._kind = kind

    async def readexactly(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        add_bytes(self._kind, RECEIVED, len(data))
        if n == 1:  # hivemind's marker before every message
            add_bytes(MESSAGES, RECEIVED, 1)
        return data

    async def read(self, n: int = -1) -> bytes:
        data = await self._reader.read(n)
        add_bytes(self._kind, RECEIVED, len(data))
        return data

    async def readline(self) -> bytes:
        data = await self._reader.readline()
        add_bytes(self._kind, RECEIVED, len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _CountingWriter:
    """An ``asyncio.StreamWriter`` whose writes are counted as sent bytes of one kind."""

    def __init__(self, writer: asyncio.StreamWriter, kind: int) -> None:
        self._writer = writer
        self._kind = kind

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writer.write(data)
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        add_bytes(self._kind, SENT, size)
        if size == 1:  # hivemind's marker before every message
            add_bytes(MESSAGES, SENT, 1)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def _wrap_methods(client_class: Any) -> None:
    call_unary = client_class.call_unary_handler
    add_unary = client_class.add_unary_handler
    stream_open = client_class.stream_open
    stream_handler = client_class.stream_handler

    async def call_unary_handler(self: Any, peer_id: Any, proto: str, data: bytes) -> bytes:
        kind = kind_of(proto)
        add_bytes(kind, SENT, len(data))
        add_bytes(MESSAGES, SENT, 1)
        response = await call_unary(self, peer_id, proto, data)
        add_bytes(kind, RECEIVED, len(response))
        add_bytes(MESSAGES, RECEIVED, 1)
        return response

    async def add_unary_handler(self: Any, proto: str, handler: Any, balanced: bool = False) -> None:
        kind = kind_of(proto)

        async def counted(request: bytes, remote_id: Any) -> bytes:
            add_bytes(kind, RECEIVED, len(request))
            add_bytes(MESSAGES, RECEIVED, 1)
            response = await handler(request, remote_id)
            add_bytes(kind, SENT, len(response))
            add_bytes(MESSAGES, SENT, 1)
            return response

        await add_unary(self, proto, counted, balanced)

    async def stream_open_counted(self: Any, peer_id: Any, protocols: Any) -> Any:
        stream_info, reader, writer = await stream_open(self, peer_id, protocols)
        kind = kind_of(str(stream_info.proto) if getattr(stream_info, "proto", None) else next(iter(protocols)))
        return stream_info, _CountingReader(reader, kind), _CountingWriter(writer, kind)

    async def stream_handler_counted(self: Any, proto: str, handler_cb: Any, balanced: bool = False) -> None:
        kind = kind_of(proto)

        async def counted(stream_info: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await handler_cb(stream_info, _CountingReader(reader, kind), _CountingWriter(writer, kind))

        await stream_handler(self, proto, counted, balanced)

    client_class.call_unary_handler = call_unary_handler
    client_class.add_unary_handler = add_unary_handler
    client_class.stream_open = stream_open_counted
    client_class.stream_handler = stream_handler_counted


def count_wire_bytes() -> bool:
    """Count every byte hivemind sends and receives in this process and those it forks later; once.

    Call it before the DHT starts (hivemind forks the DHT and the averagers, which inherit the counters).

    Returns:
        Whether bytes are counted: False for a hivemind other than the one this was written against.
    """
    global _counts, _next_slot, _installed
    if _installed:
        return True
    from hivemind.p2p.p2p_daemon import P2P
    from hivemind.p2p.p2p_daemon_bindings.control import ControlClient

    sources = [(getattr(ControlClient, name), sha) for name, sha in PATCHED_SOURCES.items()]
    sources += [(getattr(P2P, name), sha) for name, sha in FRAMING_SOURCES.items()]
    if not matches("count of bytes on the wire", sources):
        return False
    _counts = multiprocessing.Array(ctypes.c_uint64, SLOTS * (len(KINDS) + 1) * 2, lock=False)
    _next_slot = multiprocessing.Value(ctypes.c_int, 0)
    _wrap_methods(ControlClient)
    _installed = True
    return True


# -- rates -------------------------------------------------------------------------------------------------------

RATE_WINDOW = 10.0
"""Seconds over which the upload and download rates are measured."""


class WireMeter:
    """Upload and download rates from successive readings of the totals (one reader thread at a time)."""

    def __init__(self, window: float = RATE_WINDOW, read: Callable[[], WireTotals] = totals) -> None:
        self.window = window
        self._read = read
        self._lock = threading.Lock()
        self._samples: list[tuple[float, int, int]] = []

    def read(self) -> tuple[WireTotals, float, float]:
        """The totals now, and the upload and download rates (bytes per second) over the last window."""
        now = time.monotonic()
        current = self._read()
        with self._lock:
            self._samples.append((now, current.wire_sent, current.wire_received))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.pop(0)
            t0, s0, r0 = self._samples[0]
        elapsed = now - t0
        if elapsed < 0.5:
            return current, 0.0, 0.0
        return current, (current.wire_sent - s0) / elapsed, (current.wire_received - r0) / elapsed


# -- parsing the volunteer's limits ------------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)(bit|bps|B)(/s|ps)?\s*$")
_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
_BINARY = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_rate(value: str) -> float:
    """A rate like ``5Mbit``, ``5Mbit/s``, ``20Mbps``, ``500KB/s`` or ``2MiB/s``, in bytes per second.

    ``bit`` and ``bps`` are bits, ``B`` is bytes; ``k``, ``M``, ``G`` are powers of 1000, ``Ki``, ``Mi``, ``Gi`` of
    1024. A number without a unit, or an ambiguous ``Mb``, is refused.

    Raises:
        ValueError: with what is wrong and an example.
    """
    match = _RATE.match(value)
    example = "e.g. 5Mbit (5 megabits a second), 20Mbps or 500KB/s (kilobytes a second)"
    if not match:
        raise ValueError(f"{value!r} is not a rate: give a number and a unit, {example}")
    number, prefix, binary, unit, per = match.groups()
    if unit == "bps" and per:
        raise ValueError(f"{value!r} is not a rate: {example}")
    scale = (_BINARY if binary else _PREFIX)[prefix.lower()]
    if binary and not prefix:
        raise ValueError(f"{value!r} is not a rate: {example}")
    rate = float(number) * scale / (8 if unit in ("bit", "bps") else 1)
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"{value!r} must be more than nothing: {example}")
    if rate < MIN_RATE:
        raise ValueError(f"{value!r} is below {format_rate(MIN_RATE)}, too little to train at all: {example}")
    return rate


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(|[MGT]B|[MGT]iB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1e9, "mb": 1e6, "gb": 1e9, "tb": 1e12, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_data_size(value: str) -> float:
    """A monthly data budget like ``100`` (gigabytes), ``100GB``, ``1.5TB`` or ``500MB``, in bytes."""
    match = _SIZE.match(value)
    if not match or not float(match.group(1)) > 0:
        raise ValueError(f"{value!r} is not an amount of data like 100 (gigabytes), 100GB, 1.5TB or 500MB")
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size / MONTH_SECONDS < MIN_RATE:
        raise ValueError(f"{value!r} a month is below {format_rate(MIN_RATE)} on average, too little to train")
    return size


MIN_RATE = 1000.0
"""Bytes per second: below this (8 kbit/s) even the DHT's upkeep would not fit."""
MONTH_SECONDS = 30 * 86400


def format_rate(bytes_per_second: float) -> str:
    """``5 Mbit/s``, ``640 kbit/s``: rates as internet links are sold."""
    bits = bytes_per_second * 8
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits:.0f} bit/s"


def format_bytes(count: float) -> str:
    """``12.3 MB``: decimal units, as rates are given."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


# -- the cap -----------------------------------------------------------------------------------------------------


class RoundInterval(Protocol):
    """What the cap turns: how far apart the optional communication rounds are (the training mode's knob).

    The synchronous mode stretches its state averaging (``average_state_every``); a mode with local updates or
    an outer step may stretch its own interval. ``stretch(1)`` restores the project's setting.
    """

    def stretch_rounds(self, factor: int) -> str | None:
        """Space the optional rounds ``factor`` times as far apart as the project sets them.

        Returns:
            What that means in words ("averaging state every 4 global steps instead of 1"), or None when this
            mode has nothing optional to stretch (the cap then relies on holding training back alone).
        """
        ...


MAX_STRETCH = 16
"""The farthest the cap spaces optional rounds: 16 times the project's interval."""
BURST_SECONDS = 10.0
"""The bucket holds at most this many seconds of the allowed rate: a peer under its cap for a while may send
this much at once, and no more."""
FUTILE_HOLD_SECONDS = 10.0
"""A hold this long gives up when, meanwhile, this peer kept sending at :data:`FUTILE_SHARE` of a limit or more:
traffic that holding training back does not stop (DHT lookups it answers as a full peer, rounds under way) would
keep the budget in debt for ever, and the peer would never train again."""
FUTILE_SHARE = 0.9


@dataclass(frozen=True)
class Limit:
    """One budget: a rate, and whether it counts what is received as well as what is sent."""

    rate: float
    """Bytes per second."""
    both_ways: bool = False
    label: str = "upload cap"


class UploadCap:
    """Keeps what this peer sends under its volunteer's limits, by the means described in the module docstring.

    Args:
        limits: The budgets to respect (``--max-upload``, and ``--monthly-data`` as a rate on both directions).
        read: Totals of bytes sent and received (the shared counters by default).
        clock: Monotonic seconds (tests pass their own, with a ``sleep`` that advances it).
    """

    def __init__(
        self,
        limits: list[Limit],
        read: Callable[[], WireTotals] = totals,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not limits:
            raise ValueError("an UploadCap needs at least one limit")
        self.limits = limits
        self._read = read
        self._clock = clock
        self._sleep = sleep
        self._tokens = [0.0 for _ in limits]  # empty at start: a restart never buys a burst
        self._last_time = clock()
        first = read()
        self._last_used = [self._used(limit, first) for limit in limits]
        self.stretch = 1
        self.held_seconds = 0.0
        """Seconds training was held back, in all."""
        self.action = ""
        """What the cap does now, in words, for the views; empty while it needs to do nothing."""
        self.futile = ""
        """Set when the last hold gave up (:data:`FUTILE_HOLD_SECONDS`): what this peer kept sending, in words."""
        self._stretched = ""

    @staticmethod
    def _used(limit: Limit, total: WireTotals) -> int:
        return total.wire_sent + (total.wire_received if limit.both_ways else 0)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last_time)
        self._last_time = now
        total = self._read()
        for i, limit in enumerate(self.limits):
            used = self._used(limit, total)
            burst = limit.rate * BURST_SECONDS
            self._tokens[i] = min(burst, self._tokens[i] + limit.rate * elapsed) - (used - self._last_used[i])
            self._last_used[i] = used

    def debt_seconds(self) -> float:
        """Seconds of waiting that would repay every budget's debt now (0 when none is in debt)."""
        self._refill()
        return max(0.0, *(-tokens / limit.rate for tokens, limit in zip(self._tokens, self.limits, strict=True)))

    def describe_limits(self) -> str:
        return ", ".join(f"{limit.label} {format_rate(limit.rate)}" for limit in self.limits)

    def after_global_step(self, knob: RoundInterval | None) -> float:
        """Decide after a global step: returns the seconds to hold training back (0 to go on).

        A step that left a budget in debt doubles the stretch of optional rounds (up to :data:`MAX_STRETCH`);
        a step that left every bucket more than half full halves it again.
        """
        debt = self.debt_seconds()
        full = all(t >= 0.5 * limit.rate * BURST_SECONDS for t, limit in zip(self._tokens, self.limits, strict=True))
        wanted = self.stretch
        if debt > 0:
            wanted = min(MAX_STRETCH, self.stretch * 2)
        elif full and self.stretch > 1:
            wanted = self.stretch // 2
        stretched = None
        if knob is not None and wanted != self.stretch:
            stretched = knob.stretch_rounds(wanted)
            if stretched is not None:
                self.stretch = wanted
        elif knob is not None and self.stretch > 1:
            stretched = knob.stretch_rounds(self.stretch)
        self._stretched = stretched if stretched and self.stretch > 1 else ""
        self._describe(debt)
        return debt

    def _describe(self, holding: float) -> None:
        parts = [self._stretched] if self._stretched else []
        if holding > 0:
            parts.append(f"holding training back {holding:.0f} s")
        if self.futile:
            parts.append(self.futile)
        self.action = f"{self.describe_limits()}: {'; '.join(parts)}" if parts else ""

    def hold(self, should_stop: Callable[[], bool], tick: Callable[[], None] | None = None) -> float:
        """Wait until no budget is in debt (bytes sent meanwhile count too) or ``should_stop``; returns seconds.

        Gives up after :data:`FUTILE_HOLD_SECONDS` when what this peer kept sending meanwhile would never let the
        debt be repaid, and says so in :attr:`futile` (and :attr:`action`) until a later hold succeeds.
        """
        started = self._clock()
        self.debt_seconds()
        used_before = list(self._last_used)
        self.futile = ""
        while not should_stop():
            debt = self.debt_seconds()
            if debt <= 0:
                break
            elapsed = self._clock() - started
            if elapsed >= FUTILE_HOLD_SECONDS:
                kept = [(used - before) / elapsed for used, before in zip(self._last_used, used_before, strict=True)]
                pairs = zip(kept, self.limits, strict=True)
                over = [(r, limit) for r, limit in pairs if r >= FUTILE_SHARE * limit.rate]
                if over:
                    rate, limit = over[0]
                    what = "sent and received" if limit.both_ways else "sent"
                    self.futile = (
                        f"cannot hold: with training held back this peer still {what} {format_rate(rate)} (the "
                        f"swarm's upkeep), {rate / limit.rate:.0%} of the {limit.label}"
                    )
                    break
            if tick is not None:
                tick()
            self._sleep(min(0.2, debt))
        held = self._clock() - started
        self.held_seconds += held
        self._describe(0.0)
        return held


def limits_from(max_upload: float | None, monthly_data: float | None) -> list[Limit]:
    """The budgets for ``--max-upload`` (bytes per second) and ``--monthly-data`` (bytes in 30 days)."""
    limits = []
    if max_upload is not None:
        limits.append(Limit(max_upload))
    if monthly_data is not None:
        limits.append(Limit(monthly_data / MONTH_SECONDS, both_ways=True, label="monthly data"))
    return limits
