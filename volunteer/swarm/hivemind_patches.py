"""Fixes to hivemind 1.1.12 that we apply at run time, since we cannot change the release we depend on.

**Matchmaking polls the DHT in a busy loop.** While an averager looks for a group, hivemind's
``PotentialLeaders.pop_next_leader`` (``hivemind/averaging/matchmaking.py``) asks for a fresh list of
potential leaders whenever its queue is empty, and ``_update_queue_periodically`` answers at once with another
``GroupKeyManager.get_averagers``: a ``DHT.get`` sent to the DHT process through an ``MPFuture`` (pickling,
``share_memory_``, ``_ResourceSharer``). When nobody else is looking for a group, as for a lone peer or one
that accumulates faster than the others, the queue stays empty, so the two coroutines wake each other with
one DHT lookup after another for the whole matchmaking window; a peer that reaches ``target_batch_size``
every few seconds is nearly always in that window. py-spy shows the averager process in ``pop_next_leader``,
``_update_queue_periodically`` and ``MPFuture`` plumbing, and the DHT process serving the gets; on a 2-core
machine the two used 35-40 % of a core each, taken from training (``docs/benchmarks.md``). We counted
about 680 lookups per second for a lone averager, and 66-158 per second on a lone training peer whose cores
were busy (``benchmarks/matchmaking_cpu.py``).

We rate-limit the lookups: consecutive ones start at least :func:`lookup_interval` apart, a twentieth of the
averager's ``min_matchmaking_time`` (hivemind.Optimizer's ``matchmaking_time``), at most 0.5 s. A peer
declares itself for at least ``min_matchmaking_time`` seconds, so it is still found within 5 % of that
window (0.25 s at our default of 5 s, 0.5 s at hivemind's 15 s). A leader assembles its group at its
declared expiration anyway, so the all-reduce starts no later; only a group that fills up before then
(``target_group_size``) may fill up one interval later at most. Everything else in the function is hivemind's
code unchanged.

The patch replaces a method of hivemind's class in this process, so averagers forked after
:func:`apply_hivemind_patches` inherit it (hivemind forks them; see ``volunteer.contribution.training_process``).
It applies only to the exact source it was written against, and leaves any other hivemind untouched, with one
log line.

**The progress tracker forgets this peer's own samples.** Every 0.5 s or more, hivemind's ``ProgressTracker``
(``hivemind/optim/progress_tracker.py``) replaces the swarm's progress with what it reads from the DHT,
this peer's own record included, although the peer knows its own progress exactly and the record in the
DHT is as old as its last report (stored by a background thread). A record from an earlier global step is
not counted at all, so the tracker may restart counting toward the target from nothing: with global steps
shorter than the refresh, a lone peer took up to twice the target before stepping (issue 14,
``tests/integration/test_step_latency.py``). :func:`apply_tracker_patch` makes the tracker read its own
record from its local progress instead; every other peer's record is used as hivemind uses it.

**A lone peer schedules gradient averaging with nobody.** Near every global step,
``hivemind.Optimizer._maybe_schedule_gradient_averaging`` asks the gradient averager process to begin
matchmaking (a blocking round trip to that process, then a DHT declaration and lookups there), and at the
step ``_begin_averaging_gradients`` cancels the round when the tracker sees no other peer. With global steps
of a few hundred milliseconds that round trip was a tenth of each step on a busy 2-core machine (issue 14).
We schedule only when the tracker sees another peer. Nothing else changes: at the step, hivemind averages
only with ``num_peers > 1`` anyway, and starts a round on the spot if none was scheduled.

**A failed gradient round stepped on zeros.** ``_begin_averaging_gradients`` began the round with
``grad_averager.step(reset_accumulators=True)``, which empties the accumulators before the round's outcome is
known; when the round then fails (a peer left, a time-out), ``_average_gradients_and_load_into_optimizer`` falls
back to "the local gradients" by reloading those empty accumulators (scaled by ``1 / 0 -> 0``): the optimizer
stepped on zero gradients, the global step's samples were lost, and momentum or Adam still moved the
parameters. Found by the two-peer golden test (``tests/integration/test_strategy_golden_swarm.py``, a peer
leaving: 3 of 4 runs). Our version keeps the accumulators until ``_update_global_epoch`` resets them after the
step, so the fallback is this peer's own mean, as hivemind intends (except with ``delay_grad_averaging``, whose
next batches accumulate while the round runs).

**A global step that averages with nobody used the last batch's gradient only.** When
``_begin_averaging_gradients`` begins no round (no other peer, no round scheduled, or a scheduled one it could
not use), ``_update_global_epoch`` falls back to ``grad_averager.load_accumulators_into_averager_()``: that
puts the mean of the accumulated gradients into the averager's buffers, which are the optimizer's gradients
only with ``offload_optimizer``. Without it (the strategy's default) the optimizer stepped on whatever
``.grad`` held, the last micro-batch's gradient, and the other samples of the global step were thrown away.
hivemind as released reaches that path rarely, since it schedules a round before nearly every step and the
"no other peers" branch of a scheduled round loads the local mean properly; the scheduling patch above made
it every step of a lone peer (issue 22: 1/K of the samples of every lone global step since 619588b). So
:func:`_begin_averaging_gradients` loads the local mean into the optimizer whenever no round began, as
hivemind's own ``_load_local_gradients_into_optimizer`` does for its "no other peers" case; the fallback's
second copy into the averager's buffers after it changes nothing the optimizer uses.

**A peer whose own progress record is not in the DHT yet does not count itself.** The tracker patch above put
this peer's local progress in place of its published record, but only where one was published: a newcomer,
or any peer at a swarm's start, read the others' records without its own, so with one other peer it saw
``num_peers == 1`` (that other peer), scheduled no round and stepped alone on its own samples while the other
stepped in a round without it (the two-peer golden test, 1 run of 6: "tracker saw 0 peers" at the first step).
Its own local progress is now added whenever its record is missing (not when it said goodbye).

:func:`apply_step_patches` applies these (and the scheduling of state rounds, below) to the main process only
(the tracker is a thread there, the optimizer's step runs there), under the same version and source checks,
all or none.

**Every averaging round waits out the whole matchmaking window.** A leader assembles its group at the
expiration it declared, ``max(scheduled_time, now + min_matchmaking_time)`` (``PotentialLeaders.begin_search``),
unless ``target_group_size`` peers joined first, and that is ``None`` (never) in ``hivemind.Optimizer``. The
optimizer schedules a gradient round as soon as its estimated time to the target falls under
``matchmaking_time``, so when global steps are shorter than that window every global step with other peers
waited for the rest of it: two peers at 32 batches a step took 3 s a step at ``matchmaking_time`` 3 s, for
0.3 s of compute (issue 14, ``docs/benchmarks.md``). The window exists to wait for peers nobody knows about;
the swarm's progress says who is training. So the scheduling patches send, in the round's ``gather`` data
(which hivemind sends to the leader with every join request and does not use for gradients; for state
rounds it holds the next epoch, which only an option ``hivemind.Optimizer`` never sets reads), how many
peers this peer's tracker sees training (:func:`expected_group_size`), and :func:`apply_group_patches` makes a
leader assemble as soon as the peers that sent such a count, itself included, are at least as many as the
largest count any of them sent. Peers without the count (hivemind as released, an auxiliary peer) join as
before and are carried along, but are not counted; so a swarm with a peer that trains but runs other code, or
a peer that is counted but never joins (gone, out of sync), waits out the window exactly as before. State
rounds matter as much as gradient rounds: averaged in the background, each one still held the optimizer's
step after next until it ended (``TrainingStateAverager.step`` waits for the pending round), so two peers took
a whole window every second global step even once gradient rounds assembled early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from math import isfinite

from hivemind.averaging.key_manager import GroupKeyManager
from hivemind.averaging.matchmaking import Matchmaking, PotentialLeaders
from hivemind.optim.optimizer import Optimizer
from hivemind.optim.progress_tracker import ProgressTracker
from hivemind.p2p import P2PContext
from hivemind.proto import averaging_pb2
from hivemind.utils import MSGPackSerializer, ValueWithExpiration
from hivemind.utils.timed_storage import MAX_DHT_TIME_DISCREPANCY_SECONDS, get_dht_time

from volunteer.swarm.source_guard import matches

log = logging.getLogger(__name__)

MAX_LOOKUP_INTERVAL = 0.5
"""Seconds: the longest a potential leader may wait in the DHT before an averager looks again."""

LOOKUP_FRACTION = 1 / 20
"""Consecutive lookups are this fraction of ``min_matchmaking_time`` apart (up to the maximum above)."""

PATCHED_SOURCE_SHA256 = "13036c7d743da89efd85ef93befc61463e1e45d87bdb6d07e97b46fa7e4ba580"
"""The sha256 of ``inspect.getsource(PotentialLeaders._update_queue_periodically)`` in hivemind 1.1.12."""

HIVEMIND_UPDATE_QUEUE_PERIODICALLY = PotentialLeaders.__dict__.get("_update_queue_periodically")
"""hivemind's own method, as imported (before any patch), for the tests and benchmarks that compare with it."""

