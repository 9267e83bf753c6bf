"""Keep a peer in its swarm: find the others again after a partition, a dead bootstrap or a lost link.

**Why this exists.** hivemind 1.1.12 forgets a DHT peer on its first failed request
(``DHTProtocol.update_routing_table(..., responded=False)`` in ``hivemind/dht/protocol.py`` deletes it from
the routing table), its periodic routing-table refresh is off by default (``DHTNode(refresh_timeout=None)``),
and a ``DHTNode`` contacts its initial peers only once, at start. Every lookup the progress tracker and the
averagers make goes to the peers in that table. So when a link is down for a few seconds, a peer and the
rest of the swarm forget each other within a few requests, and nothing ever asks them to meet again: after
the link returns, both sides keep training alone for good (each sees ``num_peers`` 1, takes global steps
alone). The same happens without any partition when the two survivors of a dead bootstrap each time out
once on the other (3 s ``wait_timeout`` on a loaded machine): their tables hold nobody, and nobody else knows
them. ``tests/integration/test_faults.py`` reproduces both on separate hosts (network namespaces).

**What it does.** A thread in the training process asks the DHT process, every ``interval`` seconds, which
peers its routing table holds and at which addresses libp2p knows them, and remembers every peer it has ever
seen (plus the initial peers it was given). Any remembered peer missing from the table is dialled at its
last known addresses and pinged; an answer puts it back in both tables (hivemind adds the sender of every
incoming request too), and a lookup of our own id then refills the table from it. Peers that do not answer
are tried again with exponential back-off, up to ``max_backoff`` seconds, so a healed link is used within that
time, and a dead peer costs one failed dial per ``max_backoff``.

While the routing table is empty although other peers are known, the peer is *isolated* and the client shows
``reconnecting``. If hivemind's tracker still counts the others (they did not say goodbye: cut off, or
killed; nothing seen from here tells these apart), the strategy also holds its global steps (they would
move its parameters away from the swarm's, and on its return the swarm would load them, as the peer with
the highest epoch) and counts what it computes as local-only. After
``isolation_hold`` seconds without any answer it gives up waiting and trains alone (a swarm that is really
gone, or a partner killed), still trying to reach the others. Peers that left cleanly are not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
DEFAULT_MAX_BACKOFF = 20.0
DEFAULT_ISOLATION_HOLD = 60.0
MAX_REMEMBERED = 256


@dataclass
class _Known:
    addresses: list[str]
    last_seen: float
    failures: int = 0
    next_try: float = 0.0


@dataclass(frozen=True)
class KeeperState:
    """What the keeper knows now (immutable; read it from any thread)."""

    routing_peers: int = 0
    """Peers in this peer's DHT routing table."""
    known_peers: int = 0
    """Other peers ever seen or given as initial peers."""
    isolated: bool = False
    """No peer in the routing table, although others are known: cut off from the swarm."""
    holding: bool = False
    """Isolated and still within ``isolation_hold``: global steps are held back."""
    isolated_since: float | None = None
    rejoined: int = 0
    """Peers found again by dialling them (since start)."""
    reason: str = ""
    events: tuple[tuple[str, str], ...] = field(default=())


ISOLATION_HOLD_ENV = "VOLUNTEER_ISOLATION_HOLD"
"""Seconds an isolated peer holds its global steps (default :data:`DEFAULT_ISOLATION_HOLD`); the fault tests
shorten it to reach "trains alone" quickly."""


def swarm_keeper_env() -> dict[str, float]:
    """Keeper options set in the environment (:data:`ISOLATION_HOLD_ENV`); an unusable value is ignored, logged."""
    from volunteer.constants import env

    value = env(ISOLATION_HOLD_ENV)
    if value is None:
        return {}
    try:
        hold = float(value)
    except ValueError:
        hold = -1.0
    if not hold >= 0:
        log.warning(
            "%s=%r is not a number of seconds >= 0: using %g s", ISOLATION_HOLD_ENV, value, DEFAULT_ISOLATION_HOLD
        )
        return {}
    return {"isolation_hold": hold}


def _strip_peer_id(address: str) -> tuple[str, str] | None:
    parts = address.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2] in ("p2p", "ipfs"):
        return parts[-1], "/".join(parts[:-2])
    return None


