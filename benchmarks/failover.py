"""How long survivors need to take their next global step after the bootstrap peer is killed (kill -9).

Baseline, in the same invocation: the swarm's normal interval between global steps, measured just before
the kill. Three headless volunteers of the tiny test project on 127.0.0.1.

    python -m benchmarks.failover           # 3 rounds
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from tests.integration.volunteers import Volunteer


def epoch_times(v: Volunteer, count: int, timeout: float) -> list[float]:
    """Monotonic times at which ``v`` reaches its next ``count`` global steps."""
    times = []
    last = v.status()["global_epoch"]
    deadline = time.monotonic() + timeout
    while len(times) < count and time.monotonic() < deadline:
        status = v.status()
        if status and status["global_epoch"] > last:
            last = status["global_epoch"]
            times.append(time.monotonic())
        time.sleep(0.05)
    return times


def one_round(tmp: Path, index: int) -> tuple[float, float]:
    vols = []
    try:
        a = Volunteer(tmp, f"a{index}")
        vols.append(a)
        a.wait_training()
        b = Volunteer(tmp, f"b{index}", peers=a.address())
        c = Volunteer(tmp, f"c{index}", peers=a.address())
        vols += [b, c]
        b.wait_training()
        c.wait_training()
        b.wait_status(lambda s: len(s["leaderboard"]) >= 3 and s["num_peers"] >= 2, 90, "a full swarm")
        steps = epoch_times(b, 4, 120)
        interval = statistics.median(later - earlier for earlier, later in itertools.pairwise(steps))
        epoch_times(b, 1, 60)  # kill right after a global step, the fairest moment to compare with
        killed = time.monotonic()
        a.proc.kill()
        recovered = epoch_times(b, 1, 120)
        assert recovered, "the survivors took no global step after the kill"
        return interval, recovered[0] - killed
    finally:
        for v in vols:
            v.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    intervals, recoveries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            interval, recovery = one_round(Path(tmp), i)
            intervals.append(interval)
            recoveries.append(recovery)
            print(
                f"  round {i + 1}: normal step interval {interval:.2f} s, kill -> next step {recovery:.2f} s",
                flush=True,
            )
    interval, recovery = statistics.median(intervals), statistics.median(recoveries)
    print(f"median normal interval between global steps: {interval:.2f} s")
    print(f"median time from kill -9 of the bootstrap peer to the survivors' next global step: {recovery:.2f} s")
    print(f"ratio (after kill / normal interval): {recovery / interval:.2f}")


if __name__ == "__main__":
    main()
