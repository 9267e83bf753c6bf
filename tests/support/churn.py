"""Churn on separate hosts: volunteers leaving and coming back on a schedule, with the invariants checked as it runs.

Every volunteer runs in a host of its own (:mod:`tests.support.netns`) and listens on a fixed port there, so that
a volunteer that comes back (same data directory, so same identity and ledger) is at the address it had: like
the stable addresses a project's peer list names. Each starts with the addresses of all the others as initial
peers (the first one, with nobody up yet, with none), and a restart uses the same command line.

A leave is one of:

- ``term`` / ``int``: SIGTERM / SIGINT to the client, as ``docker stop`` or Ctrl-C do. It must exit by itself
  within :data:`GRACEFUL_WAIT` seconds with status 0 and leave no process behind in its namespace.
- ``kill``: SIGKILL to the client's whole process tree at once (client, training process, DHT, averagers,
  ``p2pd``), like a power cut.

While the schedule runs, :class:`Churn` polls every live volunteer's ``/status`` and checks:

- **One swarm.** The live volunteers that have been training for :data:`GRACE` seconds are *together* when their
  local epochs are within one of each other and each has gained swarm credit (a global step averaged with
  another peer) within the last :data:`CREDIT_WINDOW` seconds. A stretch of time in which they are not together
  is *apart*; an apart stretch longer than :data:`SPLIT_AFTER` seconds is a *split*.
- **The ledger.** Every status of a volunteer counts its all-time totals from the ledger its data directory held
  when it started (``total_samples - session_samples`` equals that ledger's ``samples``: nothing lost or counted
  twice at a restart). After it stops, its ledger holds at least the swarm credit its last status showed (swarm
  credit is written at once, so even a SIGKILL loses none), one more session, and ``swarm + local-only <=
  samples``; after a graceful stop it also holds every sample the last status showed.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import Host, _ip, kill_tree
from tests.support.swarm import HostVolunteer, Swarm

PORT = 31337
"""Every volunteer listens on this port in its own namespace: its address survives a restart."""
GRACE = 30.0
"""Seconds a volunteer trains before it must be in the swarm: join, load the state, a round's matchmaking."""
CREDIT_WINDOW = 40.0
"""A volunteer in the swarm gains swarm credit at least this often: a step interval, or a round that failed
because a peer died in it (the 15 s averaging timeout), then the next one."""
SPLIT_AFTER = 60.0
"""Seconds apart that count as a split (the rejoin target of a healed link)."""
GRACEFUL_WAIT = 30.0
"""Seconds a SIGTERM/SIGINT-ed volunteer has to exit by itself (it promises 10 s; the machine is loaded)."""
LEFTOVER_WAIT = 10.0
"""Seconds a gracefully stopped volunteer's helper processes have to exit after it did."""
STOPS = ("term", "kill", "int", "kill")
"""The leaves cycle through these: half graceful, half SIGKILL of the whole tree."""


@dataclass(frozen=True)
class Leave:
    """At ``at`` seconds into the churn, ``name`` leaves (``how``), and comes back ``down`` seconds later."""

    at: float
    name: str
    how: str
    down: float


def schedule(
    names: list[str],
    duration: float,
    *,
    seed: int = 0,
    up: tuple[float, float] = (40.0, 80.0),
    down: tuple[float, float] = (10.0, 25.0),
    min_live: int = 2,
) -> list[Leave]:
    """Leaves for every volunteer: up for ``up`` seconds (uniform), down for ``down``, again, until ``duration``.

    A leave that would leave fewer than ``min_live`` volunteers up is put off until one is back. The first leave
    of each volunteer comes at a random point of its first up-time, so they do not all leave together.
    """
    rng = random.Random(seed)
    wanted: list[tuple[float, str, float]] = []
    for name in names:
        t = rng.uniform(up[0] * 0.3, up[1])
        while t < duration:
            gone = rng.uniform(*down)
            wanted.append((t, name, gone))
            t += gone + rng.uniform(*up)
    wanted.sort()
    leaves: list[Leave] = []
    back_at: dict[str, float] = {}
    for t, name, gone in wanted:
        t = max(t, back_at.get(name, 0.0) + 5.0)  # after its own earlier leave, if that one was put off
        while True:
            away = [n for n in names if back_at.get(n, 0.0) > t]  # down at t, or leaving later (conservative)
            if len(names) - len(away) - 1 >= min_live:
                break
            t = min(back_at[n] for n in away) + 1.0
        if t + gone >= duration:
            continue
        leaves.append(Leave(t, name, STOPS[len(leaves) % len(STOPS)], gone))
        back_at[name] = t + gone
    return sorted(leaves, key=lambda leave: leave.at)