class SwarmKeeper:
    """Re-bootstrap ``dht`` from every peer ever seen while training runs; detect isolation.

    Args:
        dht: A started ``hivemind.DHT`` (its coroutines run in the DHT's own process).
        initial_peers: Multiaddresses (with ``/p2p/<id>``) this peer was started with, also tried again.
        interval: Seconds between two looks at the routing table.
        max_backoff: Longest wait, in seconds, before dialling an unanswering peer again.
        isolation_hold: Seconds an isolated peer holds back its global steps before training alone.
        on_event: ``callable(kind, message)`` for ``reconnecting`` / ``recovered`` / ``alone``.
        others_active: ``callable() -> bool``: whether other peers reported progress recently without saying
            goodbye (hivemind's tracker sees ``num_peers >= 2``). Checked when the peer finds itself isolated:
            peers that left cleanly are not waited for; peers cut off or killed are, up to ``isolation_hold``.
        progress_key: The DHT key of hivemind's training progress (``run_id + "_progress"``): every peer whose
            progress record this DHT holds is remembered too, even one never seen in the routing table.
    """

    def __init__(
        self,
        dht: Any,
        initial_peers: Sequence[str] = (),
        *,
        interval: float = DEFAULT_INTERVAL,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        isolation_hold: float = DEFAULT_ISOLATION_HOLD,
        on_event: Any = None,
        others_active: Any = None,
        progress_key: str | None = None,
    ) -> None:
        self.dht = dht
        self.interval = interval
        self.max_backoff = max_backoff
        self.isolation_hold = isolation_hold
        self.on_event = on_event
        self.others_active = others_active
        self.progress_key = progress_key
        self._hold_from: float | None = None
        self.own_id = str(dht.peer_id)
        self.known: dict[str, _Known] = {}
        now = time.monotonic()
        for address in initial_peers:
            split = _strip_peer_id(address)
            if split and split[0] != self.own_id:
                entry = self.known.setdefault(split[0], _Known([], now))
                entry.addresses.append(split[1])
        self.state = KeeperState(known_peers=len(self.known))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._isolated_since: float | None = None
        self._rejoined = 0
        self.unreachable: list[str] = []
        """Peers whose last dial or ping hung until the timeout (rather than failing at once)."""

    # -- life cycle ----------------------------------------------------------------------------------------

    def start(self) -> SwarmKeeper:
        self._thread = threading.Thread(target=self._loop, name="volunteer-swarm-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 10)

    @property
    def holding(self) -> bool:
        return self.state.holding

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as e:  # the DHT is shutting down, or a transient failure: try again next time
                log.debug("swarm keeper check failed: %r", e)

    # -- one check -----------------------------------------------------------------------------------------

    def check(self) -> KeeperState:
        """Look at the routing table, dial missing peers that are due, update :attr:`state`."""
        table, addresses, progress = self.dht.run_coroutine(functools.partial(_probe, self.progress_key))
        now = time.monotonic()
        table = [p for p in table if p != self.own_id]
        # Remember every peer seen anywhere: in the routing table, connected to libp2p (matchmaking, all-reduce,
        # state downloads: a peer met only there, or present in the table only between two looks, used to be
        # forgotten), or reporting progress. A peer that joined through the bootstrap only and lost its table
        # entry between two looks was otherwise unknown here once the bootstrap died: nobody dialled anybody.
        for peer in dict.fromkeys([*table, *addresses, *progress]):
            if peer == self.own_id:
                continue
            entry = self.known.get(peer)
            fresh = addresses.get(peer) or (entry.addresses if entry else [])
            if entry is None:
                entry = self.known[peer] = _Known(list(fresh), now)
            entry.addresses = list(fresh)
            if peer in table or peer in addresses:
                entry.last_seen = now
            if peer in table:
                entry.failures, entry.next_try = 0, 0.0
        if len(self.known) > MAX_REMEMBERED:  # forget the peers seen longest ago
            oldest = sorted(self.known, key=lambda peer: self.known[peer].last_seen)
            for peer in oldest[: len(self.known) - MAX_REMEMBERED]:
                del self.known[peer]

        # a peer known by id only is still pinged: libp2p finds its address in its peer store or its own DHT
        missing = {p: e for p, e in self.known.items() if p not in table and e.next_try <= now}
        back: list[str] = []
        unreachable: list[str] = []
        if missing:
            targets = {p: e.addresses for p, e in missing.items()}
            back, unreachable = self.dht.run_coroutine(functools.partial(_rejoin, targets, max(1.0, self.interval)))
            now = time.monotonic()
            for peer, entry in missing.items():
                if peer in back:
                    entry.last_seen, entry.failures, entry.next_try = now, 0, 0.0
                else:
                    entry.failures += 1
                    entry.next_try = now + min(self.max_backoff, self.interval * 2 ** (entry.failures - 1))
            self._rejoined += len(back)
        self._update_state(len(table) + len([p for p in back if p not in table]), now)
        self.unreachable = unreachable
        return self.state

    def _update_state(self, routing_peers: int, now: float) -> None:
        isolated = routing_peers == 0 and bool(self.known)
        was_isolated = self._isolated_since is not None
        if isolated and not was_isolated:
            self._isolated_since = now
            # peers that said goodbye are not waited for; peers cut off or killed still count in hivemind's
            # tracker for about a minute (it cannot tell these two apart, and neither can a failed dial)
            others_active = True
            if self.others_active is not None:
                with contextlib.suppress(Exception):
                    others_active = bool(self.others_active())
            self._hold_from = now if others_active else None
            meanwhile = "holding global steps meanwhile" if others_active else "they are gone: training alone meanwhile"
            self._emit(
                "reconnecting",
                f"lost contact with all {len(self.known)} known peer(s); dialling them again every "
                f"{self.interval:.0f}-{self.max_backoff:.0f} s, {meanwhile}",
            )
        elif not isolated and was_isolated:
            alone = now - (self._isolated_since or now)
            self._emit("recovered", f"back in the swarm after {alone:.0f} s alone")
            self._isolated_since = self._hold_from = None
        holding = isolated and self._hold_from is not None and now - self._hold_from < self.isolation_hold
        if isolated and self.state.holding and not holding:
            self._emit("alone", f"no known peer answered for {self.isolation_hold:.0f} s: training alone")
        reason = ""
        if holding:
            reason = f"cut off from all {len(self.known)} known peers; reconnecting"
        elif isolated:
            reason = "no known peer answers; training alone while reconnecting"
        self.state = KeeperState(
            routing_peers=routing_peers,
            known_peers=len(self.known),
            isolated=isolated,
            holding=holding,
            isolated_since=self._isolated_since,
            rejoined=self._rejoined,
            reason=reason,
        )

    def _emit(self, kind: str, message: str) -> None:
        log.info("%s: %s", kind, message)
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(kind, message)


# -- coroutines run inside the DHT process (module level, so they pickle by reference) ---------------------


async def _probe(progress_key: str | None, dht: Any, node: Any) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The peer ids in the routing table, the addresses libp2p has for connected peers, and the peers whose
    training progress this DHT holds locally (under ``progress_key``; no network request)."""
    table = [str(peer) for peer in list(node.protocol.routing_table.peer_id_to_uid)]
    addresses: dict[str, list[str]] = {}
    with contextlib.suppress(Exception):
        for info in await asyncio.wait_for(node.p2p.list_peers(), 5):
            addresses[str(info.peer_id)] = [str(a) for a in info.addrs]
    progress: list[str] = []
    if progress_key:
        with contextlib.suppress(Exception):
            progress = _progress_peers(node, progress_key)
    return table, addresses, progress


def _progress_peers(node: Any, key: str) -> list[str]:
    """Peer ids in the progress records of ``key`` held in this node's storage or cache (what the tracker read)."""
    from hivemind.dht.protocol import DHTProtocol
    from hivemind.dht.routing import DHTID
    from hivemind.dht.storage import DictionaryDHTValue
    from hivemind.p2p import PeerID
    from hivemind.utils import get_dht_time

    key_id = DHTID.generate(source=key)
    protocol: DHTProtocol = node.protocol
    found: set[str] = set()
    now = get_dht_time()
    for store in (protocol.storage, protocol.cache):
        item = store.get(key_id)
        if item is None or not isinstance(item.value, DictionaryDHTValue):
            continue
        for subkey, (value_bytes, expiration) in item.value.items():
            if expiration < now:
                continue
            with contextlib.suppress(Exception):
                if protocol.record_validator is not None:
                    from hivemind.dht.validation import DHTRecord

                    record = DHTRecord(key_id.to_bytes(), protocol.serializer.dumps(subkey), value_bytes, expiration)
                    value_bytes = protocol.record_validator.strip_value(record)
                value = protocol.serializer.loads(value_bytes)
                found.add(PeerID(value["peer_id"]).to_base58())
    return sorted(found)


async def _rejoin(targets: dict[str, list[str]], timeout: float, dht: Any, node: Any) -> tuple[list[str], list[str]]:
    """Dial and ping every target; on any answer, look up our own id to refill the routing table.

    Returns the peers that answered, and those that did not answer within ``timeout`` (out of reach, as
    opposed to refusing at once: gone).
    """
    from hivemind.p2p import PeerID
    from hivemind.utils.multiaddr import Multiaddr

    client = getattr(node.p2p, "_client", None)

    slow: list[str] = []

    async def one(peer_b58: str, addresses: list[str]) -> str | None:
        peer = PeerID.from_base58(peer_b58)
        started = time.monotonic()
        try:
            return await attempt(peer, peer_b58, addresses)
        finally:
            if time.monotonic() - started >= 0.8 * timeout:
                slow.append(peer_b58)

    async def attempt(peer: Any, peer_b58: str, addresses: list[str]) -> str | None:
        if client is not None and addresses:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.connect(peer, [Multiaddr(a) for a in addresses]), timeout)
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(node.protocol.call_ping(peer), timeout) is not None:
                return peer_b58
        return None

    results = await asyncio.gather(*(one(p, a) for p, a in targets.items()))
    back = [r for r in results if r is not None]
    if back:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.find_nearest_nodes([node.node_id]), timeout * 2)
    return back, [p for p in slow if p not in back]


