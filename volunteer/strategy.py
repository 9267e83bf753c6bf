"""HivemindStrategy: collaborative training over the internet for Lightning 2.6 on hivemind 1.1.12.

Every peer runs one process on one device. Gradients accumulate across all peers until the swarm has
processed ``target_batch_size`` samples; then every peer averages gradients with the others and takes the
optimizer step together. One such step is a *global step* (hivemind calls it an epoch).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hivemind
import torch
from hivemind.utils.timed_storage import get_dht_time
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import Strategy, StrategyRegistry
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from typing_extensions import override

from volunteer.constants import initial_peers_from_env
from volunteer.errors import StrategyConfigError, SwarmError
from volunteer.protocol import SwarmProgress
from volunteer.stats import KindBytes, Transfer, Wire
from volunteer.swarm import reachability
from volunteer.swarm.auxiliary import trained_together
from volunteer.swarm.hivemind_patches import apply_group_patches, apply_hivemind_patches, apply_step_patches
from volunteer.swarm.hivemind_private import read_swarm_before_a_blind_step, reread_progress_now
from volunteer.swarm.keeper import SoloGuard, SwarmKeeper, swarm_keeper_env
from volunteer.swarm.large_batch import ClipAtGlobalStep, initialize_state, keep_steps_across_state_rounds
from volunteer.swarm.multiaddrs import parse_listen_addresses, parse_peers
from volunteer.transfer import TransferMeter, count_state_bytes, meter_state_loads
from volunteer.wire import UploadCap, WireMeter, count_wire_bytes, limits_from

log = logging.getLogger(__name__)

DEFAULT_HOST_MADDRS = ("/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1")


class HivemindStrategy(Strategy):
    """Train one LightningModule collaboratively with every peer of a hivemind swarm.

    Args:
        target_batch_size: Samples the whole swarm accumulates before every peer takes the optimizer step
            together. Tune the learning rate for this batch size.
        run_id: The swarm's name: peers with the same ``run_id`` (and DHT) train together.
        batch_size: Samples each local step contributes. By default it is read from every batch, so a short
            last batch is counted exactly.
        initial_peers: Multiaddresses of peers to join, as a list or one comma/space separated string. When
            not given, the ``INITIAL_PEERS`` (or ``VOLUNTEER_INITIAL_PEERS``) environment variable is used;
            with neither, this peer starts a new swarm.
        host_maddrs: Multiaddresses to listen on (default: every interface, a random TCP and QUIC port).
        announce_maddrs: Multiaddresses other peers should use to reach this one (public IP behind NAT).
        use_ipfs: Use the public IPFS DHT to find peers.
        use_relay: Allow connections through relays (needed to reach peers behind NAT).
        use_auto_relay: Look for a relay and advertise through it when this peer is behind NAT.
        client_mode: Make outgoing connections only: for peers that cannot accept connections. ``None`` (the
            default): ask the initial peers to dial this one back, and use client mode if none could
            (``volunteer.swarm.reachability``). With an upload cap (``max_upload``, ``monthly_data``) it also
            uses client mode when another full peer is training: a full peer answers the swarm's DHT lookups
            and reduces others' averaging parts, traffic that grows with the swarm and would be sent on this
            peer's budget. ``strategy.network_mode`` says which, and why.
        identity_path: File holding this peer's private key. Created on first use, so the peer id (and the
            address other peers use) stays the same across restarts.
        wait_timeout: Seconds the DHT waits for a reply from a peer.
        bootstrap_timeout: Seconds to wait for the initial peers (hivemind's default when ``None``).
        ensure_bootstrap_success: Fail when no initial peer answers (else start alone).
        dht: An existing, started ``hivemind.DHT`` to use; the strategy will not shut it down.
        dht_opts: Further keyword arguments for ``hivemind.DHT`` (e.g. ``record_validators``).
        matchmaking_time: Seconds to wait for peers to join an averaging round (at most: a round assembles as
            soon as every peer the swarm's progress shows training has joined).
        averaging_timeout: Seconds after which a hanging averaging round is cancelled.
        load_state_timeout: Seconds to wait when downloading state from another peer.
        verbose: Log hivemind's progress messages at INFO level.
        reuse_grad_buffers: Accumulate in the parameters' ``.grad`` buffers (saves memory); the module's
            ``optimizer_zero_grad`` is disabled while training.
        delay_grad_averaging: Average gradients in the background (needs ``delay_optimizer_step``).
        delay_optimizer_step: Run the optimizer in the background (needs ``offload_optimizer``).
        delay_state_averaging: Average parameters and optimizer state in the background (hivemind's default).
            In the foreground, each global step with other peers waits for a second matchmaking round, which
            halved two peers' global steps per second (``benchmarks/latency_ladder.py``, issue 14).
        offload_optimizer: Keep the optimizer and its state in host memory.
        scheduler_fn: ``callable(optimizer) -> LRScheduler`` for hivemind to build and step at every global
            step. Required instead of ``configure_optimizers`` schedulers when the optimizer is offloaded or
            delayed, since hivemind then creates the optimizer itself.
        grad_compression: Compression for gradients (e.g. ``hivemind.compression.Float16Compression()``).
        state_averaging_compression: Compression for parameter and state averaging.
        load_state_compression: Compression for state sent to newcomers.
        averager_opts: Keyword arguments for hivemind's gradient and state averagers.
        tracker_opts: Keyword arguments for hivemind's progress tracker.
        print_join_message: Print how other machines can join once the DHT is up.
        progress_report_interval: Publish this peer's progress to the DHT at most this often (seconds) while
            the swarm is far from the target. hivemind publishes after every local step, which costs a fast
            model a third of its throughput; peers read progress every 0.5 s or more anyway. The first report
            of a global step, every report within two batches of the target and, with other peers, within two
            intervals of its estimated time go out at once, so that no peer waits for them. 0 publishes after
            every step. Default: 0.5, or 5 in diloco mode. Whatever the interval, with other peers training
            the tracker re-reads the swarm's progress at once when its estimate of the time to the target is
            later than this peer alone would need (a stale estimate; otherwise it waits up to 10 s).
        keep_swarm: While training, find the other peers again after a partition or a dead bootstrap
            (``volunteer.swarm.keeper``): dial every peer ever seen, and hold global steps while cut off.
        swarm_keeper_opts: Keyword arguments for :class:`volunteer.swarm.keeper.SwarmKeeper` (``interval``,
            ``max_backoff``, ``isolation_hold``).
        max_upload: Bytes per second this peer may send on average (``volunteer.wire.UploadCap``): optional
            rounds are spaced out and training is held back between global steps to stay under it.
        monthly_data: Bytes this peer may send and receive in 30 days, enforced as an average rate likewise.
        mode: How peers combine their work (docs/projects.md#training-modes): ``"sync"`` averages gradients at
            every global step; ``"local"`` steps on local gradients and averages parameters every
            ``average_state_every`` global steps (hivemind's ``use_local_updates``); ``"diloco"`` takes
            ``inner_steps`` steps of the module's optimizer, then an outer Nesterov SGD step on the averaged
            parameter change (:mod:`volunteer.swarm.diloco`).
        inner_steps: diloco: local steps each peer takes per outer step.
        outer_lr: diloco: the outer SGD's learning rate.
        outer_momentum: diloco: the outer SGD's Nesterov momentum.
        powersgd_rank: sync: average gradients with hivemind's PowerSGD averager at this rank.
        **optimizer_kwargs: Further keyword arguments for ``hivemind.Optimizer``.

    Raises:
        StrategyConfigError: for arguments that cannot work (non-positive sizes, bad peer addresses,
            inconsistent delay options), and at setup for a Trainer or module hivemind cannot train.
    """

    strategy_name = "hivemind"

    def __init__(
        self,
        target_batch_size: int = 1024,
        run_id: str = "lightning_run",
        batch_size: int | None = None,
        initial_peers: str | Sequence[str] | None = None,
        host_maddrs: str | Sequence[str] | None = None,
        announce_maddrs: str | Sequence[str] | None = None,
        use_ipfs: bool = False,
        use_relay: bool = True,
        use_auto_relay: bool = False,
        client_mode: bool | None = None,
        identity_path: str | os.PathLike | None = None,
        wait_timeout: float = 3.0,
        bootstrap_timeout: float | None = None,
        ensure_bootstrap_success: bool = True,
        dht: hivemind.DHT | None = None,
        dht_opts: dict[str, Any] | None = None,
        matchmaking_time: float = 5.0,
        averaging_timeout: float = 30.0,
        load_state_timeout: float = 600.0,
        verbose: bool = False,
        reuse_grad_buffers: bool = False,
        delay_grad_averaging: bool = False,
        delay_optimizer_step: bool | None = None,
        delay_state_averaging: bool = True,
        offload_optimizer: bool | None = None,
        scheduler_fn: Callable[[torch.optim.Optimizer], LRScheduler] | None = None,
        grad_compression: Any = None,
        state_averaging_compression: Any = None,
        load_state_compression: Any = None,
        averager_opts: dict[str, Any] | None = None,
        tracker_opts: dict[str, Any] | None = None,
        print_join_message: bool = True,
        progress_report_interval: float | None = None,
        keep_swarm: bool = True,
        swarm_keeper_opts: dict[str, Any] | None = None,
        max_upload: float | None = None,
        monthly_data: float | None = None,
        mode: str = "sync",
        inner_steps: int = 100,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        powersgd_rank: int | None = None,
        **optimizer_kwargs: Any,
    ) -> None:
        super().__init__()
        from volunteer.swarm.modes import check_mode

        check_mode(
            mode,
            inner_steps=inner_steps,
            outer_lr=outer_lr,
            outer_momentum=outer_momentum,
            powersgd_rank=powersgd_rank,
            reuse_grad_buffers=reuse_grad_buffers,
            offload_optimizer=bool(offload_optimizer),
            delay_optimizer_step=bool(delay_optimizer_step),
            delay_grad_averaging=delay_grad_averaging,
            scheduler_fn=scheduler_fn is not None,
        )
        self.mode = mode
        self.inner_steps, self.outer_lr, self.outer_momentum = inner_steps, outer_lr, outer_momentum
        self._communication_interval = 1
        self._base_average_state_every = 1
        _check_positive_int("target_batch_size", target_batch_size)
        if batch_size is not None:
            _check_positive_int("batch_size", batch_size)
        if not isinstance(run_id, str) or not run_id.strip():
            raise StrategyConfigError(
                f"run_id must be a non-empty string, got {run_id!r}",
                "name the swarm, e.g. HivemindStrategy(run_id='my-project')",
            )
        for name, value in (("matchmaking_time", matchmaking_time), ("averaging_timeout", averaging_timeout)):
            if value is not None and not value > 0:
                raise StrategyConfigError(
                    f"{name} must be positive, got {value!r}", f"pass {name}= a number of seconds > 0"
                )
        if delay_optimizer_step is None:
            delay_optimizer_step = delay_grad_averaging
        if delay_grad_averaging and not delay_optimizer_step:
            raise StrategyConfigError(
                "delay_grad_averaging=True requires delay_optimizer_step=True",
                "pass delay_optimizer_step=True too, or drop delay_grad_averaging",
            )
        if offload_optimizer is None:
            offload_optimizer = bool(delay_optimizer_step)
        if delay_optimizer_step and not offload_optimizer:
            raise StrategyConfigError(
                "delay_optimizer_step=True requires offload_optimizer=True",
                "pass offload_optimizer=True (or leave it unset)",
            )
        if dht is not None and (initial_peers is not None or host_maddrs is not None or identity_path is not None):
            raise StrategyConfigError(
                "an existing dht was passed together with DHT options",
                "configure the hivemind.DHT you pass in, or pass the options and no dht",
            )

        if initial_peers is None:
            env_peers = initial_peers_from_env()
            self.initial_peers = parse_peers(env_peers, "the INITIAL_PEERS environment variable")
        else:
            self.initial_peers = parse_peers(initial_peers, "initial_peers")
        self.host_maddrs = (
            parse_listen_addresses(host_maddrs, "host_maddrs") if host_maddrs is not None else list(DEFAULT_HOST_MADDRS)
        )
        self.announce_maddrs = parse_listen_addresses(announce_maddrs, "announce_maddrs") or None

        self.target_batch_size = target_batch_size
        self.run_id = run_id
        self.batch_size = batch_size
        self.client_mode = client_mode
        self.network_mode: reachability.NetworkMode | None = None
        """Full peer or client mode, and why; known once the DHT is up."""
        self.identity_path = os.fspath(identity_path) if identity_path is not None else None
        self.print_join_message = print_join_message
        if progress_report_interval is None:
            # a diloco round lasts many batches: reports far from its end only cost bytes (the urgent ones near
            # the end still go out at once)
            progress_report_interval = DILOCO_REPORT_INTERVAL if mode == "diloco" else 0.5
        self.progress_report_interval = progress_report_interval
        self._dht_kwargs: dict[str, Any] = dict(
            use_ipfs=use_ipfs,
            use_relay=use_relay,
            use_auto_relay=use_auto_relay,
            wait_timeout=wait_timeout,
            ensure_bootstrap_success=ensure_bootstrap_success,
            **(dht_opts or {}),
        )
        if bootstrap_timeout is not None:
            self._dht_kwargs["bootstrap_timeout"] = bootstrap_timeout
        self._dht: hivemind.DHT | None = dht
        self._owns_dht = dht is None

        self.reuse_grad_buffers = reuse_grad_buffers
        self.scheduler_fn = scheduler_fn
        self._optimizer_factory_mode = bool(offload_optimizer or delay_optimizer_step or delay_grad_averaging)
        self._optimizer_kwargs: dict[str, Any] = dict(
            matchmaking_time=matchmaking_time,
            averaging_timeout=averaging_timeout,
            load_state_timeout=load_state_timeout,
            verbose=verbose,
            reuse_grad_buffers=reuse_grad_buffers,
            delay_grad_averaging=delay_grad_averaging,
            delay_optimizer_step=delay_optimizer_step,
            delay_state_averaging=delay_state_averaging,
            offload_optimizer=offload_optimizer,
            averager_opts=averager_opts,
            tracker_opts=tracker_opts,
            **optimizer_kwargs,
        )
        for key, value in (
            ("grad_compression", grad_compression),
            ("state_averaging_compression", state_averaging_compression),
            ("load_state_compression", load_state_compression),
        ):
            if value is not None:
                self._optimizer_kwargs[key] = value
        if mode == "local":
            self._optimizer_kwargs["use_local_updates"] = True
        if powersgd_rank is not None:
            from volunteer.swarm.modes import powersgd_averager

            self._optimizer_kwargs["grad_averager_factory"] = powersgd_averager(powersgd_rank)

        # filled in by Lightning's accelerator connector
        self.parallel_devices: list[torch.device] | None = None
        self.num_nodes = 1

        self._opt: hivemind.Optimizer | None = None
        self._step_batch_size: int | None = None
        self._schedulers: list[_GlobalStepScheduler] = []
        self._original_zero_grad: Callable | None = None
        self._clipping: ClipAtGlobalStep | None = None
        self._resumed_optimizer_state: dict | None = None
        self._samples_contributed = 0
        self._transfers = TransferMeter()
        self._pending_samples = 0
        self._swarm_samples = 0
        self._local_only_samples = 0
        self.keep_swarm = keep_swarm
        self.swarm_keeper_opts = dict(swarm_keeper_opts or {})
        self.swarm_event_handler: Callable[[str, str], None] | None = None
        """Called with ``(kind, message)`` when this peer loses or finds the swarm again."""
        self._keeper: SwarmKeeper | None = None
        self._solo_guard: SoloGuard | None = None
        self._grad_rounds: dict[int, Any] = {}  # local epoch -> the gradient-averaging round begun at it
        self._judging: list[tuple[Any, int]] = []  # (round, samples) whose outcome is not known yet
        self._limits = limits_from(max_upload, monthly_data)
        self._cap: UploadCap | None = None
        self._wire_meter = WireMeter()
        self._cap_told = (1, False, -math.inf)  # the stretch, whether a hold gave up, and when the cap last spoke
        self.idle_handler: Callable[[], None] | None = None
        """Called every fraction of a second while the upload cap holds training back (to obey commands)."""

    # -- properties ---------------------------------------------------------------------------------------

    @property
    def dht(self) -> hivemind.DHT | None:
        """The hivemind DHT, once training has started (or the one passed in)."""
        return self._dht

    @property
    def hivemind_optimizer(self) -> hivemind.Optimizer | None:
        """The ``hivemind.Optimizer`` wrapping the module's optimizer, from the first training batch on."""
        return self._opt

    @property
    def num_peers(self) -> int:
        """Peers training in the swarm, this one included (1 before the swarm is known)."""
        if self._opt is None:
            return 1
        return max(1, self._opt.tracker.global_progress.num_peers)

    @property
    def swarm_keeper(self) -> Any:
        """The :class:`~volunteer.swarm.keeper.SwarmKeeper` while training runs (``None`` if ``keep_swarm=False``)."""
        return self._keeper

    @property
    def isolated(self) -> bool:
        """Whether this peer is cut off from every peer it knows while training (see ``swarm_keeper``)."""
        return self._keeper is not None and self._keeper.state.isolated

    @property
    def samples_contributed(self) -> int:
        """Samples this peer has computed gradients for since training began."""
        return self._samples_contributed

    @property
    def swarm_samples(self) -> int:
        """Samples that went into global steps taken with other peers."""
        return self._swarm_samples

    @property
    def local_only_samples(self) -> int:
        """Samples that did not reach a swarm step: computed alone, or discarded for being out of sync."""
        return self._local_only_samples

    @property
    def pending_samples(self) -> int:
        """Samples accumulated toward the next global step (or in a step whose averaging has not ended)."""
        return self._pending_samples + sum(samples for _, samples in self._judging)

    @property
    @override
    def root_device(self) -> torch.device:
        if self.parallel_devices:
            device = self.parallel_devices[0]
            return device if isinstance(device, torch.device) else torch.device(device)
        return torch.device("cpu")

    @property
    @override
    def is_global_zero(self) -> bool:
        return True

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    def visible_maddrs(self) -> list[str]:
        """Addresses other peers can dial, loopback ones only when there is nothing else."""
        if self._dht is None:
            return []
        addresses = [str(a) for a in self._dht.get_visible_maddrs()]
        outside = [a for a in addresses if not _is_loopback(a)]
        return outside or addresses

    def join_message(self) -> str:
        """How another machine joins this swarm, with this peer's own addresses."""
        addresses = self.visible_maddrs()
        peers = ",".join(addresses)
        lines = [f"hivemind peer {self._dht.peer_id if self._dht else '?'} is up (run_id={self.run_id!r})."]
        lines += ["Visible addresses:"] + [f"  {a}" for a in addresses]
        lines += [
            "Other machines can join this swarm with any of:",
            f"  INITIAL_PEERS={peers} python train.py",
            f"  HivemindStrategy(initial_peers='{peers}')",
            f"  volunteer --project <id> --initial-peers {peers}",
        ]
        return "\n".join(lines)

    @property
    def communication_interval(self) -> int:
        """This peer communicates in one of every this many rounds where its mode would (1: all of them)."""
        return self._communication_interval

    def set_communication_interval(self, every: int) -> None:
        """Stretch the interval between this peer's communication rounds, at run time (e.g. for an upload cap).

        ``every`` = 1 restores the project's setting. What stretches, by mode:

        * ``local`` (and ``sync``'s state averaging): parameters are averaged every ``average_state_every`` x
          ``every`` global steps. In ``sync`` the gradient rounds of every global step stay: they *are* the
          training; only their parameter averaging is stretched.
        * ``diloco``: this peer averages its parameter change in one of every ``every`` outer steps; in the
          others it sends nothing and downloads the new global copy once the swarm has stepped (its samples
          of those rounds are local-only).

        The swarm never waits for this peer and never takes in a half-finished round from it. May be called
        from another thread; takes effect at the next round.
        """
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise StrategyConfigError(
                f"the communication interval must be a whole number >= 1, got {every!r}",
                "pass 1 for the project's own setting, or a larger number to communicate less often",
            )
        self._communication_interval = every
        opt = self._opt
        if opt is None:
            return
        if self.mode == "diloco":
            opt.set_communication_interval(every)  # a DiLoCoOptimizer in this mode
        else:
            opt.average_state_every = self._base_average_state_every * every

    def transfer(self) -> Transfer | None:
        """The model state download under way (bytes, rate, ETA), or None."""
        return self._transfers.snapshot()

    def wire(self) -> Wire:
        """Bytes this peer sent and received through hivemind so far, their rates, and what the cap does."""
        total, up, down = self._wire_meter.read()
        samples = self._samples_contributed
        return Wire(
            sent_bytes=total.wire_sent,
            received_bytes=total.wire_received,
            upload_bytes_per_second=up,
            download_bytes_per_second=down,
            sent_bytes_per_sample=total.wire_sent / samples if samples else None,
            cap=self._cap.action if self._cap is not None else "",
            by_kind=tuple(KindBytes(kind, sent, received) for kind, (sent, received) in total.by_kind().items()),
        )

    def progress(self) -> SwarmProgress | None:
        """The swarm's progress as this peer sees it, or ``None`` before training starts."""
        opt = self._opt
        if opt is None:
            return None
        tracker = opt.tracker
        global_progress = tracker.global_progress
        eta = tracker.estimated_next_update_time - get_dht_time()
        return SwarmProgress(
            global_epoch=max(global_progress.epoch, opt.local_epoch),
            local_epoch=opt.local_epoch,
            samples_accumulated=global_progress.samples_accumulated,
            target_batch_size=global_progress.target_batch_size,
            num_peers=max(1, global_progress.num_peers),
            num_clients=global_progress.num_clients,
            eta_next_step=max(0.0, eta) if math.isfinite(eta) else None,
            local_samples_per_second=tracker.performance_ema.samples_per_second,
            is_synchronized=opt.is_synchronized_with_peers(),
        )

    # -- set-up ---------------------------------------------------------------------------------------------

    @override
    def setup_environment(self) -> None:
        if self.parallel_devices is not None and len(self.parallel_devices) > 1:
            raise StrategyConfigError(
                f"HivemindStrategy trains on one device per process, got {len(self.parallel_devices)} devices",
                "use Trainer(devices=1) and start one process (one peer) per GPU",
            )
        if self.num_nodes > 1:
            raise StrategyConfigError(
                f"HivemindStrategy does not use num_nodes (got {self.num_nodes})",
                "use Trainer(num_nodes=1) on every machine; machines find each other through initial_peers",
            )
        super().setup_environment()

    @override
    def setup(self, trainer: Any) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise StrategyConfigError(
                f"accumulate_grad_batches={trainer.accumulate_grad_batches} cannot be used with HivemindStrategy",
                "remove accumulate_grad_batches: hivemind accumulates gradients up to target_batch_size itself",
            )
        self.model_to_device()
        super().setup(trainer)
        if trainer.state.fn != "fit":
            return
        if len(self.optimizers) != 1:
            raise StrategyConfigError(
                f"HivemindStrategy trains with exactly one optimizer, configure_optimizers returned "
                f"{len(self.optimizers)}",
                "return a single optimizer from configure_optimizers",
            )
        self._check_schedulers()
        self._setup_precision(trainer)
        self._start_dht()

    def _check_schedulers(self) -> None:
        for config in self.lr_scheduler_configs:
            if isinstance(config.scheduler, ReduceLROnPlateau):
                raise StrategyConfigError(
                    "ReduceLROnPlateau cannot be used with HivemindStrategy",
                    "use a scheduler that depends on the step count only (e.g. LambdaLR, OneCycleLR): "
                    "every peer must compute the same learning rate for the same global step",
                )
        if self.lr_scheduler_configs and self.scheduler_fn is not None:
            raise StrategyConfigError(
                "a scheduler came from configure_optimizers and another from scheduler_fn",
                "keep one of them: scheduler_fn, or the scheduler returned by configure_optimizers",
            )
        if self.lr_scheduler_configs and self._optimizer_factory_mode:
            raise StrategyConfigError(
                "with offload_optimizer or delayed steps hivemind builds its own optimizer, so the scheduler "
                "returned by configure_optimizers would drive an optimizer that is not used",
                "pass HivemindStrategy(scheduler_fn=lambda opt: YourScheduler(opt, ...)) instead",
            )

    def _setup_precision(self, trainer: Any) -> None:
        """fp16 needs a loss scaler that matches how gradients accumulate.

        By default hivemind copies each batch's gradients into accumulators of its own, so Lightning's own
        scaler is right: it unscales (and checks) every batch's gradients before ``hivemind.Optimizer.step``
        copies them, and skips a batch that overflowed. With ``reuse_grad_buffers`` the gradients pile up in
        ``.grad`` still scaled, and only ``hivemind.GradScaler`` knows to unscale them once, at the global
        step; handing it hivemind's own accumulators instead applies them scaled (updates thousands of times
        too large), which is why it is kept for that mode alone.
        """
        plugin = self.precision_plugin
        if not (isinstance(plugin, MixedPrecision) and plugin.scaler is not None) or not self.reuse_grad_buffers:
            return
        if trainer.gradient_clip_val:
            raise StrategyConfigError(
                "gradient_clip_val cannot be combined with precision='16-mixed' and reuse_grad_buffers=True: "
                "gradients stay scaled in .grad until the global step",
                "use precision='bf16-mixed', or reuse_grad_buffers=False, or drop gradient_clip_val",
            )
        self.precision_plugin = _HivemindMixedPrecision(plugin.precision, plugin.device)

    def _start_dht(self) -> None:
        count_wire_bytes()  # before hivemind forks the DHT (and later the averagers), which inherit the counters
        if self._limits and self._cap is None:
            self._cap = UploadCap(self._limits)
        if self._dht is None:
            if self.identity_path is not None:
                directory = os.path.dirname(os.path.abspath(self.identity_path))
                os.makedirs(directory, exist_ok=True)
            forced = self.client_mode
            self._dht = self._new_dht(bool(forced))
            if forced is None:  # nobody chose: ask peers to dial us back (volunteer.swarm.reachability)
                mode = reachability.check(self._dht, self.initial_peers)
                if not mode.client_mode and self._cap is not None and self.initial_peers:
                    if reachability.full_peer_training(self._dht, self.run_id):
                        mode = reachability.capped_client(self._cap.describe_limits())
                    else:
                        limits = self._cap.describe_limits()
                        mode = reachability.NetworkMode(False, f"{limits}: {reachability.CAPPED_BUT_NEEDED}")
                if mode.client_mode:
                    self._dht.shutdown()
                    self._dht = self._new_dht(True)
            else:
                mode = reachability.FORCED_CLIENT if forced else reachability.FORCED_FULL
            self.network_mode = mode
            if not self._dht.client_mode:
                reachability.serve(self._dht)  # so that later peers can ask this one
        elif self.network_mode is None:
            self.network_mode = reachability.NetworkMode(self._dht.client_mode, "the DHT passed in decides")
        if self.print_join_message:
            print(self.join_message(), file=sys.stderr, flush=True)

    def _new_dht(self, client_mode: bool) -> hivemind.DHT:
        try:
            return hivemind.DHT(
                initial_peers=self.initial_peers,
                host_maddrs=self.host_maddrs,
                announce_maddrs=self.announce_maddrs,
                identity_path=self.identity_path,
                start=True,
                **{**self._dht_kwargs, "client_mode": client_mode},
            )
        except Exception as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise SwarmError(
                f"could not start the hivemind DHT: {reason}",
                "check that the initial peers are reachable and their addresses current, or start "
                "without initial peers to begin a new swarm",
            ) from e

    # -- training ------------------------------------------------------------------------------------------

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.batch_size is not None:
            self._step_batch_size = self.batch_size
        else:
            try:
                self._step_batch_size = extract_batch_size(batch)
            except Exception as e:
                raise StrategyConfigError(
                    "HivemindStrategy could not infer the batch size from the batch",
                    "pass HivemindStrategy(batch_size=<samples per step>)",
                ) from e
        if self._opt is None:
            self._init_hivemind_optimizer()

    def _init_hivemind_optimizer(self) -> None:
        assert self._dht is not None, "setup() starts the DHT before training"
        (optimizer,) = self.optimizers
        if self._optimizer_factory_mode:
            optimizer_type, defaults = type(optimizer), dict(optimizer.defaults)
            # the state of an optimizer that took no step (volunteer.swarm.large_batch), not hivemind's zero step
            opt_arg: Any = lambda params: initialize_state(optimizer_type(params, **defaults))  # noqa: E731
            params = optimizer.param_groups
        else:
            opt_arg, params = (initialize_state(optimizer) if self.mode != "diloco" else optimizer), None
        apply_hivemind_patches()  # before hivemind forks its averagers, which inherit it
        apply_group_patches()  # likewise: a round assembles once every peer training has joined
        count_state_bytes()  # likewise
        apply_step_patches()
        if self.mode == "diloco":
            from volunteer.swarm.diloco import DiLoCoOptimizer

            assert self._step_batch_size is not None
            kwargs = {k: v for k, v in self._optimizer_kwargs.items() if k not in _DILOCO_SETS_ITSELF}
            opt: hivemind.Optimizer = DiLoCoOptimizer(
                dht=self._dht,
                run_id=self.run_id,
                inner_optimizer=optimizer,
                inner_steps=self.inner_steps,
                outer_lr=self.outer_lr,
                outer_momentum=self.outer_momentum,
                batch_size_per_step=self._step_batch_size,
                client_mode=self._dht.client_mode,
                **kwargs,
            )
        else:
            kwargs = dict(self._optimizer_kwargs)
            kwargs["averager_opts"] = {"initialize_optimizer": False, **(kwargs.get("averager_opts") or {})}
            opt = hivemind.Optimizer(
                dht=self._dht,
                run_id=self.run_id,
                target_batch_size=self.target_batch_size,
                batch_size_per_step=self._step_batch_size,
                optimizer=opt_arg,
                params=params,
                scheduler=self.scheduler_fn,
                # hivemind replaces this argument by the DHT's own mode; pass it so both always agree
                client_mode=self._dht.client_mode,
                **kwargs,
            )
        if self.mode == "sync" and self._optimizer_kwargs.get("delay_state_averaging"):
            keep_steps_across_state_rounds(opt.state_averager)
        if self.mode == "sync" and self.lightning_module is not None:
            # Lightning clips after every micro-batch; the large-batch step clips the mean gradient, once
            self._clipping = ClipAtGlobalStep(
                self.precision_plugin, self.lightning_module, lambda o: isinstance(o, hivemind.Optimizer)
            )
            self._clipping.attach(opt.state_averager.optimizer)
        self._opt = opt
        self._base_average_state_every = opt.average_state_every
        if self.mode == "local":
            from volunteer.swarm.modes import watch_state_rounds

            watch_state_rounds(opt, self._record_round)
        self.set_communication_interval(self._communication_interval)
        meter_state_loads(opt, self._transfers)
        self._watch_gradient_rounds(opt)
        from volunteer.swarm.hivemind_private import throttle_progress_reports

        # installed with an interval of 0 as well: it also makes the tracker re-read a stale estimate
        throttle_progress_reports(opt.tracker, _ThrottledEvent(self.progress_report_interval, opt.tracker))
        if self._resumed_optimizer_state is not None:
            opt.load_state_dict(self._resumed_optimizer_state)
            self._resumed_optimizer_state = None
        opt.load_state_from_peers()
        if self.keep_swarm and self._keeper is None:
            tracker = opt.tracker
            keeper_opts = {**swarm_keeper_env(), **self.swarm_keeper_opts}
            self._keeper = SwarmKeeper(
                self._dht,
                self.initial_peers,
                on_event=self._swarm_event,
                others_active=lambda: tracker.global_progress.num_peers >= 2,
                progress_key=tracker.training_progress_key,
                **keeper_opts,
            ).start()
            self._solo_guard = SoloGuard(self._keeper)
        self._schedulers = []
        # diloco: the module's schedulers drive its own (inner) optimizer, step by step as Lightning calls them
        for config in self.lr_scheduler_configs if self.mode != "diloco" else ():
            wrapper = _GlobalStepScheduler(config.scheduler, opt)
            # Lightning only calls step() and state_dict() on it, which the wrapper has
            config.scheduler = wrapper  # type: ignore[assignment]
            self._schedulers.append(wrapper)
        self.optimizers = [opt]
        if self.reuse_grad_buffers:
            self._disable_zero_grad()
        self._sync_schedulers()

    def _disable_zero_grad(self) -> None:
        module = self.lightning_module
        assert module is not None
        if is_overridden("optimizer_zero_grad", module):
            rank_zero_warn(
                "HivemindStrategy(reuse_grad_buffers=True) disables your `optimizer_zero_grad`: gradients must "
                "keep accumulating until the global step."
            )
        self._original_zero_grad = module.optimizer_zero_grad
        # None makes Lightning skip zero_grad (the hook's own type says it is always a method)
        module.optimizer_zero_grad = None  # type: ignore[assignment]

    def _sync_schedulers(self) -> None:
        for scheduler in self._schedulers:
            scheduler.sync()

    @override
    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        if not isinstance(optimizer, hivemind.Optimizer):
            return super().optimizer_step(optimizer, closure, model, **kwargs)
        kwargs.setdefault("batch_size", self._step_batch_size)
        self._settle_rounds()
        if self._solo_guard is not None:
            self._solo_guard.before_step(optimizer)
        if self._keeper is not None and self._keeper.holding:
            return self._step_while_cut_off(optimizer, closure, model, kwargs["batch_size"])
        if self.mode == "sync":
            read_swarm_before_a_blind_step(optimizer.tracker, kwargs["batch_size"])
        before = optimizer.local_epoch
        synchronized = optimizer.is_synchronized_with_peers()
        output = super().optimizer_step(optimizer, closure, model, **kwargs)
        self._samples_contributed += kwargs["batch_size"]
        self._pending_samples += kwargs["batch_size"]
        after = optimizer.local_epoch
        if after != before:
            # one step forward from an in-sync state, whose gradients were averaged with others, is a global
            # step we took part in; anything else (stepping alone, a jump after loading state from peers)
            # left the samples we had accumulated out of the swarm's model
            if synchronized and after == before + 1:
                control = self._grad_rounds.pop(before, None)
                if control is None and self.mode == "local" and after % optimizer.average_state_every != 0:
                    # local updates: these samples reach the swarm with the next parameter averaging round
                    self._grad_rounds = {e: r for e, r in self._grad_rounds.items() if e >= after}
                    self._settle_rounds()
                    self._sync_schedulers()
                    return output
                self._judging.append((control, self._pending_samples))
            else:
                self._local_only_samples += self._pending_samples
            self._pending_samples = 0
            self._grad_rounds = {e: r for e, r in self._grad_rounds.items() if e >= after}
            self._settle_rounds()
            self._sync_schedulers()
            self._respect_cap()
        return output

    def _watch_gradient_rounds(self, opt: hivemind.Optimizer) -> None:
        """Remember each gradient-averaging round hivemind begins, to credit its samples by its outcome."""
        averager = getattr(opt, "grad_averager", None)
        if averager is None:
            return
        begin = averager.step

        def step(*args: Any, **kwargs: Any) -> Any:
            control = begin(*args, **kwargs)
            if control is not None and not kwargs.get("wait", True):
                self._grad_rounds[opt.local_epoch] = control
            return control

        averager.step = step

    def _record_round(self, epoch: int, control: Any) -> None:
        self._grad_rounds[epoch] = control

    def _settle_rounds(self) -> None:
        """Credit the samples of global steps whose averaging has ended: swarm if with others, else local-only."""
        waiting = []
        for control, samples in self._judging:
            verdict = _averaged_with_others(control)
            if verdict is None:
                waiting.append((control, samples))
            elif verdict:
                self._swarm_samples += samples
            else:
                self._local_only_samples += samples
        self._judging = waiting

    def _step_while_cut_off(self, optimizer: Any, closure: Callable[[], Any], model: Any, batch_size: int) -> Any:
        """Cut off from every known peer: compute the batch (for its loss) but take no global step alone.

        A peer stepping alone moves its parameters (and epoch) away from the swarm's; back in the swarm, the
        others would load its state as the most advanced one. Held back, it stays behind and loads theirs.
        """
        output = closure()
        self._drop_grads()
        self._samples_contributed += batch_size
        self._local_only_samples += batch_size
        return output

    # -- the upload cap (volunteer.wire) -----------------------------------------------------------------

    def stretch_rounds(self, factor: int) -> str | None:
        """Space the optional communication rounds ``factor`` times the project's interval apart (the cap's knob).

        Goes through :meth:`set_communication_interval`, so each training mode stretches what it may: the
        synchronous mode its parameter and state averaging (gradients are averaged at every global step, so peers
        stay close between them), ``local`` its parameter averaging, ``diloco`` the outer steps this peer takes
        part in. Returns what it did in words, or None before training starts.
        """
        if self._opt is None:
            return None
        self.set_communication_interval(factor)
        if self.mode == "diloco":
            return f"joining one outer step in {factor}" if factor > 1 else "joining every outer step"
        base = self._base_average_state_every
        return f"averaging state every {base * factor} global steps instead of {base}"

    def _respect_cap(self) -> None:
        """After a global step: stretch optional rounds, and hold training back while a budget is in debt."""
        cap = self._cap
        if cap is None:
            return
        debt = cap.after_global_step(self)
        self._tell_cap(cap, debt > 0)
        if debt <= 0:
            return
        trainer = self.lightning_module.trainer if self.lightning_module is not None else None
        averagers = (getattr(self._opt, "state_averager", None), getattr(self._opt, "grad_averager", None))
        sharing = [(a, bool(a.allow_state_sharing)) for a in averagers if a is not None]
        for averager, allowed in sharing:
            if allowed:  # a newcomer's download would be sent on this peer's budget: others serve it meanwhile
                averager.allow_state_sharing = False
        try:
            cap.hold(lambda: bool(trainer is not None and trainer.should_stop), self.idle_handler)
        finally:
            for averager, allowed in sharing:
                if allowed:
                    averager.allow_state_sharing = True
        self._tell_cap(cap, False)  # a hold that gave up is news
        opt = self._opt
        stopping = trainer is not None and trainer.should_stop
        if opt is not None and not stopping and opt.local_epoch < opt.tracker.global_epoch:
            # the swarm moved on meanwhile: catch up now, or the next batches would be computed on old
            # parameters and thrown away when hivemind loads the state at the next step
            opt.load_state_from_peers()
            self._sync_schedulers()

    def _tell_cap(self, cap: UploadCap, holding: bool) -> None:
        """A bandwidth event when the cap's doing changed (its stretch, a hold giving up), else once a minute."""
        stretch, futile, told = self._cap_told
        now = time.monotonic()
        if cap.stretch != stretch or bool(cap.futile) != futile or ((holding or cap.futile) and now - told > 60):
            self._cap_told = (cap.stretch, bool(cap.futile), now)
            self._swarm_event("bandwidth", cap.action or f"{cap.describe_limits()}: back to the project's settings")

    def _drop_grads(self) -> None:
        module = self.lightning_module
        for param in module.parameters() if module is not None else ():
            if param.grad is not None:
                if self.reuse_grad_buffers:  # hivemind accumulates in these very buffers: keep them
                    param.grad.zero_()
                else:
                    param.grad = None

    def _swarm_event(self, kind: str, message: str) -> None:
        handler = self.swarm_event_handler
        if handler is not None:
            handler(kind, message)

    # -- checkpoints ---------------------------------------------------------------------------------------

    @override
    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        states = checkpoint.get("optimizer_states") or []
        if self._opt is None and states:
            # hivemind's optimizer does not exist yet: keep the state (and its global step) for it
            state = states[0]
            self._resumed_optimizer_state = state
            inner = {**state, "state": {k: v for k, v in state["state"].items() if k != "local_epoch"}}
            self.optimizers[0].load_state_dict(inner)
            return
        super().load_optimizer_state_dict(checkpoint)

    # -- collectives: one process per peer, so each is the identity -----------------------------------------

    @override
    def model_to_device(self) -> None:
        assert self.model is not None
        self.model.to(self.root_device)

    @override
    def reduce(self, tensor: Tensor | Any, *args: Any, **kwargs: Any) -> Tensor | Any:
        return tensor

    @override
    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        return tensor

    @override
    def barrier(self, *args: Any, **kwargs: Any) -> None:
        pass

    @override
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    # -- teardown --------------------------------------------------------------------------------------------

    @override
    def teardown(self) -> None:
        module = self.lightning_module
        if self._original_zero_grad is not None and module is not None:
            # put back the bound method taken in _disable_zero_grad (mypy refuses assigning to any method)
            module.optimizer_zero_grad = self._original_zero_grad  # type: ignore[method-assign]
            self._original_zero_grad = None
        if self._clipping is not None:
            self._clipping.remove()
            self._clipping = None
        self.shutdown_hivemind()
        super().teardown()

    def shutdown_hivemind(self) -> None:
        """Leave the swarm: stop the optimizer's averagers, then the DHT (unless it was passed in)."""
        if self._keeper is not None:
            keeper, self._keeper = self._keeper, None
            self._solo_guard = None
            keeper.stop()
        if self._opt is not None:
            opt, self._opt = self._opt, None
            try:
                opt.shutdown()
            except Exception:  # a failing shutdown must not hide the error that ended training
                log.exception("hivemind optimizer did not shut down cleanly")
        if self._dht is not None and self._owns_dht:
            dht, self._dht = self._dht, None
            try:
                dht.shutdown()
            except Exception:
                log.exception("hivemind DHT did not shut down cleanly")

    @classmethod
    @override
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register(
            cls.strategy_name,
            cls,
            description="Collaborative training over the internet with hivemind (volunteer)",
            override=True,
        )


class _HivemindMixedPrecision(MixedPrecision):
    """16-bit mixed precision with a ``hivemind.GradScaler``, which hivemind's optimizer drives itself.

    For ``reuse_grad_buffers=True`` only: gradients stay scaled while they accumulate in ``.grad``, and
    hivemind unscales them once, at the global step.
    """

    def __init__(self, precision: str, device: str) -> None:
        # hivemind.GradScaler subclasses torch's GradScaler, but mypy cannot see it through hivemind's missing types
        super().__init__(precision, device, scaler=hivemind.GradScaler(device=device))  # type: ignore[arg-type]

    # Lightning's pytorch Precision has this signature; mypy also holds it to fabric's, a base class of it
    @override
    def optimizer_step(  # type: ignore[override]
        self, optimizer: Any, model: Any, closure: Callable[[], Any], **kwargs: Any
    ) -> Any:
        if not isinstance(optimizer, hivemind.Optimizer):
            return super().optimizer_step(optimizer, model, closure, **kwargs)
        closure_result = closure()
        self._after_closure(model, optimizer)
        if closure_result is None and model.automatic_optimization:
            return closure_result  # backward was skipped
        optimizer.step(grad_scaler=self.scaler, **kwargs)
        self.scaler.update()  # type: ignore[union-attr]  # set in __init__, never None here
        return closure_result


class _ThrottledEvent(threading.Event):
    """An event whose ``set()`` takes effect at most once per ``interval`` seconds, except when it matters.

    hivemind's progress tracker sets its ``should_report_progress`` event after every local step, and its
    reporter thread then stores a record in the DHT each time; with many small steps a second, that traffic
    competes with training for the CPU and the GIL. Far from the target nobody needs each of those records:
    peers fetch progress every 0.5 s at best. Three reports go out at once, since a late one costs the swarm
    time at every global step (issue 14):

    * the first of a new global step (or after a reset to zero samples), so that no peer keeps reading a
      record from the step before, which hivemind does not count toward the target;
    * every report once the swarm is within ``URGENT_BATCHES`` of this peer's batches of the target (or its
      estimated time is within as many of its batch times), so that the peers that step on the estimate
      have this one's samples;
    * with other peers, every report once the swarm's estimated time to the target is within
      ``URGENT_INTERVALS`` throttle intervals, and every report while the last global step took less than
      that: this peer's view of the swarm is as old as the others' last records (and has no estimate at all
      until its first re-read after a step), so with short global steps no report was ever "near" by the
      tests above, and two peers stepped up to twice as late throttled as not;
    * the tracker's own ``set()`` at shutdown, which wakes its reporter thread to stop (throttled, the
      reporter slept on and every shutdown waited ``shutdown_timeout``).

    Every report also checks the tracker's view of the swarm (``_reread_if_stale``): with other peers seen,
    when its estimated time to the target is later than this peer alone would need, the estimate is stale and
    the tracker re-reads the swarm now (at most once per ``min_refresh_period``) instead of at the time it
    set at its last re-read (up to ``max_refresh_period``, 10 s, later). Until it re-reads, the tracker counts
    only this peer's own samples: two peers of the ladder each computed the whole target alone, for up to
    10 s of global steps, after an estimate taken while their speed records were low (issue 14).
    """

    URGENT_BATCHES = 2
    URGENT_INTERVALS = 2

    def __init__(self, interval: float, tracker: Any = None) -> None:
        super().__init__()
        self.interval = interval
        self.tracker = tracker
        self._last = -float("inf")
        self._last_epoch: int | None = None
        self._last_samples = 0
        self._batch = 0
        self._epoch_started: float | None = None
        self._last_step_seconds = float("inf")
        self._view: object = None  # the tracker's last GlobalTrainingProgress (a new object at each re-read)
        self._view_seen = -float("inf")
        self.rereads = 0

    def set(self) -> None:
        urgent = self._urgent()  # first: it follows every report, published or not
        now = time.monotonic()
        if urgent or now - self._last >= self.interval:
            self._last = now
            super().set()
        self._reread_if_stale(now)

    def _reread_if_stale(self, now: float) -> None:
        tracker = self.tracker
        if tracker is None or tracker.shutdown_triggered.is_set():
            return
        swarm = tracker.global_progress
        if swarm is not self._view:  # the fetcher re-read the swarm since the last report
            self._view, self._view_seen = swarm, now
        if swarm.num_peers <= 1 or now - self._view_seen < tracker.min_refresh_period:
            return
        dht_now = get_dht_time()
        if swarm.next_fetch_time - dht_now <= tracker.min_refresh_period:
            return  # a re-read is due anyway
        speed = tracker.performance_ema.samples_per_second
        if speed <= 0:
            return
        alone = max(0, tracker.target_batch_size - swarm.samples_accumulated) / speed
        # later than this peer alone would reach the target (or no estimate at all, after a global step)
        late = swarm.eta_next_epoch - dht_now > alone + max(self.interval, tracker.min_refresh_period)
        if late and reread_progress_now(tracker, dht_now):
            self._view_seen = now
            self.rereads += 1

    def _urgent(self) -> bool:
        tracker = self.tracker
        if tracker is None:
            return False
        if tracker.shutdown_triggered.is_set():
            return True
        local = tracker.local_progress
        batch = local.samples_accumulated - self._last_samples
        self._last_samples = local.samples_accumulated
        if batch > 0:
            self._batch = batch
        new_epoch = local.epoch != self._last_epoch
        self._last_epoch = local.epoch
        if new_epoch:
            now = time.monotonic()
            if self._epoch_started is not None:
                self._last_step_seconds = now - self._epoch_started
            self._epoch_started = now
        if new_epoch or local.samples_accumulated == 0:
            return True
        swarm = tracker.global_progress
        if swarm.num_peers > 1 and self._last_step_seconds < self.URGENT_INTERVALS * self.interval:
            return True  # global steps a few intervals short: all of each is "near the target"
        if swarm.samples_accumulated + self.URGENT_BATCHES * self._batch >= tracker.target_batch_size:
            return True
        speed = tracker.performance_ema.samples_per_second
        seconds_left = swarm.eta_next_epoch - get_dht_time()
        if speed > 0 and seconds_left <= self.URGENT_BATCHES * self._batch / speed:
            return True
        # with other peers, within a few intervals of the target a throttled record is as late as a whole
        # short global step (two peers at 32 batches: 1.4 s median latency throttled, 0.9 s not; issue 14)
        return swarm.num_peers > 1 and seconds_left <= self.URGENT_INTERVALS * self.interval


class _GlobalStepScheduler:
    """Makes a learning-rate scheduler follow the swarm's global steps exactly.

    The wrapped scheduler's ``last_epoch`` is kept equal to hivemind's ``local_epoch``: after global step
    ``n`` the learning rate is the scheduler's value for step ``n``, whether the step was taken here or
    loaded from peers. Lightning's own calls to ``step()`` only bring it up to date.
    """

    def __init__(self, scheduler: LRScheduler, opt: hivemind.Optimizer) -> None:
        self.scheduler = scheduler
        self._opt = opt

    def sync(self) -> None:
        with warnings.catch_warnings():
            # the inner optimizer may not have stepped yet when the epoch was loaded from peers
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            while self.scheduler.last_epoch < self._opt.local_epoch:
                self.scheduler.step()

    def step(self, *args: Any, **kwargs: Any) -> None:
        self.sync()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)


DILOCO_REPORT_INTERVAL = 5.0
"""Seconds between progress reports in diloco mode, unless urgent (see ``_ThrottledEvent``)."""

_DILOCO_SETS_ITSELF = frozenset(
    {
        "offload_optimizer",
        "delay_optimizer_step",
        "delay_grad_averaging",
        "reuse_grad_buffers",
        "use_local_updates",
        "grad_averager_factory",
    }
)
"""hivemind.Optimizer arguments that :class:`volunteer.swarm.diloco.DiLoCoOptimizer` fixes itself."""


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StrategyConfigError(
            f"{name} must be a positive integer, got {value!r}",
            f"pass {name}= a whole number of samples greater than 0",
        )


def _averaged_with_others(control: Any) -> bool | None:
    """Whether an averaging round ended in a group with another peer that trained (the author's host, an
    auxiliary peer, does not count: :mod:`volunteer.swarm.auxiliary`); None while it runs."""
    if control is None:
        return False
    if not control.done():
        return None
    if control.cancelled() or control.exception() is not None:
        return False
    return trained_together(control.result())


def _is_loopback(address: str) -> bool:
    parts = address.split("/")
    return len(parts) > 2 and (parts[2].startswith("127.") or parts[2] == "::1")


# importing this module makes Trainer(strategy="hivemind") work
HivemindStrategy.register_strategies(StrategyRegistry)