TRACKER_SOURCE_SHA256 = "1b5ad87469d3c13fc7f3fd72c55112b3e0e16d3c606b77062f84ea870ea09881"
"""The sha256 of ``inspect.getsource(ProgressTracker._parse_swarm_progress_data)`` in hivemind 1.1.12."""

HIVEMIND_PARSE_SWARM_PROGRESS_DATA = ProgressTracker.__dict__.get("_parse_swarm_progress_data")
"""hivemind's own method, as imported (before any patch)."""

SCHEDULE_SOURCE_SHA256 = "868f8c36bdaa41e64552295d029a96765ab3857011ac221ce4b7049e78cb7757"
"""The sha256 of ``inspect.getsource(Optimizer._maybe_schedule_gradient_averaging)`` in hivemind 1.1.12."""

HIVEMIND_MAYBE_SCHEDULE_GRADIENT_AVERAGING = Optimizer.__dict__.get("_maybe_schedule_gradient_averaging")
"""hivemind's own method, as imported (before any patch)."""

BEGIN_AVERAGING_SOURCE_SHA256 = "f17d8bb258a0c551049fbdac45261f41d123771c9add2c7f3b0dc69363c676d8"
"""The sha256 of ``inspect.getsource(Optimizer._begin_averaging_gradients)`` in hivemind 1.1.12."""