@dataclass
class Incarnation:
    """One run of one volunteer, from launch to stop."""

    name: str
    vol: HostVolunteer
    base: dict
    """Its ledger when it started (zeros for the first run)."""
    launched: float
    training_at: float | None = None
    credited_at: float | None = None
    """When it first gained swarm credit (its first joint global step)."""
    last_credit: float = 0.0
    stopped: float | None = None
    how: str = ""
    first: dict | None = None
    """Its status at the start of the measured window (or ``None``: it started within it)."""
    last: dict | None = None
    after: dict | None = None
    """Its ledger after it stopped."""
    trace: list[tuple] = field(default_factory=list)
    """(time, state, session, total, swarm and local-only samples, local epoch, peers) at every poll."""


@dataclass
class Report:
    """What the churn run saw."""

    seconds: float = 0.0
    leaves: list[Leave] = field(default_factory=list)
    apart: list[tuple[float, float, str]] = field(default_factory=list)
    """(start, length, why) of every stretch in which the trained-in volunteers were not one swarm."""
    violations: list[str] = field(default_factory=list)
    """Ledger and stop checks that failed."""
    computed: int = 0
    swarm: int = 0
    local_only: int = 0
    live_seconds: dict[int, float] = field(default_factory=dict)
    """Seconds of the window with k volunteers up (launched, not yet stopped), by k."""
    epochs: int = 0
    """Global steps the swarm advanced over the window (the highest local epoch seen, end minus start)."""
    rows: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    """(volunteer, how it left, computed, swarm, local-only) of every run within the window."""
    credit_lost_at_kills: int = 0
    samples_missed_at_kills: int = 0
    """Computed samples the last status showed but a SIGKILLed volunteer's ledger lacked (never credited: they
    were since the last ledger write, at most a second's worth)."""

    @property
    def splits(self) -> list[tuple[float, float, str]]:
        return [a for a in self.apart if a[1] > SPLIT_AFTER]

    @property
    def longest_apart(self) -> float:
        return max((a[1] for a in self.apart), default=0.0)

    def summary(self) -> str:
        lines = [
            f"{len(self.leaves)} leaves in {self.seconds:.0f} s: "
            + ", ".join(f"{x.name} {x.how} at {x.at:.0f} s for {x.down:.0f} s" for x in self.leaves),
            f"computed {self.computed:,}, swarm {self.swarm:,}, local-only {self.local_only:,} samples; "
            f"{self.epochs} global steps; up: "
            + ", ".join(f"{k} for {s:.0f} s" for k, s in sorted(self.live_seconds.items())),
            f"runs (name, left by, computed, swarm, local-only): {self.rows}",
            f"apart: {[(round(a, 1), round(b, 1), why) for a, b, why in self.apart]}",
            f"violations: {self.violations}",
        ]
        return "\n".join(lines)


def _describe(pids: list[int]) -> list[str]:
    import psutil

    described = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            described.append(f"{pid} {' '.join(p.cmdline())[:120]} (parent {p.ppid()})")
        except psutil.Error:
            described.append(f"{pid} (gone)")
    return described


def _zero_ledger() -> dict:
    return {"samples": 0, "swarm_samples": 0, "local_only_samples": 0, "sessions": 0}


