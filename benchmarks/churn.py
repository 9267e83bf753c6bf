"""Churn on separate hosts: volunteers leaving and coming back on a schedule, and what the swarm still gets done.

``--peers`` headless volunteers of the tiny test project, each in a network namespace of its own on one bridge
(``tests/support/netns.py``; needs root), each listening on a fixed port so that one that comes back is at its old
address, each started with the others' addresses (``tests/support/churn.py``).

1. **Solo baseline.** The same volunteers, each alone (no initial peers, data directories of their own), all at
   once, then one fewer, down to ``--min-live``: each one's samples/s over ``--solo-seconds``. On this machine
   the volunteers share its cores, so a volunteer's throughput depends on how many run beside it: the solo
   throughput of k live volunteers is measured with k running alone at once.
2. **Churn.** The volunteers form one swarm; then for ``--seconds`` each leaves and comes back on a seeded
   schedule (up ``--up`` seconds, down ``--down`` seconds, never fewer than ``--min-live`` up), by SIGTERM,
   SIGKILL of its whole tree, SIGINT, SIGKILL in turn. Every live volunteer's ``/status`` is read every second.

Printed: each volunteer's solo samples/s; the swarm's samples/s over the churn window (credited as swarm work,
and all computed); their ratio to the time-integrated sum of the live volunteers' solo throughput (a volunteer
is live from its launch to its stop: starting up, loading state and joining are part of what churn costs); the
invariants (stretches in which the trained-in volunteers were not one swarm, local-only samples, ledger checks,
swarm credit per global step); and each rejoin's seconds to training and to its first joint global step.

    python -m benchmarks.churn                       # 4 volunteers, 240 s of churn: about 9 minutes (as root)
    python -m benchmarks.churn --seconds 120 --solo-seconds 15   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.support.churn import SPLIT_AFTER, Churn, Report, schedule, solo_rates
from tests.support.netns import Network
from tests.support.swarm import Swarm

TARGET = 512  # the tiny project's target_batch_size


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def solo_phase(swarm: Swarm, names: list[str], ks: list[int], seconds: float) -> dict[int, dict[str, float]]:
    churn = Churn(swarm, names, solo=True)
    try:
        for name in names:
            churn.start(name)
        churn.wait_training(names, 300)
        time.sleep(10.0)  # past the first global steps
        return solo_rates(churn, seconds, ks)
    finally:
        churn.stop_all()


def churn_phase(
    swarm: Swarm, names: list[str], leaves, seconds: float, steady: float
) -> tuple[Churn, Report, float | None, tuple[float, ...]]:
    churn = Churn(swarm, names)
    churn.start(names[0], first=True)
    churn.wait_training(names[:1], 300)
    for name in names[1:]:
        churn.start(name)
    churn.wait_training(names, 300)
    vols = [churn.current[n].vol for n in names]
    swarm.wait_one_swarm(vols, 300)
    # the same swarm without churn, for reference: what averaging itself costs against training alone
    first = swarm.statuses(vols)
    started = time.monotonic()
    time.sleep(steady)
    last = swarm.statuses(vols)
    took = time.monotonic() - started
    steady_rates = tuple(
        sum((last[n] or {}).get(key, 0) - (first[n] or {}).get(key, 0) for n in first) / took
        for key in ("swarm_samples", "session_samples")
    )
    report = churn.run(leaves, seconds)
    back: float | None = None
    try:  # everybody is back by the end of the window: one swarm again
        back = swarm.wait_joint_step(
            [inc.vol for inc in churn.current.values()], {n: i.last for n, i in churn.current.items()}, 180
        )
    except AssertionError as e:
        report.violations.append(f"no joint step of all {len(churn.current)} within 180 s after the churn: {e}"[:300])
    churn.stop_all()
    return churn, report, back, steady_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=240.0, help="the churn window")
    parser.add_argument("--up", default="40-80", help="seconds a volunteer stays up between leaves (uniform)")
    parser.add_argument("--down", default="10-25", help="seconds a volunteer stays away")
    parser.add_argument("--min-live", type=int, default=2)
    parser.add_argument("--solo-seconds", type=float, default=30.0, help="measuring time per solo baseline")
    parser.add_argument("--steady-seconds", type=float, default=30.0, help="the swarm measured before the churn")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    names = [f"p{i}" for i in range(args.peers)]
    leaves = schedule(
        names,
        args.seconds,
        seed=args.seed,
        up=parse_range(args.up),
        down=parse_range(args.down),
        min_live=args.min_live,
    )
    ks = list(range(args.peers, args.min_live - 1, -1))
    print(f"load average at the start: {load()}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as tmp, Network(prefix="churn") as net:
        swarm = Swarm(net, Path(tmp))
        try:
            rates = solo_phase(swarm, names, ks, args.solo_seconds)
            print(f"solo baseline done at {time.monotonic() - started:.0f} s, load average {load()}", flush=True)
            churn, report, back, steady = churn_phase(swarm, names, leaves, args.seconds, args.steady_seconds)
        finally:
            swarm.stop()
    print(f"load average at the end: {load()} ({time.monotonic() - started:.0f} s in all)\n")

    solo_sum = {k: sum(r.values()) for k, r in rates.items()}
    print("Solo throughput (each volunteer alone; k of them running at once), samples/s:")
    for k in ks:
        each = ", ".join(f"{n} {r:,.0f}" for n, r in rates[k].items())
        print(f"  k={k}: {each}; sum {solo_sum[k]:,.0f}")

    def solo_at(k: int) -> float:
        return solo_sum[min(ks, key=lambda m: abs(m - k))]

    window = report.seconds
    expected = sum(solo_at(k) * s for k, s in report.live_seconds.items()) / window
    mean_live = sum(k * s for k, s in report.live_seconds.items()) / window
    swarm_rate, computed_rate = report.swarm / window, report.computed / window
    steady_swarm, steady_computed = steady
    print(f"\nNo churn ({args.steady_seconds:.0f} s, all {args.peers} up): credited as swarm work {steady_swarm:,.0f} "
          f"samples/s = {steady_swarm / solo_sum[args.peers]:.2f} of solo; all computed {steady_computed:,.0f} "
          f"samples/s = {steady_computed / solo_sum[args.peers]:.2f} of solo")  # fmt: skip
    print(f"\nChurn: {len(report.leaves)} leaves of {args.peers} volunteers in {window:.0f} s (seed {args.seed}):")
    for leave in report.leaves:
        print(f"  {leave.at:5.0f} s  {leave.name} {leave.how:>4}, back {leave.down:.0f} s later")
    print(f"  volunteers up: mean {mean_live:.2f}; " + ", ".join(
        f"{k} for {s:.0f} s" for k, s in sorted(report.live_seconds.items())))  # fmt: skip
    print(f"  time-integrated sum of the live volunteers' solo throughput: {expected:,.0f} samples/s")
    print(f"  swarm, credited as swarm work: {swarm_rate:,.0f} samples/s = {swarm_rate / expected:.2f} of solo")
    print(f"  swarm, all computed:           {computed_rate:,.0f} samples/s = {computed_rate / expected:.2f} of solo")
    local_share = report.local_only / report.computed if report.computed else 0.0
    print(f"  local-only samples: {report.local_only:,} ({local_share:.2%} of those computed)")
    per_step = report.swarm / (report.epochs * TARGET) if report.epochs else float("nan")
    print(f"  global steps: {report.epochs}; swarm credit per global step: {per_step:.2f} x the target ({TARGET})")
    rejoins = churn.rejoins()
    to_training = [t for _, t, _ in rejoins if t is not None]
    to_credit = [c for _, _, c in rejoins if c is not None]
    if to_credit:
        print(f"  rejoins: {len(rejoins)}; launch to training median {statistics.median(to_training):.1f} s, worst "
              f"{max(to_training):.1f} s; launch to its first joint step median {statistics.median(to_credit):.1f} s, "
              f"worst {max(to_credit):.1f} s; never credited: {len(rejoins) - len(to_credit)}")  # fmt: skip
    print(f"  apart (trained-in volunteers not one swarm): {len(report.apart)} stretches, longest "
          f"{report.longest_apart:.1f} s; splits (apart > {SPLIT_AFTER:.0f} s): {len(report.splits)}")  # fmt: skip
    for at, length, why in report.apart:
        print(f"    at {at - churn.window[0]:.0f} s for {length:.1f} s: {why}")
    print(f"  ledger: swarm credit lost at kills {report.credit_lost_at_kills}; computed samples a SIGKILL took before "
          f"the ledger's next write: {report.samples_missed_at_kills:,}")  # fmt: skip
    print(
        f"  after the churn, all {args.peers} took a joint step in: " + (f"{back:.1f} s" if back is not None else "-")
    )
    print(f"  violations: {report.violations or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(dict(
            args=vars(args) | {"json": str(args.json)}, rates=rates, live_seconds=report.live_seconds,
            swarm=report.swarm, computed=report.computed, local_only=report.local_only, epochs=report.epochs,
            apart=report.apart, violations=report.violations, rejoins=rejoins, rows=report.rows,
            window=churn.window, runs=[dict(name=i.name, how=i.how, launched=i.launched, stopped=i.stopped,
                                            base=i.base, after=i.after, trace=i.trace) for i in churn.past],
        ), indent=2, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
