"""Immutable statistics snapshots: the only thing views (TUI, headless log, status endpoint) see.

A running session publishes a new :class:`Snapshot` at least once a second. Views never reach into
training internals; they render snapshots and send :class:`Command` values back. Everything here is
plain data that round-trips through JSON (``to_dict`` / ``from_dict``), so a TUI can attach over HTTP.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class State(str, enum.Enum):
    """What the session is doing."""

    STARTING = "starting"
    DOWNLOADING = "downloading"
    WAITING_FOR_CONSENT = "waiting_for_consent"
    CONNECTING = "connecting"
    LOADING_STATE = "loading_state"
    TRAINING = "training"
    RECONNECTING = "reconnecting"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


UNHEALTHY_STATES = frozenset({State.FAILED.value, State.STOPPED.value})
"""States in which a session is not contributing and will not by itself: the health check's failures."""


class Command(str, enum.Enum):
    """What a view can ask of a running session."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FINISH = "finish"
    """Leave after the current global step, so no contributed sample is wasted."""
    TRUST = "trust"
    """Consent to run the project's code (answers State.WAITING_FOR_CONSENT)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ProjectInfo:
    """Which project is being trained."""

    name: str = ""
    repo: str = ""
    """Hub repository id, local path or "demo"."""
    revision: str = ""
    """The resolved commit sha ("" for local and built-in projects)."""
    run_id: str = ""
    target_batch_size: int = 0
    files: tuple[str, ...] = ()
    """The project's code files (shown when asking for consent)."""
    training_mode: str = "sync"
    """The manifest's ``[training] mode``: "sync", "local" or "diloco"; it says what a credited sample reached."""


@dataclass(frozen=True)
class DeviceInfo:
    """The device this peer trains on."""

    kind: str = "cpu"
    """"cpu" or "cuda"."""
    name: str = "CPU"
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    utilization: float | None = None
    """GPU utilisation in percent, from NVML when available."""


@dataclass(frozen=True)
class ErrorInfo:
    """An error a person can act on."""

    message: str
    hint: str | None = None


@dataclass(frozen=True)
class LeaderboardEntry:
    """One peer's public contribution record, as published in the swarm's DHT."""

    peer_id: str
    nickname: str
    samples: int
    """Samples this peer contributed to the swarm's global steps, all time."""
    samples_per_second: float
    last_seen: float
    """Unix time of the peer's latest record."""
    is_self: bool = False


@dataclass(frozen=True)
class Transfer:
    """A long download under way: the project's files, or the model state loaded from peers."""

    what: str
    """What is being fetched, in a few words ("project files", "model state")."""
    done_bytes: int = 0
    total_bytes: int | None = None
    """None until known; for the model state, an estimate (this peer's own copy of it)."""
    bytes_per_second: float = 0.0
    """Measured over the last few seconds."""
    elapsed: float = 0.0
    """Seconds since the transfer started."""

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, max(0.0, self.done_bytes / self.total_bytes))

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or None when there is no total or no rate yet."""
        if not self.total_bytes or self.bytes_per_second <= 0:
            return None
        return max(0.0, self.total_bytes - self.done_bytes) / self.bytes_per_second

    def describe(self) -> str:
        """One line for every view: ``model state 12.3 of 45.0 MB (27%), 2.1 MB/s, 16 s left``."""
        done = f"{self.what} {_megabytes(self.done_bytes)}"
        if self.total_bytes:
            done += f" of {_megabytes(self.total_bytes)} MB ({100 * (self.fraction or 0):.0f}%)"
        else:
            done += " MB"
        parts = [done]
        if self.bytes_per_second > 0:
            parts.append(f"{_megabytes(self.bytes_per_second)} MB/s")
        eta = self.eta
        if eta is not None and math.isfinite(eta):
            parts.append(f"{eta:.0f} s left" if eta < 120 else f"{eta / 60:.0f} min left")
        return ", ".join(parts)


@dataclass(frozen=True)
class KindBytes:
    """hivemind's payload of one kind of traffic (``volunteer.wire.KINDS``), counted exactly, without framing."""

    kind: str
    """``gradients``, ``state_averaging``, ``state_download``, ``dht`` or ``other`` (matchmaking)."""
    sent: int = 0
    received: int = 0


