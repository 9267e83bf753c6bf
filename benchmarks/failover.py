"""Faults on separate hosts: how long until the live peers take their next *joint* global step.

Three headless volunteers of the tiny test project, each in a network namespace of its own on one bridge
(``tests/support/netns.py``; needs root). A *joint* global step is one at which every live peer gained swarm
credit (its gradients were averaged with another peer's) at global steps within one of each other; a peer
stepping alone does not count, and a fault after which the survivors find no joint step within
``--give-up`` seconds is a *split*.

Kills: the whole process tree of the oldest peer (the one the others joined through), SIGKILL, at a chosen
moment of the victim's global step; a fresh peer then joins through a survivor, so the next trial again has
three. Moments: ``after-step`` (just after a global step), ``mid-accumulation`` (the swarm between 25 % and
75 % of the target batch), ``at-averaging`` (the swarm at 85 % of the target or more: matchmaking or
all-reduce under way). A moment not seen within 120 s is recorded as missed and the kill happens anyway.
``state-download`` (not in the default set): a fourth peer joins with its downlink shaped (``--download-rate``,
``tc tbf``), and the peer it downloads the model state from (hivemind's averager logs the donor) is killed while
the download runs; measured from the kill to the first joint step of the survivors *and* the newcomer, which
must load the state from a survivor. It runs the tiny model with a wide hidden layer (about 2.6 MB of parameters), so
the download through the shaped link takes seconds; the newcomer stays, so every trial again has three.

Partitions: one peer's link goes down for ``--partition-seconds`` and comes back; measured from the heal to
the next joint step of all three.

    python -m benchmarks.failover --kills 10 --partitions 4          # about 20 minutes (as root)
    python -m benchmarks.failover --kills 2 --partitions 1           # a quick look
    python -m benchmarks.failover --kills 10 --moments state-download --partitions 0   # about 2 minutes
    python -m benchmarks.failover --kills 0 --partitions 0 --long-partitions 3       # 2-6 minutes a trial

Long partitions (``--long-partitions``): every peer runs with a short ``isolation_hold`` (``--isolation-hold``,
8 s); the newest peer's link goes down until it has trained alone to 3 epochs beyond the others, then comes
back. Measured from the heal: its ``resync`` and the next joint step of all three; printed too: the largest jump
of the others' epochs (loading its solo state would make one) and the swarm credit it gained alone (none).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.netns import Network
from tests.support.projects import TINY_PROJECT
from tests.support.swarm import HostVolunteer, Swarm, wait_until

TARGET = 512  # the tiny project's target_batch_size

MOMENTS: dict[str, Callable[[dict, int], bool]] = {
    "after-step": lambda s, epoch: s["local_epoch"] > epoch,
    "mid-accumulation": lambda s, epoch: TARGET * 0.25 <= s["samples_accumulated"] <= TARGET * 0.75,
    # hivemind begins matchmaking matchmaking_time (3.5 s) before the step it expects: by 85 % it is under way
    "at-averaging": lambda s, epoch: s["samples_accumulated"] >= TARGET * 0.85 or s.get("eta_next_step") == 0,
}


STATE_HIDDEN = 65536
"""``--moments state-download``: the tiny model with a hidden layer this wide (655,000 parameters, about 2.6 MB
of state), so that a state download through the newcomer's shaped downlink takes seconds."""
DOWNLOADING = re.compile(r"Downloading parameters from peer (\w+)")


def big_state_project(tmp: Path) -> str:
    """The tiny project with a larger model: its manifest sets ``hidden`` (tests/fixtures/tiny_project/model.py)."""
    root = tmp / "big-state-project"
    shutil.copytree(TINY_PROJECT, root)
    manifest = root / "volunteer.toml"
    bigger = f"init_args = {{ lr = 0.0001, hidden = {STATE_HIDDEN} }}"  # at 0.05 the wide model diverges
    text = manifest.read_text().replace("init_args = { lr = 0.05 }", bigger)
    assert f"hidden = {STATE_HIDDEN}" in text, "the tiny project's model init_args changed"
    manifest.write_text(text)
    return str(root)


