"""Time from launching a headless volunteer to its first contributed sample, with the project cached.

Baseline, in the same invocation: a bare Python process that only imports torch, Lightning and hivemind,
the floor any client built on them pays. Phases come from the client's own status endpoint and events.
First, how fast the CLI answers ``--help`` and a user mistake (it must not import torch, Lightning, hivemind or
Textual for that), against a bare ``python -c pass``.

    python -m benchmarks.startup            # 3 runs of each, alternating
    python -m benchmarks.startup --cli-only # only the CLI's answers, 5 runs each
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.procs import wait_for
from tests.integration.volunteers import Volunteer


def import_floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, lightning, hivemind"], check=True, timeout=120)
    return time.perf_counter() - start


def cli_answers(runs: int) -> None:
    """Median seconds for ``volunteer --help`` and two flag errors, and for a bare interpreter, alternating."""

    def timed(argv: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], capture_output=True, timeout=60)
        return time.perf_counter() - start

    cases = {
        "python -c pass (floor)": ["-c", "pass"],
        "volunteer --help": ["-m", "volunteer", "--help"],
        "volunteer --batch-size 0 (error)": ["-m", "volunteer", "--batch-size", "0"],
        "volunteer --device tpu (error)": ["-m", "volunteer", "--device", "tpu"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(timed(argv))
    floor = statistics.median(times["python -c pass (floor)"])
    print(f"CLI answers, {runs} runs, medians:")
    for name, values in times.items():
        value = statistics.median(values)
        print(f"  {name:<40} {value:6.3f} s  (+{value - floor:.3f} s over the floor)")


def first_sample(tmp: Path, name: str, project: str) -> dict[str, float]:
    start = time.monotonic()
    v = Volunteer(tmp, name, project=project, data_dir=tmp / "data")
    phases: dict[str, float] = {}
    try:
        wait_for(lambda: v.status() is not None, 120, "the status endpoint", [v.proc], interval=0.05)
        phases["status endpoint up"] = time.monotonic() - start
        v.wait_status(lambda s: bool(s["peer_id"]), 120, "joined")
        phases["joined the swarm (DHT up)"] = time.monotonic() - start
        v.wait_status(lambda s: s["session_samples"] > 0, 120, "first sample")
        phases["first contributed sample"] = time.monotonic() - start
    finally:
        v.stop()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--project", default="demo")
    parser.add_argument("--cli-only", action="store_true", help="only time the CLI's --help and flag errors")
    args = parser.parse_args()
    cli_answers(max(args.runs, 5))
    if args.cli_only:
        return
    floors, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        first_sample(Path(tmp), "warmup", args.project)  # fills the data dir (identity, caches) like a restart
        for i in range(args.runs):
            floors.append(import_floor())
            runs.append(first_sample(Path(tmp), f"run{i}", args.project))
            first = runs[-1]["first contributed sample"]
            print(f"  run {i + 1}: import floor {floors[-1]:.2f} s, first sample {first:.2f} s", flush=True)
    floor = statistics.median(floors)
    print(f"project {args.project!r}, {args.runs} runs, medians:")
    print(f"  import torch+lightning+hivemind (floor): {floor:6.2f} s")
    for phase in runs[0]:
        value = statistics.median(r[phase] for r in runs)
        print(f"  {phase:<40} {value:6.2f} s  ({value / floor:.2f}x the floor)")


if __name__ == "__main__":
    main()
