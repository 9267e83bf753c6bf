"""What a worker process and its supervisor say to each other: small frozen dataclasses on a queue.

    worker process (contribution.training_process and .training_callback; authoring/host_worker)
        --WorkerMessage-->  supervisor (contribution.session; authoring/host_supervisor)
        <--Command, Ping--

Both the client's training process and the host's hivemind process speak it. The module imports no torch or
hivemind, so a supervisor unpickles every message without loading them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from volunteer.ledger import Counters
from volunteer.stats import Command, DeviceInfo, LeaderboardEntry, State, Transfer, Wire


class ErrorCategory(str, enum.Enum):
    """Why a worker process failed: what its supervisor does next depends on it."""

    UNREACHABLE = "unreachable"
    """No peer answered: reconnect with back-off."""
    ERROR = "error"
    """A problem only the volunteer or the author can fix (bad project, no GPU): stop with it."""
    OOM = "oom"
    """CUDA out of memory: restart with a smaller batch."""
    CRASH = "crash"
    """Anything else: restart, a few times."""


@dataclass(frozen=True)
class SwarmProgress:
    """A read-only view of the swarm's progress, as this peer's hivemind tracker sees it."""

    global_epoch: int
    """The swarm's global step: the highest epoch any non-client peer has reached."""
    local_epoch: int
    """The global step this peer's parameters are at."""
    samples_accumulated: int
    """Samples the swarm has accumulated toward the next global step."""
    target_batch_size: int
    """Samples the swarm accumulates before each global step."""
    num_peers: int
    """Peers that reported progress recently (hivemind keeps a dead peer for about a minute)."""
    num_clients: int
    """How many of those peers are in client mode (they cannot be dialled)."""
    eta_next_step: float | None
    """Estimated seconds until the next global step; 0 when it is due; None before any throughput is known."""
    local_samples_per_second: float
    """This peer's throughput, smoothed by hivemind."""
    is_synchronized: bool
    """Whether this peer is at the swarm's global step (else it will load state from peers)."""


# -- worker -> supervisor ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    """The worker's peer is in the swarm (the host's: its DHT is up)."""

    peer_id: str
    addresses: tuple[str, ...]
    initial_peers: int = 0
    """How many listed peers it bootstrapped from (the host says; the client's worker leaves it 0)."""
    network_mode: str = ""
    """"full peer" or "client mode" (``volunteer.swarm.reachability``); empty where nobody says."""
    network_mode_reason: str = ""


@dataclass(frozen=True)
class StateChanged:
    """The training process moved on (connecting, loading state, training, paused, stopping)."""

    state: State


@dataclass(frozen=True)
class Note:
    """Something for the event log: ``kind`` is the event's kind ("state_loaded", "averaged", "warning")."""

    kind: str
    message: str


@dataclass(frozen=True)
class DeviceReport:
    """The device's name, memory and load."""

    device: DeviceInfo


@dataclass(frozen=True)
class TrainingStats:
    """The client's training process, measured; sent every ``stats_interval`` and on every change of state."""

    state: State
    counters: Counters
    """This process's samples and steps, and of its samples those that went into a global step (and not)."""
    pending_samples: int
    """Computed but not yet in a global step: local-only if the process ends now."""
    samples_per_second: float
    loss: float | None = None
    loss_smoothed: float | None = None
    learning_rate: float | None = None
    progress: SwarmProgress | None = None
    transfer: Transfer | None = None
    wire: Wire | None = None
    """Bytes this process sent and received through hivemind, and what the upload cap does."""
    isolated: bool = False
    """Cut off from every known peer while training (volunteer.swarm.keeper)."""
    leaderboard: tuple[LeaderboardEntry, ...] = ()
    leaderboard_dropped: int = 0


@dataclass(frozen=True)
class HostSwarm:
    """The host's view of the swarm, from its auxiliary optimizer's tracker; sent every ``report_interval``."""

    global_epoch: int = 0
    state_epoch: int = 0
    """The global step of the state the host holds (and serves to newcomers)."""
    num_peers: int = 0
    num_clients: int = 0
    samples_accumulated: int = 0
    target_batch_size: int = 0
    eta_next_step: float | None = None
    averaging_rounds: int = 0
    """Averaging rounds (of gradients or parameters) the host took part in."""
    gradient_rounds: int = 0
    parameter_rounds: int = 0
    last_group_size: int = 0
    leaderboard: tuple[LeaderboardEntry, ...] = ()


@dataclass(frozen=True)
class Reachable:
    """The answer to a :class:`Ping`: which peers answered (peers it could not judge are left out)."""

    request: int
    answered: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    global_step: int


@dataclass(frozen=True)
class Failed:
    """The worker failed and is about to exit."""

    category: ErrorCategory
    message: str
    hint: str | None = None
    fatal: bool = False
    """The host's: the process failed before it was up, so a restart would fail the same way."""


@dataclass(frozen=True)
class Done:
    """The worker finished and is about to exit: ``reason`` is "max_steps", "finished" or "stopped"."""

    reason: str = "max_steps"


WorkerMessage = (
    Joined
    | StateChanged
    | Note
    | DeviceReport
    | TrainingStats
    | HostSwarm
    | Reachable
    | CheckpointSaved
    | Failed
    | Done
)


# -- supervisor -> worker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    """Ask the host's hivemind process which of the peers at ``addresses`` answer (a :class:`Reachable` comes back)."""

    request: int
    addresses: tuple[str, ...]


WorkerCommand = Command | Ping
"""The client's worker takes PAUSE, RESUME, STOP and FINISH; the host's takes STOP and :class:`Ping`."""