class Trials:
    def __init__(
        self, net: Network, tmp: Path, give_up: float, project: str = TINY_PROJECT, env: dict | None = None
    ) -> None:
        self.swarm = Swarm(net, tmp)
        self.env = env
        self.give_up = give_up
        self.project = project
        self.count = 0
        self.order: list[HostVolunteer] = []
        self.download_rate = "4mbit"

    def start(self) -> None:
        first = self.swarm.start("p0", project=self.project, env=self.env)
        wait_until(lambda: (first.status() or {}).get("join_addresses"), 240, "p0 training", [first])
        self.order = [first] + [
            self.swarm.start(n, peers=first.address(), project=self.project, env=self.env) for n in ("p1", "p2")
        ]
        self.swarm.wait_one_swarm(self.order, 240)
        self.count = 3

    def replace(self, victim: HostVolunteer) -> None:
        self.order.remove(victim)
        name = f"p{self.count}"
        self.count += 1
        newcomer = self.swarm.start(name, peers=self.order[-1].address(), project=self.project, env=self.env)
        self.order.append(newcomer)
        self.swarm.wait_one_swarm(self.order, 240)

    def state_download(self, rate: str) -> dict:
        """A newcomer joins with its downlink shaped to ``rate``; the peer it downloads the state from dies (its
        whole tree) while the download runs. Measured from the kill: the newcomer's first joint step with the
        survivors (it must load the state from one of them)."""
        name = f"p{self.count}"
        self.count += 1
        host = self.swarm.net.add_host(name)
        if not self.swarm.net.limit_downlink(host, rate):
            raise SystemExit(f"error: tc tbf could not shape {name}'s downlink to {rate}")
        by_id = {(v.status() or {}).get("peer_id"): v for v in self.order}
        newcomer = self.swarm.start(name, peers=self.order[-1].address(), project=self.project, env=self.env)
        result: dict = dict(kind="kill", moment="state-download")

        def donor() -> HostVolunteer | None:
            found = DOWNLOADING.findall(newcomer.training_log())
            return by_id.get(found[0]) if found else None

        try:
            victim = wait_until(donor, 240, f"{name} downloading state from a peer", [*self.order, newcomer])
        except AssertionError:
            result["missed_moment"] = True
            victim = self.order[0]
        survivors = [v for v in self.order if v is not victim]
        before = {v.name: v.status() for v in survivors}
        before[name] = {"swarm_samples": 0}
        killed = time.monotonic()
        victim.kill()
        downloaded = "Finished downloading state" in newcomer.training_log()
        result["download_done_before_kill"] = downloaded
        self.swarm.net.unlimit_downlink(host)
        try:
            self.swarm.wait_joint_step([*survivors, newcomer], before, self.give_up)
            result["seconds"] = time.monotonic() - killed
        except AssertionError:
            result["split"] = True
        after = {v.name: v.status() or {} for v in survivors}
        gained = [after[n].get("local_only_samples", 0) - before[n]["local_only_samples"] for n in after]
        result["local_only"] = sum(gained)
        result["steps_lost"] = 0
        log = newcomer.training_log()
        result["donors_tried"] = len(DOWNLOADING.findall(log))
        result["downloads_finished"] = log.count("Finished downloading state")
        # nothing corrupted: the newcomer trains on, at a finite loss like the survivors'
        losses = [(v.status() or {}).get("loss") for v in (newcomer, *survivors)]
        result["newcomer_loss_finite"] = all(x is not None and math.isfinite(x) for x in losses)
        result["losses"] = [float(f"{x:.3g}") if x is not None else None for x in losses]
        result["failed_downloads"] = log.count("Failed to download state from")
        self.order = [*survivors, newcomer]
        return result

    def kill(self, moment: str) -> dict:
        if moment == "state-download":
            return self.state_download(self.download_rate)
        victim, survivors = self.order[0], self.order[1:]
        epoch = (victim.status() or {}).get("local_epoch", 0)
        predicate = MOMENTS[moment]
        result: dict = dict(kind="kill", moment=moment)
        try:
            wait_until(lambda: predicate(victim.status() or {"local_epoch": -1, "samples_accumulated": -1}, epoch),
                       120, f"the moment {moment}", self.order)  # fmt: skip
        except AssertionError:
            result["missed_moment"] = True
        before = {v.name: v.status() for v in survivors}
        killed = time.monotonic()
        victim.kill()
        try:
            self.swarm.wait_joint_step(survivors, before, self.give_up)
            result["seconds"] = time.monotonic() - killed
        except AssertionError:
            result["split"] = True
        after = {v.name: v.status() or {} for v in survivors}
        result["local_only"] = sum(
            after[n].get("local_only_samples", 0) - before[n]["local_only_samples"] for n in after
        )
        result["steps_lost"] = max(0, max(s.get("local_epoch", 0) for s in after.values()) - epoch - 1)
        self.replace(victim)
        return result

    def partition(self, seconds: float, which: int) -> dict:
        vols = self.order
        victim = vols[0] if which % 2 == 0 else vols[-1]
        before = {v.name: v.status() for v in vols}
        self.swarm.net.partition(victim.host, seconds)
        healed = time.monotonic()
        mid = {v.name: v.status() for v in vols}
        who = "oldest peer" if which % 2 == 0 else "newest peer"
        result = dict(kind="partition", moment=f"link down {seconds:.0f} s ({who})")
        try:
            self.swarm.wait_joint_step(vols, mid, self.give_up)
            result["seconds"] = time.monotonic() - healed
        except AssertionError:
            result["split"] = True
        after = {v.name: v.status() or {} for v in vols}
        gained = after[victim.name].get("local_only_samples", 0) - before[victim.name]["local_only_samples"]
        result["local_only"] = gained
        result["steps_lost"] = 0
        return result