UPDATE_GLOBAL_EPOCH_SOURCE_SHA256 = "03a36523a3fce65e7c4d73b62d6346c6919c25a18c96059e541b32d9d51866d8"
"""The sha256 of ``inspect.getsource(Optimizer._update_global_epoch)`` in hivemind 1.1.12: the caller whose
fallback, and whose reset of the accumulators after the step, :func:`_begin_averaging_gradients` relies on."""

STATE_SCHEDULE_SOURCE_SHA256 = "f6ba5e5eab04f4ebc8c22e752a186a1f2deb637e491c6d308f9ab2c003424f44"
"""The sha256 of ``inspect.getsource(Optimizer._maybe_schedule_state_averaging)`` in hivemind 1.1.12."""

JOIN_GROUP_SOURCE_SHA256 = "0d6120e412849439dbc8dd78ef7d87543ef956e251fa1590888af06dfc12864a"
"""The sha256 of ``inspect.getsource(Matchmaking.rpc_join_group)`` in hivemind 1.1.12."""

HIVEMIND_RPC_JOIN_GROUP = Matchmaking.__dict__.get("rpc_join_group")
"""hivemind's own method, as imported (before any patch)."""

EXPECTED_GROUP_KEY = "volunteer_expected_group_size"
"""The key of the count in a gradient round's ``gather`` data (a dict, so other keys could follow)."""

TRAINING_RATE = 1e-6
"""Samples/s above which a peer's progress record counts as a training peer: an auxiliary peer, and a peer
before its first batch, report hivemind's ``PerformanceEMA`` floor of 1e-20."""

_TRAINING_PEERS = "_volunteer_training_peers"
"""The tracker's attribute, set at each parse of the swarm's progress: peers training, this one included."""


def lookup_interval(min_matchmaking_time: float) -> float:
    """The least time, in seconds, between two matchmaking lookups of an averager."""
    return min(MAX_LOOKUP_INTERVAL, max(0.0, min_matchmaking_time) * LOOKUP_FRACTION)


