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

Partitions: one peer's link goes down for ``--partition-seconds`` and comes back; measured from the heal to
the next joint step of all three.

    python -m benchmarks.failover --kills 10 --partitions 4          # about 20 minutes (as root)
    python -m benchmarks.failover --kills 2 --partitions 1           # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.netns import Network
from tests.support.swarm import HostVolunteer, Swarm, wait_until

TARGET = 512  # the tiny project's target_batch_size

MOMENTS: dict[str, Callable[[dict, int], bool]] = {
    "after-step": lambda s, epoch: s["local_epoch"] > epoch,
    "mid-accumulation": lambda s, epoch: TARGET * 0.25 <= s["samples_accumulated"] <= TARGET * 0.75,
    # hivemind begins matchmaking matchmaking_time (3.5 s) before the step it expects: by 85 % it is under way
    "at-averaging": lambda s, epoch: s["samples_accumulated"] >= TARGET * 0.85 or s.get("eta_next_step") == 0,
}


class Trials:
    def __init__(self, net: Network, tmp: Path, give_up: float) -> None:
        self.swarm = Swarm(net, tmp)
        self.give_up = give_up
        self.count = 0
        self.order: list[HostVolunteer] = []

    def start(self) -> None:
        self.order = self.swarm.start_swarm(["p0", "p1", "p2"], timeout=240)
        self.count = 3

    def replace(self, victim: HostVolunteer) -> None:
        self.order.remove(victim)
        name = f"p{self.count}"
        self.count += 1
        newcomer = self.swarm.start(name, peers=self.order[-1].address())
        self.order.append(newcomer)
        self.swarm.wait_one_swarm(self.order, 240)

    def kill(self, moment: str) -> dict:
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
    parser.add_argument("--moments", default=",".join(MOMENTS), help="comma-separated kill moments")
    parser.add_argument("--partitions", type=int, default=4, help="partition trials (bootstrap, joiner alternately)")
    parser.add_argument("--partition-seconds", type=float, default=60.0)
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds without a joint step: a split")
    parser.add_argument("--json", type=Path, help="append each trial's result to this file as a JSON line")
    args = parser.parse_args()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="faults-bench-") as tmp, Network() as net:
        trials = Trials(net, Path(tmp), args.give_up)
        try:
            trials.start()
            plan = [("kill", m) for _ in range(args.kills) for m in args.moments.split(",")]
            plan += [("partition", i) for i in range(args.partitions)]
            for i, (kind, what) in enumerate(plan):
                r = trials.kill(what) if kind == "kill" else trials.partition(args.partition_seconds, what)
                results.append(r)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                outcome = "SPLIT" if r.get("split") else f"{r['seconds']:.1f} s"
                print(f"  {i + 1}/{len(plan)} {r['moment']}: next joint step {outcome}, "
                      f"local-only samples {r['local_only']:,}, steps lost {r['steps_lost']}", flush=True)  # fmt: skip
        finally:
            trials.swarm.stop()
    summarize(results)


if __name__ == "__main__":
    main()