EXTRAS = (
    "cut_seconds", "ahead_by", "resync_seconds", "others_max_epoch_jump", "solo_swarm_credit",
    "missed_moment", "download_done_before_kill", "donors_tried", "downloads_finished", "failed_downloads",
    "newcomer_loss_finite", "losses",
)  # fmt: skip


def long_partition(trials: Trials, hold: float, ahead: int = 3, limit: float = 300.0) -> dict:
    """The newest peer's link goes down until it has trained alone (past ``isolation_hold``) to ``ahead`` epochs
    beyond the others, then comes back. Measured from the heal: its ``resync`` (it loads the swarm's state,
    discarding its solo steps) and the next joint step of all three; the others' epochs must never jump (loading
    its solo state would), and its solo samples must stay local-only."""
    vols = trials.order
    victim, others = vols[-1], vols[:-1]
    result: dict = dict(kind="partition", moment=f"long partition (alone after {hold:.0f} s, {ahead} epochs ahead)")
    cut = {v.name: v.status() for v in vols}
    resyncs_before = sum(1 for e in victim.events() if e["kind"] == "resync")
    trials.swarm.net.link_down(victim.host)
    cut_at = time.monotonic()

    def raced() -> dict | None:
        statuses = trials.swarm.statuses(vols)
        if not all(statuses.values()):
            return None
        behind = max(statuses[v.name]["local_epoch"] for v in others)
        return statuses if statuses[victim.name]["local_epoch"] >= behind + ahead else None

    try:
        healed = wait_until(raced, limit, f"{victim.name} to train {ahead} epochs ahead alone", vols)
    except AssertionError:
        result["missed_moment"] = True
        healed = {v.name: v.status() or cut[v.name] for v in vols}
    trials.swarm.net.link_up(victim.host)
    heal_at = time.monotonic()
    result["cut_seconds"] = round(heal_at - cut_at, 1)
    result["ahead_by"] = healed[victim.name]["local_epoch"] - max(healed[v.name]["local_epoch"] for v in others)
    result["solo_swarm_credit"] = healed[victim.name]["swarm_samples"] - cut[victim.name]["swarm_samples"]
    epochs = {v.name: [healed[v.name]["local_epoch"]] for v in others}
    while time.monotonic() - heal_at < trials.give_up and ("seconds" not in result or "resync_seconds" not in result):
        statuses = trials.swarm.statuses(vols)
        now = time.monotonic() - heal_at
        for v in others:
            if statuses[v.name]:
                epochs[v.name].append(statuses[v.name]["local_epoch"])
        resyncs = sum(1 for e in victim.events() if e["kind"] == "resync")
        if "resync_seconds" not in result and resyncs > resyncs_before:
            result["resync_seconds"] = round(now, 1)
        if "seconds" not in result and all(statuses.values()):
            grew = all(s["swarm_samples"] > healed[n]["swarm_samples"] for n, s in statuses.items())
            spread = [s["local_epoch"] for s in statuses.values()]
            if grew and max(spread) - min(spread) <= 1:
                result["seconds"] = now
        time.sleep(0.25)
    if "seconds" not in result:
        result["split"] = True
    result["others_max_epoch_jump"] = max(
        (later - earlier for seen in epochs.values() for earlier, later in itertools.pairwise(seen)), default=0
    )
    after = victim.status() or {}
    result["local_only"] = after.get("local_only_samples", 0) - cut[victim.name]["local_only_samples"]
    result["steps_lost"] = 0
    return result


