"""The three places volunteer reaches into hivemind 1.1.12's private parts, each guarded as the patches are.

Like :mod:`volunteer.swarm.hivemind_patches`, each reach is checked against the exact hivemind version and the
sha256 of the source it relies on; on any other hivemind it is skipped, with one log line, and what it was
for is done without it (more slowly, or less precisely), never wrongly.

**Throttling the progress reports** (:func:`throttle_progress_reports`, used by ``HivemindStrategy``).
hivemind's ``ProgressTracker`` reports this peer's progress to the DHT from a reporter thread that waits on
the tracker's ``should_report_progress`` event (``_progress_reporter``, which reads the attribute afresh on
every round); ``report_local_progress`` sets it after every local step. The strategy swaps in an event that
lets fewer of those sets through (``strategy._ThrottledEvent``). That works only while the reporter reads
the attribute each round, as 1.1.12's does.

**Re-reading the swarm's progress now** (:func:`reread_progress_now`, used by ``strategy._ThrottledEvent``).
hivemind's tracker re-reads the swarm's progress from the DHT at a time it sets after each read, up to
``max_refresh_period`` (10 s) later, from an estimate that can be stale; until then it counts only this peer's
samples. Its fetcher (``_progress_fetcher``) waits until ``global_progress.next_fetch_time`` or until
``global_state_updated`` is set, and then computes its wait again: setting the time to now and the event
wakes it for a read at once.

**Dialling a peer at given addresses** (:func:`dial`, used by the host's pings). hivemind's public ``P2P``
has no call that connects to a peer at addresses we name: the host checks that the long-lived peers in its
peer list still answer at the addresses listed, not wherever the DHT last saw them. The daemon client
(``P2P._client``, a ``p2pclient.Client``) has ``connect(peer_id, maddrs)``; without it the ping still asks
each peer over whatever connection hivemind finds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

from volunteer.swarm.source_guard import matches

log = logging.getLogger(__name__)

REPORTER_SOURCE_SHA256 = "affc9ed95108eacfeedc2d4be46ebbb467317faa375a0eef1e098a347a02b248"
"""The sha256 of ``inspect.getsource(ProgressTracker._progress_reporter)`` in hivemind 1.1.12."""
FETCHER_SOURCE_SHA256 = "ed458942519098a2fa56fa7e9d7a263a517eec4d33aa5e3bf8334a5258d5e36c"
"""The sha256 of ``inspect.getsource(ProgressTracker._progress_fetcher)`` in hivemind 1.1.12."""
CONNECT_SOURCE_SHA256 = "4a93e314e2e3640af0042ae507a65a9faa9b8b668d6d1c66351ab1b86a61e1e1"
"""The sha256 of ``inspect.getsource(p2pclient.Client.connect)`` in hivemind 1.1.12."""


def throttle_progress_reports(tracker: Any, event: threading.Event) -> bool:
    """Make ``tracker``'s reporter thread wait on ``event`` instead of its own ``should_report_progress``.

    Returns:
        Whether the swap was made: False on a hivemind whose reporter may not read the new event.
    """
    from hivemind.optim.progress_tracker import ProgressTracker

    reporter = ProgressTracker.__dict__.get("_progress_reporter")
    if not matches("progress report throttle", [(reporter, REPORTER_SOURCE_SHA256)]):
        return False
    waiting_on = tracker.should_report_progress
    tracker.should_report_progress = event
    waiting_on.set()  # wake the reporter, which is waiting on the old event, so it switches now
    return True


def reread_progress_now(tracker: Any, now: float) -> bool:
    """Make ``tracker``'s fetcher read the swarm's progress from the DHT now (``now``: hivemind's DHT time).

    Returns:
        Whether it was asked: False on a hivemind whose fetcher may not wake for it.
    """
    from hivemind.optim.progress_tracker import ProgressTracker

    fetcher = ProgressTracker.__dict__.get("_progress_fetcher")
    if not matches("progress re-read", [(fetcher, FETCHER_SOURCE_SHA256)]):
        return False
    tracker.global_progress.next_fetch_time = now
    tracker.global_state_updated.set()  # the fetcher computes its wait again: none is left
    return True


_READ_BEFORE_STEPPING_ALONE = "_volunteer_read_before_stepping_alone"
"""The tracker's attribute: :func:`read_swarm_before_a_blind_step` has made its one read."""


def read_swarm_before_a_blind_step(tracker: Any, batch_size: int, timeout: float = 1.0) -> bool:
    """Before the batch that completes a global step, make a tracker that has read no progress record yet read
    the swarm's progress, waiting up to ``timeout`` seconds.

    Such a tracker (``num_peers == 0``: not even this peer's own record, so it read the DHT before this peer's
    first report) takes the step alone: two peers that start together each stepped alone from epoch 0 (the
    two-peer golden test, issue 22). Once per tracker, at the start: afterwards a read sees at least this peer
    itself, except where the DHT returns nothing at all (cut off from every peer), and a peer cut off must not
    wait for reads that cannot help. Returns whether a fresh read came in time.
    """
    if tracker.global_progress.num_peers != 0 or getattr(tracker, _READ_BEFORE_STEPPING_ALONE, False):
        return False
    if tracker.local_progress.samples_accumulated + batch_size < tracker.target_batch_size:
        return False
    setattr(tracker, _READ_BEFORE_STEPPING_ALONE, True)
    from hivemind.utils.timed_storage import get_dht_time

    fetched = tracker.fetched_global_progress_this_epoch  # set by the fetcher after every read
    fetched.clear()
    if not reread_progress_now(tracker, get_dht_time()):
        fetched.set()
        return False
    return bool(fetched.wait(timeout))


def dial(p2p: Any, peer_id: Any, maddrs: Sequence[Any]) -> Awaitable[None] | None:
    """``p2p``'s daemon dialling ``peer_id`` at ``maddrs`` (await it), or None where that reach is not checked."""
    from hivemind.p2p.p2p_daemon_bindings.p2pclient import Client

    if not matches("dial at listed addresses", [(Client.__dict__.get("connect"), CONNECT_SOURCE_SHA256)]):
        return None
    client = getattr(p2p, "_client", None)
    if not isinstance(client, Client):
        return None
    result: Awaitable[None] = client.connect(peer_id, list(maddrs))
    return result