class SoloGuard:
    """Keep the parameters a peer trained alone out of the swarm, and bring the swarm's back to it.

    A peer cut off for longer than ``isolation_hold`` trains alone, and its epoch races ahead of the swarm's:
    back in the swarm it would be the peer with the highest epoch, and the others would load *its* parameters
    (hivemind ranks the states it downloads by the local epoch), one peer's solo work replacing the swarm's.
    So while the peer trains alone it refuses to share its state (others asking for it move on to the next
    peer), and when it is back among peers that went on training meanwhile (an epoch beyond the one it had when
    it went alone), it first loads *their* state, discarding its solo steps. Its samples from those steps
    were counted local-only when they were taken (no averaging round with another peer): the ledger stays
    honest. Back among peers that did not train meanwhile (a newcomer at epoch 0, after the swarm was gone or
    when a volunteer started with only dead peers to join), its state stands and it shares it again.

    Called by the strategy before every optimizer step, in the training process.
    """

    def __init__(self, keeper: SwarmKeeper) -> None:
        self.keeper = keeper
        self.alone_from_epoch: int | None = None
        """The local epoch when the peer began training alone; ``None`` while it is not alone."""
        self._unshared: list[Any] = []
        self.resyncs = 0

    def before_step(self, optimizer: Any) -> None:
        state = self.keeper.state
        if state.isolated and not state.holding:
            if self.alone_from_epoch is None:
                self.alone_from_epoch = int(optimizer.local_epoch)
                self._stop_sharing(optimizer)
            return
        if self.alone_from_epoch is None or state.isolated:
            return
        alone_from, self.alone_from_epoch = self.alone_from_epoch, None
        others = _others_epoch(optimizer)
        if others is not None and others > alone_from:
            solo = int(optimizer.local_epoch) - alone_from
            self.keeper._emit(
                "resync",
                f"back among peers at epoch {others}: loading their state, discarding {solo} global step(s) "
                "taken alone (counted local-only)",
            )
            # hivemind refuses a state older than the local epoch: go back to where this peer left the swarm
            # (the others' epoch is at least that), so that theirs is loaded in place of the solo steps
            optimizer.state_averager.local_epoch = alone_from
            with contextlib.suppress(Exception):
                optimizer.load_state_from_peers()
                self.resyncs += 1
        self._share_again()

    def _stop_sharing(self, optimizer: Any) -> None:
        for averager in (getattr(optimizer, "state_averager", None), getattr(optimizer, "grad_averager", None)):
            if averager is not None and not averager.client_mode and averager.allow_state_sharing:
                averager.allow_state_sharing = False
                self._unshared.append(averager)

    def _share_again(self) -> None:
        for averager in self._unshared:
            with contextlib.suppress(Exception):
                averager.allow_state_sharing = True
        self._unshared = []


def others_progress(dht: Any, progress_key: str) -> list[dict]:
    """Other peers' records of hivemind's training progress (key ``run_id + "_progress"``), read from the DHT now.

    Each is hivemind's ``LocalTrainingProgress`` as a dict (``peer_id``, ``epoch``, ``client_mode``, ...); what is
    not a dict (a broken or hostile peer's value) is left out, and a failed read gives none.
    """
    own = dht.peer_id.to_bytes()
    try:
        found = dht.get(progress_key, latest=True)
    except Exception:
        return []
    if found is None or not isinstance(found.value, dict):
        return []
    records = (getattr(item, "value", None) for item in found.value.values())
    return [record for record in records if isinstance(record, dict) and record.get("peer_id") != own]


def _others_epoch(optimizer: Any) -> int | None:
    """The highest local epoch other peers report in hivemind's progress records, or ``None``."""
    records = others_progress(optimizer.dht, optimizer.tracker.training_progress_key)
    epochs = [record["epoch"] for record in records if isinstance(record.get("epoch"), int)]
    return max(epochs) if epochs else None