@dataclass(frozen=True)
class Wire:
    """Bytes this peer exchanged with the swarm through hivemind (``volunteer.wire``), and what its cap does."""

    sent_bytes: int = 0
    """Sent since the training process started (hivemind's payloads: docs/bandwidth.md says what is counted)."""
    received_bytes: int = 0
    upload_bytes_per_second: float = 0.0
    """Measured over the last few seconds."""
    download_bytes_per_second: float = 0.0
    sent_bytes_per_sample: float | None = None
    """Bytes sent for every sample this peer computed; None before the first sample."""
    cap: str = ""
    """What the upload cap (``--max-upload``, ``--monthly-data``) is doing, in words; empty when nothing."""
    by_kind: tuple[KindBytes, ...] = ()
    """The same traffic by what it was for (payload only: the totals above add the framing)."""

    def describe(self) -> str:
        """One line for every view: ``up 4.8 Mbit/s, down 5.1 Mbit/s, 35.2 kB sent a sample``."""
        from volunteer.wire import format_bytes, format_rate

        parts = [f"up {format_rate(self.upload_bytes_per_second)}"]
        parts.append(f"down {format_rate(self.download_bytes_per_second)}")
        per_sample = self.sent_bytes_per_sample
        if per_sample is not None and math.isfinite(per_sample):
            parts.append(f"{format_bytes(per_sample)} sent a sample")
        return ", ".join(parts)


def _megabytes(value: float) -> str:
    megabytes = value / 1e6 if math.isfinite(value) else 0.0
    return f"{megabytes:,.1f}"


@dataclass(frozen=True)
class Event:
    """Something that happened, for event logs (joined, state loaded, reconnecting, recovered, error)."""

    seq: int
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class Snapshot:
    """Everything a view shows, at one moment."""

    state: State = State.STARTING
    time: float = field(default_factory=time.time)
    project: ProjectInfo = field(default_factory=ProjectInfo)
    peer_id: str = ""
    nickname: str = ""
    device: DeviceInfo = field(default_factory=DeviceInfo)
    # this machine
    session_samples: int = 0
    """Samples computed in this session."""
    session_steps: int = 0
    """Local optimizer steps (batches) in this session."""
    total_samples: int = 0
    """Samples computed, all time (this session included)."""
    total_steps: int = 0
    swarm_samples: int = 0
    """All-time samples that went into global steps the swarm took."""
    local_only_samples: int = 0
    """All-time samples computed while alone or out of sync: they did not reach a global step."""
    samples_per_second: float = 0.0
    loss: float | None = None
    loss_smoothed: float | None = None
    learning_rate: float | None = None
    uptime: float = 0.0
    reconnects: int = 0
    # the swarm
    global_epoch: int = 0
    local_epoch: int = 0
    num_peers: int = 0
    samples_accumulated: int = 0
    target_batch_size: int = 0
    swarm_samples_per_second: float = 0.0
    eta_next_step: float | None = None
    leaderboard: tuple[LeaderboardEntry, ...] = ()
    leaderboard_dropped: int = 0
    """Peer records left off the latest leaderboard: invalid, forged or beyond the entries kept."""
    last_error: ErrorInfo | None = None
    join_addresses: tuple[str, ...] = ()
    """Addresses other peers can use to join through this one."""
    network_mode: str = ""
    """"full peer" or "client mode" (dials out only: behind NAT, or asked for), once joined."""
    network_mode_reason: str = ""
    """Why: the reachability check's outcome, or the flag that chose it."""
    transfer: Transfer | None = None
    """A download under way (project files, model state), for a progress bar; None otherwise."""
    wire: Wire | None = None
    """Bytes on the wire and the upload cap's doing, once training has started."""
    last_event_seq: int | None = None
    """``Event.seq`` of the newest event, so that a view asks for events only when there are new ones;
    None where the source does not say (a view then asks every time)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Rebuild a snapshot from :meth:`to_dict` output; unknown keys are ignored (newer servers).

        Every value must have its field's type (an int may stand for a float; null leaves a field that cannot
        be None at its default), so a view never meets a value of a type it does not expect.

        Raises:
            ValueError: A value of the wrong type, or an unknown state.
        """
        return _from_mapping(cls, data)

    def replace(self, **changes: Any) -> Snapshot:
        return dataclasses.replace(self, **changes)