class Churn:
    """Volunteers ``names`` on hosts of ``swarm``'s network, started, stopped and restarted on a schedule.

    Args:
        swarm: Where the hosts and volunteers live.
        names: The volunteers; the first starts alone, the others join.
        solo: Every volunteer trains alone: no initial peers (the baseline), data directories ``solo-<name>``.
    """

    def __init__(self, swarm: Swarm, names: list[str], *, solo: bool = False, env: dict | None = None) -> None:
        from hivemind.p2p import P2P, PeerID

        self.swarm = swarm
        self.names = list(names)
        self.solo = solo
        self.env = env
        self.hosts: dict[str, Host] = {n: swarm.net.hosts.get(n) or swarm.net.add_host(n) for n in names}
        self.data_dirs = {n: swarm.tmp / (f"solo-{n}" if solo else f"data-{n}") for n in names}
        self.addresses: dict[str, str] = {}
        for name in names:
            data = self.data_dirs[name]
            data.mkdir(parents=True, exist_ok=True)
            identity = data / "identity.key"
            if not identity.exists():
                P2P.generate_identity(str(identity))
            peer_id = PeerID.from_identity(identity.read_bytes()).to_base58()
            self.addresses[name] = f"/ip4/{self.hosts[name].address}/tcp/{PORT}/p2p/{peer_id}"
        self.current: dict[str, Incarnation] = {}
        self.past: list[Incarnation] = []
        self.report = Report()
        self.window: tuple[float, float] | None = None
        self._apart_since: float | None = None
        self._apart_why = ""
        self._last_poll: float | None = None
        self._last_k = 0
        self._max_epoch: int | None = None
        self._epoch_at_start: int | None = None

    # -- life cycle --------------------------------------------------------------------------------------

    def ledger(self, name: str) -> dict:
        path = self.data_dirs[name] / "ledger" / "volunteer-tests-tiny.json"
        return json.loads(path.read_text()) if path.exists() else _zero_ledger()

    def start(self, name: str, *, first: bool = False) -> Incarnation:
        peers = None if self.solo or first else ",".join(a for n, a in self.addresses.items() if n != name)
        base = self.ledger(name)
        vol = HostVolunteer(
            self.hosts[name],
            self.swarm.tmp,
            peers=peers,
            data_dir=self.data_dirs[name],
            listen=f"/ip4/0.0.0.0/tcp/{PORT}",
            extra=self.swarm.extra,
            env=self.env,
        )
        self.swarm.vols[f"{name}#{len(self.past)}"] = vol  # Swarm.stop() kills it whatever happens
        inc = Incarnation(name, vol, base, time.monotonic())
        self.current[name] = inc
        return inc

    def stop(self, name: str, how: str) -> Incarnation:
        inc = self.current.pop(name)
        inc.how = how
        pid = inc.vol.popen.pid
        if how == "kill":
            kill_tree(pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                inc.vol.popen.wait(timeout=10)
        else:
            inc.vol.popen.send_signal(signal.SIGTERM if how == "term" else signal.SIGINT)
            try:
                code = inc.vol.popen.wait(timeout=GRACEFUL_WAIT)
                if code != 0:
                    self._violation(f"{name}: exited with status {code} after SIG{how.upper()}")
            except subprocess.TimeoutExpired:
                self._violation(f"{name}: still running {GRACEFUL_WAIT:.0f} s after SIG{how.upper()}")
                kill_tree(pid)
        inc.stopped = time.monotonic()
        leftovers = self._namespace_pids(name)
        deadline = time.monotonic() + LEFTOVER_WAIT
        while leftovers and how != "kill" and time.monotonic() < deadline:
            time.sleep(0.5)  # helpers (multiprocessing's resource tracker) exit once their last user has
            leftovers = self._namespace_pids(name)
        if leftovers and how != "kill":
            self._violation(f"{name}: left behind after SIG{how.upper()}: {_describe(leftovers)}")
        for leftover in leftovers:
            kill_tree(leftover)
        inc.vol._log.close()
        inc.after = self.ledger(name)
        self._check_ledger_after(inc)
        self.past.append(inc)
        return inc

    def _namespace_pids(self, name: str) -> list[int]:
        listing = _ip("netns", "pids", self.hosts[name].netns, check=False).stdout.split()
        return [int(p) for p in listing if p.isdigit()]

    def stop_all(self) -> None:
        for name in list(self.current):
            self.stop(name, "term")

    # -- checks ----------------------------------------------------------------------------------------------

    def _violation(self, what: str) -> None:
        self.report.violations.append(what)

    def _check_ledger_after(self, inc: Incarnation) -> None:
        base, after, last = inc.base, inc.after or {}, inc.last
        name = inc.name
        if after.get("sessions") != base.get("sessions", 0) + 1:
            self._violation(f"{name}: ledger sessions {base.get('sessions')} -> {after.get('sessions')}, not one more")
        if after["swarm_samples"] + after["local_only_samples"] > after["samples"]:
            self._violation(f"{name}: ledger counts more swarm + local-only than samples: {after}")
        if last is None:
            return
        lost = last["swarm_samples"] - after["swarm_samples"]
        if lost > 0:
            self._violation(f"{name}: {lost} swarm samples shown before SIG{inc.how.upper()} missing from the ledger")
            if inc.how == "kill":
                self.report.credit_lost_at_kills += lost
        missed = last["total_samples"] - after["samples"]
        if inc.how == "kill":
            self.report.samples_missed_at_kills += max(0, missed)
        elif missed > 0 or last["local_only_samples"] > after["local_only_samples"]:
            self._violation(f"{name}: the ledger after a graceful stop lacks what its last status showed")

    def poll(self) -> None:
        """Read every live volunteer's status once; check the ledger base; track one swarm."""
        now = time.monotonic()
        trained_in: dict[str, dict] = {}
        for name, inc in self.current.items():
            s = inc.vol.status()
            if s is None:
                continue
            inc.trace.append(
                (round(now, 2), s["state"], s["session_samples"], s["total_samples"], s["swarm_samples"],
                 s["local_only_samples"], s["local_epoch"], s["num_peers"])
            )  # fmt: skip
            counting = s["state"] in ("training", "reconnecting")  # the session has read its ledger by then
            if counting and s["total_samples"] - s["session_samples"] != inc.base["samples"]:
                self._violation(
                    f"{name}: all-time samples {s['total_samples']} - session {s['session_samples']} != the ledger's "
                    f"{inc.base['samples']} at its start"
                )
            if counting and s["swarm_samples"] < inc.base["swarm_samples"]:
                self._violation(f"{name}: swarm samples {s['swarm_samples']} below its ledger's at start")
            if not counting:
                continue
            previous, inc.last = inc.last, s
            if s["join_addresses"]:
                if inc.training_at is None:
                    inc.training_at = inc.last_credit = now
                if previous is not None and s["swarm_samples"] > previous["swarm_samples"]:
                    inc.last_credit = now
                if inc.credited_at is None and s["swarm_samples"] > inc.base["swarm_samples"]:
                    inc.credited_at = now
                if now - inc.training_at >= GRACE:
                    trained_in[name] = s
            if self.window is not None and self.window[0] <= now <= self.window[1]:
                epoch = s["local_epoch"]
                self._max_epoch = epoch if self._max_epoch is None else max(self._max_epoch, epoch)
        self._track_apart(now, trained_in)
        if self.window is not None and self._last_poll is not None:
            t0, t1 = self.window
            span = max(0.0, min(now, t1) - max(self._last_poll, t0))
            k = self._last_k
            self.report.live_seconds[k] = self.report.live_seconds.get(k, 0.0) + span
        self._last_poll = now
        self._last_k = len(self.current)

    def _track_apart(self, now: float, trained_in: dict[str, dict]) -> None:
        why = ""
        if len(trained_in) >= 2 and not self.solo:
            epochs = {n: s["local_epoch"] for n, s in trained_in.items()}
            stale = [n for n in trained_in if now - self.current[n].last_credit > CREDIT_WINDOW]
            if max(epochs.values()) - min(epochs.values()) > 1:
                why = f"epochs {epochs}"
            elif stale:
                why = f"no swarm credit for {CREDIT_WINDOW:.0f} s: {stale}"
        if why and self._apart_since is None:
            self._apart_since, self._apart_why = now, why
        elif not why and self._apart_since is not None:
            self.report.apart.append((self._apart_since, now - self._apart_since, self._apart_why))
            self._apart_since = None

    def close_apart(self) -> None:
        if self._apart_since is not None:
            now = time.monotonic()
            self.report.apart.append((self._apart_since, now - self._apart_since, self._apart_why + " (at the end)"))
            self._apart_since = None

    # -- running --------------------------------------------------------------------------------------------

    def wait_training(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if all(self.current[n].training_at is not None for n in names):
                return
            for n in names:
                if not self.current[n].vol.alive:
                    raise AssertionError(f"{n} exited while starting:\n{self.current[n].vol.output()[-3000:]}")
            time.sleep(1.0)
        raise AssertionError(f"{names} not training within {timeout:.0f} s")

    def run(self, leaves: list[Leave], duration: float, poll_every: float = 1.0) -> Report:
        """Run ``leaves`` over ``duration`` seconds from now (the measured window), then poll once more."""
        t0 = time.monotonic()
        self.window = (t0, t0 + duration)
        for inc in self.current.values():
            inc.first = inc.vol.status()
        self._last_poll, self._last_k = t0, len(self.current)
        pending = sorted([(leave.at, "leave", leave) for leave in leaves], key=lambda e: e[0])
        self.report.leaves = list(leaves)
        while True:
            now = time.monotonic() - t0
            while pending and pending[0][0] <= now:
                _, kind, leave = pending.pop(0)
                if kind == "leave":
                    if leave.name in self.current:
                        self._end_in_window(self.stop(leave.name, leave.how))
                        pending.append((leave.at + leave.down, "back", leave))
                        pending.sort(key=lambda e: e[0])
                else:
                    self.start(leave.name)
            if now >= duration:
                break
            self.poll()
            time.sleep(max(0.0, poll_every - (time.monotonic() - t0 - now)))
        self.poll()
        for inc in self.current.values():
            self._end_in_window(inc)
        self.close_apart()
        self.report.seconds = duration
        if self._max_epoch is not None:
            start = max((inc.first or {}).get("local_epoch", 0) for inc in self._window_incarnations() if inc.first)
            self.report.epochs = self._max_epoch - start
        return self.report

    def _window_incarnations(self) -> list[Incarnation]:
        return [*self.past, *self.current.values()]

    def rejoins(self) -> list[tuple[str, float | None, float | None]]:
        """(name, seconds from launch to training, seconds from launch to its first joint step) of every
        volunteer launched within the window."""
        if self.window is None:
            return []
        rows = []
        for inc in self._window_incarnations():
            if inc.launched >= self.window[0]:
                training = inc.training_at - inc.launched if inc.training_at else None
                credited = inc.credited_at - inc.launched if inc.credited_at else None
                rows.append((inc.name, training, credited))
        return rows

    def _end_in_window(self, inc: Incarnation) -> None:
        """Add what ``inc`` computed and was credited within the window to the report."""
        if self.window is None or inc.launched > self.window[1]:
            return
        end = dict(inc.last or {})
        if inc.after is not None:
            end = {
                "session_samples": max(end.get("session_samples", 0), inc.after["samples"] - inc.base["samples"]),
                "swarm_samples": max(end.get("swarm_samples", 0), inc.after["swarm_samples"]),
                "local_only_samples": max(end.get("local_only_samples", 0), inc.after["local_only_samples"]),
            }
        if not end:
            return
        start = inc.first or {
            "session_samples": 0,
            "swarm_samples": inc.base["swarm_samples"],
            "local_only_samples": inc.base["local_only_samples"],
        }
        row = (
            end["session_samples"] - start["session_samples"],
            end["swarm_samples"] - start["swarm_samples"],
            end["local_only_samples"] - start["local_only_samples"],
        )
        self.report.computed += row[0]
        self.report.swarm += row[1]
        self.report.local_only += row[2]
        self.report.rows.append((inc.name, inc.how or "-", *row))


def solo_rates(churn: Churn, measure: float, ks: list[int]) -> dict[int, dict[str, float]]:
    """Samples/s of each volunteer training alone with ``k`` of them running at once, for every ``k`` in ``ks``
    (descending): all start, then one stops (SIGTERM) before each next ``k``."""
    rates: dict[int, dict[str, float]] = {}
    live = list(churn.names)
    for k in sorted(ks, reverse=True):
        while len(live) > k:
            churn.stop(live.pop(), "term")
        time.sleep(5.0)
        first = {n: churn.current[n].vol.status() or {} for n in live}
        started = time.monotonic()
        time.sleep(measure)
        last = {n: churn.current[n].vol.status() or {} for n in live}
        seconds = time.monotonic() - started
        for n in live:
            if last[n].get("num_peers", 1) > 1:
                raise AssertionError(f"solo volunteer {n} found other peers: {last[n].get('num_peers')}")
        rates[k] = {n: (last[n].get("session_samples", 0) - first[n].get("session_samples", 0)) / seconds for n in live}
    return rates


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