async def _update_queue_periodically(self: PotentialLeaders, key_manager: GroupKeyManager) -> None:
    """hivemind 1.1.12's ``PotentialLeaders._update_queue_periodically``, with lookups rate-limited."""
    DISCREPANCY = MAX_DHT_TIME_DISCREPANCY_SECONDS
    interval = lookup_interval(self.min_matchmaking_time)
    while get_dht_time() < self.search_end_time:
        lookup_started = time.monotonic()
        new_peers = await key_manager.get_averagers(key_manager.current_key, only_active=True)
        self.max_assured_time = max(self.max_assured_time, get_dht_time() + self.min_matchmaking_time - DISCREPANCY)

        self.leader_queue.clear()
        for peer, peer_expiration_time in new_peers:
            if peer == self.peer_id or (peer, peer_expiration_time) in self.past_attempts:
                continue
            self.leader_queue.store(peer, peer_expiration_time, peer_expiration_time)
            self.max_assured_time = max(self.max_assured_time, peer_expiration_time - DISCREPANCY)

        self.update_finished.set()

        await asyncio.wait(
            {asyncio.create_task(self.running.wait()), asyncio.create_task(self.update_triggered.wait())},
            return_when=asyncio.ALL_COMPLETED,
            timeout=self.search_end_time - get_dht_time() if isfinite(self.search_end_time) else None,
        )
        self.update_triggered.clear()
        # the fix: pop_next_leader triggers again as soon as it finds the queue empty
        await asyncio.sleep(max(0.0, lookup_started + interval - time.monotonic()))


def _parse_swarm_progress_data(self: ProgressTracker, metadata):
    """hivemind 1.1.12's ``_parse_swarm_progress_data``, reading this peer's own record from local progress."""
    own_key = self._local_public_key
    if isinstance(metadata, dict):
        published = metadata.get(own_key)
        if not isinstance(published, ValueWithExpiration):  # not published yet (or expired): this peer trains
            own = ValueWithExpiration(self.local_progress.dict(), get_dht_time() + self.metadata_expiration)
            metadata = {**metadata, own_key: own}
        elif published.value is not None:  # None: this peer said goodbye; leave that as it is
            metadata = {**metadata, own_key: ValueWithExpiration(self.local_progress.dict(), published.expiration_time)}
    progress = HIVEMIND_PARSE_SWARM_PROGRESS_DATA(self, metadata)  # validates the records: count after it
    setattr(self, _TRAINING_PEERS, 1 + _count_others_training(metadata, own_key))
    return progress


def _count_others_training(metadata: object, own_key: object) -> int:
    if not isinstance(metadata, dict):
        return 0
    count = 0
    for key, record in metadata.items():
        value = record.value if isinstance(record, ValueWithExpiration) else None
        if key != own_key and isinstance(value, dict):
            rate = value.get("samples_per_second")
            count += isinstance(rate, (int, float)) and rate > TRAINING_RATE
    return count


def expected_group_size(optimizer: Optimizer) -> int:
    """The peers this peer's tracker sees training (itself included): the group a gradient round waits for."""
    return max(2, int(getattr(optimizer.tracker, _TRAINING_PEERS, 0)))


def _maybe_schedule_gradient_averaging(self: Optimizer) -> None:
    """hivemind 1.1.12's method, which does nothing while the tracker sees no other peer, and tells the round
    how many peers to expect (in its ``gather`` data)."""
    if self.tracker.global_progress.num_peers <= 1:
        return
    assert self.use_gradient_averaging
    if self.tracker.estimated_next_update_time - get_dht_time() > self.matchmaking_time:
        return
    if self.scheduled_grads is None or self.scheduled_grads.triggered or self.scheduled_grads.done():
        eta_seconds = self.tracker.estimated_next_update_time - get_dht_time()
        eta_seconds = max(eta_seconds, self.grad_averager.matchmaking_kwargs["min_matchmaking_time"])
        log.debug("Pre-scheduling gradient averaging round in %.2f sec", eta_seconds)
        self.scheduled_grads = self.grad_averager.schedule_step(
            timeout=self.averaging_timeout, gather={EXPECTED_GROUP_KEY: expected_group_size(self)}
        )