def event_to_dict(event: Event) -> dict[str, Any]:
    return dataclasses.asdict(event)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    return _from_mapping(Event, data)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _from_mapping(cls: Any, data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if value is None:
            # JSON has no NaN or infinity: the status endpoint writes null for them
            if "None" in hint:
                kwargs[f.name] = None
            elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                pass  # the field's default
            elif hint == "float":
                kwargs[f.name] = math.nan
            elif hint == "int":
                kwargs[f.name] = 0
            else:
                raise ValueError(f"{cls.__name__}.{f.name} must not be null")
            continue
        kwargs[f.name] = _convert(cls, f.name, hint.replace(" | None", ""), value)
    return cls(**kwargs)


@functools.cache
def _hints(cls: Any) -> dict[str, str]:
    # the module has ``from __future__ import annotations``: every field's type is its annotation's text
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


_NESTED: dict[str, Any] = {}


def _convert(cls: Any, name: str, hint: str, value: Any) -> Any:
    where = f"{cls.__name__}.{name}"
    if hint == "State":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a state name")
        return State(value)
    if hint in _NESTED:
        return _from_mapping(_NESTED[hint], value)
    if hint.startswith("tuple["):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list")
        item = hint[len("tuple[") : -len(", ...]")]
        return tuple(_convert(cls, name, item, v) for v in value)
    if hint == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {type(value).__name__}")
        return value
    if hint == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {type(value).__name__}")
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    if hint == "str":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {type(value).__name__}")
        return value
    if hint == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false")
        return value
    raise TypeError(f"{where}: no conversion for {hint}")  # a field added without one: a bug, not bad data


_NESTED.update(
    ProjectInfo=ProjectInfo,
    DeviceInfo=DeviceInfo,
    ErrorInfo=ErrorInfo,
    LeaderboardEntry=LeaderboardEntry,
    Transfer=Transfer,
    KindBytes=KindBytes,
    Wire=Wire,
)


def clean_text(text: object, limit: int | None = None, *, newlines: bool = False) -> str:
    """Text from a project or a peer, made safe to show: never markup, never terminal control.

    Control, format and unassigned characters go (escape sequences, bidi overrides, zero-width marks);
    tabs and other whitespace become a space, and so do line breaks unless ``newlines``; the result is cut to
    ``limit`` characters. Views still render it as plain text: brackets stay brackets.
    """
    if not isinstance(text, str):
        text = str(text)
    if limit is not None:
        text = text[: limit * 4]  # the cleaning below can only shorten it; bound its work
    kept = []
    for char in text:
        if char == "\n" and newlines:
            kept.append(char)
            continue
        category = unicodedata.category(char)
        if category[0] == "Z" or char in "\t\n\r\x0b\x0c":
            kept.append(" ")
        elif category[0] != "C":
            kept.append(char)
    cleaned = "".join(kept)
    return cleaned[:limit] if limit is not None else cleaned


MAX_JSON_INT = 2**63
"""Integers at or beyond this size are written as null: no figure of ours can honestly be that large."""


def json_safe(value: Any) -> Any:
    """``value`` (plain data) with what strict JSON cannot hold, or no reader expects, replaced by None:
    non-finite floats and integers too large to be true."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -MAX_JSON_INT < value < MAX_JSON_INT else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class SnapshotSource(Protocol):
    """What a view reads from and sends to: a local session, or a remote one over the status API."""

    def latest(self) -> Snapshot:
        """The newest snapshot."""
        ...

    def events_since(self, seq: int) -> list[Event]:
        """Events with ``Event.seq > seq``, oldest first."""
        ...

    def send(self, command: Command) -> None:
        """Ask the session to pause, resume, stop, finish or trust."""
        ...