def summarize(results: list[dict]) -> None:
    print("\n| fault | trials | splits | median s | worst s | median local-only samples |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for moment in dict.fromkeys(r["moment"] for r in results):
        rows = [r for r in results if r["moment"] == moment]
        times = [r["seconds"] for r in rows if "seconds" in r]
        splits = sum(1 for r in rows if r.get("split"))
        median = f"{statistics.median(times):.1f}" if times else "-"
        worst = f"{max(times):.1f}" if times else "-"
        local = statistics.median(r["local_only"] for r in rows)
        print(f"| {moment} | {len(rows)} | {splits} | {median} | {worst} | {local:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="trials per kill moment")
    parser.add_argument(
        "--moments", default=",".join(MOMENTS), help=f"comma-separated, of {', '.join(MOMENTS)} and state-download"
    )
    parser.add_argument("--download-rate", default="4mbit", help="state-download: the newcomer's downlink (tc tbf)")
    parser.add_argument("--partitions", type=int, default=4, help="partition trials (bootstrap, joiner alternately)")
    parser.add_argument("--partition-seconds", type=float, default=60.0)
    parser.add_argument(
        "--long-partitions", type=int, default=0, help="trials of a peer cut off until it trained 3 epochs ahead alone"
    )
    parser.add_argument(
        "--isolation-hold", type=float, default=8.0, help="with --long-partitions: every peer's isolation_hold (s)"
    )
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds without a joint step: a split")
    parser.add_argument("--json", type=Path, help="append each trial's result to this file as a JSON line")
    parser.add_argument("--workdir", type=Path, help="keep the logs and data here (default: a temporary one)")
    args = parser.parse_args()
    results: list[dict] = []
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    keep = contextlib.nullcontext(str(args.workdir)) if args.workdir else None
    with keep or tempfile.TemporaryDirectory(prefix="faults-bench-") as tmp, Network() as net:
        moments = args.moments.split(",")
        project = big_state_project(Path(tmp)) if "state-download" in moments else TINY_PROJECT
        env = {"VOLUNTEER_ISOLATION_HOLD": str(args.isolation_hold)} if args.long_partitions else None
        trials = Trials(net, Path(tmp), args.give_up, project, env)
        trials.download_rate = args.download_rate
        try:
            trials.start()
            plan = [("kill", m) for _ in range(args.kills) for m in moments]
            plan += [("partition", i) for i in range(args.partitions)]
            plan += [("long", i) for i in range(args.long_partitions)]
            for i, (kind, what) in enumerate(plan):
                if kind == "kill":
                    r = trials.kill(what)
                elif kind == "partition":
                    r = trials.partition(args.partition_seconds, what)
                else:
                    r = long_partition(trials, args.isolation_hold)
                results.append(r)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                outcome = "SPLIT" if r.get("split") else f"{r['seconds']:.1f} s"
                more = {k: r[k] for k in EXTRAS if k in r}
                print(f"  {i + 1}/{len(plan)} {r['moment']}: next joint step {outcome}, local-only samples "
                      f"{r['local_only']:,}, steps lost {r['steps_lost']} {more or ''}", flush=True)  # fmt: skip
        finally:
            trials.swarm.stop()
    summarize(results)


if __name__ == "__main__":
    main()