def _begin_averaging_gradients(self: Optimizer, grad_scaler) -> bool:
    """hivemind 1.1.12's method, changed where it lost a global step's gradients (module docstring): the
    accumulators stay until ``_update_global_epoch`` resets them after the step, so that a round that fails
    falls back to this peer's own mean and not to zeros; and when no round began, the local mean is loaded into
    the optimizer."""
    if grad_scaler is not None:
        with grad_scaler.running_global_step():
            assert grad_scaler.unscale_(self)

    began_averaging_gradients = False
    if self.scheduled_grads is not None and (self.scheduled_grads.triggered or self.scheduled_grads.done()):
        log.debug("not using the pre-scheduled gradient round: it was already used elsewhere")
        self.scheduled_grads = None

    elif self.tracker.global_progress.num_peers > 1:
        try:
            self.scheduled_grads = self.grad_averager.step(
                control=self.scheduled_grads,
                # hivemind: True. With delay_grad_averaging the next global step's batches accumulate while this
                # round runs in the background, so they must start from zero (a failed round then still steps
                # on zeros there: a known gap, docs/projects.md#what-a-global-step-computes)
                reset_accumulators=self.delay_grad_averaging,
                wait=False,
            )
            began_averaging_gradients = True
        except BaseException as e:
            log.exception(e)

    if not began_averaging_gradients and self.scheduled_grads is not None and not self.scheduled_grads.done():
        if self.tracker.global_progress.num_peers > 1:
            log.debug("tagging along for a pre-scheduled gradient round")
            self._tag_along_with_zero_weight(self.scheduled_grads)
        else:
            log.debug("skipping the pre-scheduled gradient round: there are no other peers")
            self.scheduled_grads.cancel()
        self.scheduled_grads = None
    if not began_averaging_gradients:
        # what hivemind's "no other peers" branch did for a scheduled round only: every unbegun round
        self._load_local_gradients_into_optimizer()
    return began_averaging_gradients


def _maybe_schedule_state_averaging(self: Optimizer) -> None:
    """hivemind 1.1.12's method, which pre-schedules state rounds at all, and tells them how many peers to
    expect (in their ``gather`` data).

    hivemind sends the next epoch there, which only a ``TrainingStateAverager`` with
    ``sync_epoch_when_averaging`` reads, and ``hivemind.Optimizer`` never sets it; the epoch stays in the dict.
    """
    if self.tracker.global_progress.num_peers <= 1:
        return  # as for gradients: at the step, hivemind averages state only with other peers
    next_epoch = max(self.local_epoch + 1, self.tracker.global_epoch)
    if next_epoch % self.average_state_every != 0:
        return  # averaging is not performed at this epoch
    if self.state_averager.averaging_in_progress:
        return  # previous run is still in progress
    # hivemind returned here while delay_before_state_averaging had no update, but it updates that only for a
    # pre-scheduled round: no state round was ever pre-scheduled. Each began on the spot in the background
    # (TrainingStateAverager._do), without the count, and held the next optimizer step (same one-thread
    # executor) for the whole window. Without updates both delays are 0: schedule for the epoch's end.
    estimated_time = self.tracker.estimated_next_update_time
    estimated_time += self.delay_before_state_averaging.ema_seconds_per_sample
    estimated_time += self.state_averager.delay_before_averaging.ema_seconds_per_sample
    eta_seconds_to_averaging = estimated_time - get_dht_time()

    if eta_seconds_to_averaging > self.matchmaking_time:
        return
    if self.scheduled_state is None or self.scheduled_state.triggered or self.scheduled_state.done():
        log.debug("Pre-scheduling state averaging round in %.2f sec", eta_seconds_to_averaging)
        gather = {EXPECTED_GROUP_KEY: expected_group_size(self), "epoch": next_epoch}
        self.scheduled_state = self.state_averager.schedule_step(gather=gather, timeout=self.averaging_timeout)


def _expected_in(gather: bytes) -> int | None:
    """The count a peer sent in its join request's (or its own round's) ``gather`` data, if it sent one."""
    try:
        _bandwidth, _mode, user_data = MSGPackSerializer.loads(gather)
        data = MSGPackSerializer.loads(user_data)
    except Exception:  # another client's data: not ours to judge
        return None
    value = data.get(EXPECTED_GROUP_KEY) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def _assemble_if_everyone_joined(self: Matchmaking) -> None:
    """Assemble the leader's group now if the peers that sent a count are as many as the largest count sent.

    Runs where hivemind checks ``target_group_size``, while the join request's handler holds
    ``lock_request_join_group`` (suspended at its ``yield`` of ACCEPTED).
    """
    if (
        self.assembled_group.done()
        or not self.is_looking_for_group
        or self.step_control is None
        or self.current_leader is not None
        or not self.lock_request_join_group.locked()
    ):
        return
    counts = [_expected_in(self.step_control.data_for_gather)]
    counts += [_expected_in(request.gather) for request in self.current_followers.values()]
    known = [count for count in counts if count is not None]
    if known and len(known) >= max(known):
        log.debug("assembling early: %d of %d expected peers joined", len(known), max(known))
        await self.leader_assemble_group()


