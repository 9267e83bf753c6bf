"""Does the dashboard slow training down? Throughput of one headless volunteer with and without it attached.

One volunteer of the demo project trains throughout; windows alternate between no dashboard and a dashboard
(``tui.app.VolunteerApp`` with a real ``StatusClient``, rendering a 120x40 screen headless through Textual's
test driver, polling at its normal 4 Hz) running in a separate process, as ``volunteer attach`` would.

    python -m benchmarks.tui_overhead       # 4 windows of each, 20 s per window
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.volunteers import Volunteer

DASHBOARD = """
import asyncio, sys
from tui import yield_cpu
from tui.app import VolunteerApp
from volunteer.status_client import StatusClient

async def main():
    yield_cpu()  # as tui.run_tui does
    app = VolunteerApp(StatusClient(sys.argv[1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.sleep(float(sys.argv[2]))

asyncio.run(main())
"""


def window(v: Volunteer, seconds: float, dashboard: bool) -> float:
    viewer = None
    if dashboard:
        viewer = subprocess.Popen([sys.executable, "-c", DASHBOARD, v.url, str(seconds + 10)])
        time.sleep(3)  # let it start (import Textual) before measuring
    try:
        first, start = v.status()["session_samples"], time.monotonic()
        time.sleep(seconds)
        last, end = v.status()["session_samples"], time.monotonic()
    finally:
        if viewer is not None:
            viewer.kill()
            viewer.wait()
    return (last - first) / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        v = Volunteer(Path(tmp), "bench", project="demo")
        try:
            v.wait_training()
            time.sleep(5)
            plain, attached = [], []
            for i in range(args.windows):
                plain.append(window(v, args.seconds, dashboard=False))
                attached.append(window(v, args.seconds, dashboard=True))
                print(
                    f"  window {i + 1}: headless {plain[-1]:,.0f} samples/s, dashboard {attached[-1]:,.0f} samples/s",
                    flush=True,
                )
        finally:
            v.stop()
    p, a = statistics.median(plain), statistics.median(attached)
    print(f"median samples/s: headless {p:,.0f}, with dashboard {a:,.0f}; ratio {a / p:.3f}")


if __name__ == "__main__":
    main()