async def _rpc_join_group(
    self: Matchmaking, request: averaging_pb2.JoinRequest, context: P2PContext
) -> AsyncIterator[averaging_pb2.MessageFromLeader]:
    """hivemind 1.1.12's ``rpc_join_group``, whose leader assembles once every expected peer has joined."""
    stream = HIVEMIND_RPC_JOIN_GROUP(self, request, context)
    try:
        async for message in stream:
            yield message
            if message.code == averaging_pb2.ACCEPTED:
                await _assemble_if_everyone_joined(self)
    finally:
        await stream.aclose()


def is_patched() -> bool:
    """Whether hivemind's matchmaking in this process (and in averagers forked from it) is rate-limited."""
    return PotentialLeaders.__dict__.get("_update_queue_periodically") is _update_queue_periodically


def apply_hivemind_patches() -> bool:
    """Rate-limit hivemind's matchmaking lookups in this process, once; later calls do nothing.

    Call it before hivemind forks its averagers (before ``hivemind.Optimizer(...)``).

    Returns:
        Whether the patch is in place: False for a hivemind other than the one it was written against.
    """
    if is_patched():
        return True
    original = PotentialLeaders.__dict__.get("_update_queue_periodically")
    if not matches("matchmaking rate limit", [(original, PATCHED_SOURCE_SHA256)]):
        return False
    PotentialLeaders._update_queue_periodically = _update_queue_periodically
    return True


def is_step_patched() -> bool:
    """Whether this process's tracker counts its own samples exactly and a lone peer schedules no averaging."""
    return (
        ProgressTracker.__dict__.get("_parse_swarm_progress_data") is _parse_swarm_progress_data
        and Optimizer.__dict__.get("_maybe_schedule_gradient_averaging") is _maybe_schedule_gradient_averaging
        and Optimizer.__dict__.get("_maybe_schedule_state_averaging") is _maybe_schedule_state_averaging
        and Optimizer.__dict__.get("_begin_averaging_gradients") is _begin_averaging_gradients
    )


def apply_step_patches() -> bool:
    """Patch hivemind's global-step path in this process (tracker and scheduling, above), once.

    Returns:
        Whether the patches are in place: False for a hivemind other than the one they were written against.
    """
    if is_step_patched():
        return True
    sources = [
        (ProgressTracker.__dict__.get("_parse_swarm_progress_data"), TRACKER_SOURCE_SHA256),
        (Optimizer.__dict__.get("_maybe_schedule_gradient_averaging"), SCHEDULE_SOURCE_SHA256),
        (Optimizer.__dict__.get("_maybe_schedule_state_averaging"), STATE_SCHEDULE_SOURCE_SHA256),
        (Optimizer.__dict__.get("_begin_averaging_gradients"), BEGIN_AVERAGING_SOURCE_SHA256),
        (Optimizer.__dict__.get("_update_global_epoch"), UPDATE_GLOBAL_EPOCH_SOURCE_SHA256),
    ]
    if not matches("global-step fixes (progress tracker, round scheduling, local gradients)", sources):
        return False
    Optimizer._begin_averaging_gradients = _begin_averaging_gradients
    ProgressTracker._parse_swarm_progress_data = _parse_swarm_progress_data
    Optimizer._maybe_schedule_gradient_averaging = _maybe_schedule_gradient_averaging
    Optimizer._maybe_schedule_state_averaging = _maybe_schedule_state_averaging
    return True


def is_group_patched() -> bool:
    """Whether leaders in this process (and averagers forked from it) assemble once every expected peer joined."""
    return Matchmaking.__dict__.get("rpc_join_group") is _rpc_join_group


def apply_group_patches() -> bool:
    """Let a leader assemble its averaging group once every expected peer has joined, in this process, once.

    Call it before hivemind forks its averagers (before ``hivemind.Optimizer(...)``). The counts come from
    peers with :func:`apply_step_patches`; without them this changes nothing.

    Returns:
        Whether the patch is in place: False for a hivemind other than the one it was written against.
    """
    if is_group_patched():
        return True
    original = Matchmaking.__dict__.get("rpc_join_group")
    if not matches("early group assembly", [(original, JOIN_GROUP_SOURCE_SHA256)]):
        return False
    Matchmaking.rpc_join_group = _rpc_join_group
    return True
