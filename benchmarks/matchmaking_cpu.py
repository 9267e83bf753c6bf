"""How busy are hivemind's background processes while a lone peer trains with HivemindStrategy?

Trains the MLP of ``benchmarks.strategy_overhead`` on one peer and, over the measured global steps (after
a warm-up global step), reports the CPU used by the DHT process (with its p2pd daemon), the gradient
averager, the state averager and the training process itself, as a percentage of one core, together with
the number of DHT lookups of matchmaking (``GroupKeyManager.get_averagers``) per second, counted in every
forked process through a shared counter. Runs alternate between hivemind's matchmaking as released and with
``volunteer.swarm.hivemind_patches`` applied, so that machine noise hits both alike.

    python -m benchmarks.matchmaking_cpu              # the recorded configuration
    python -m benchmarks.matchmaking_cpu --quick      # a smoke run
"""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time

import lightning as L
import psutil
from hivemind.averaging.key_manager import GroupKeyManager
from hivemind.averaging.matchmaking import PotentialLeaders

from benchmarks.strategy_overhead import (
    LOOPBACK,
    Mlp,
    make_data,
    parse_workload,
    silence_training_logs,
    trainer_for,
)
from volunteer import strategy as strategy_module
from volunteer.strategy import HivemindStrategy
from volunteer.swarm import hivemind_patches


def count_lookups(counter) -> None:
    """Count every matchmaking lookup; hivemind forks its averagers, so they inherit the wrapper."""
    original = GroupKeyManager.get_averagers

    async def get_averagers(self, group_key, only_active):
        with counter.get_lock():
            counter.value += 1
        return await original(self, group_key, only_active)

    GroupKeyManager.get_averagers = get_averagers


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(psutil.NoSuchProcess):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    return 0.0


class CpuClock(L.Callback):
    """Reads the CPU times of hivemind's processes after the warm-up global step and at the end."""

    def __init__(self, strategy: HivemindStrategy, counter, warmup_batches: int) -> None:
        self.strategy, self.counter, self.warmup_batches = strategy, counter, warmup_batches
        self.batches = 0
        self.start: tuple[float, int, dict[str, float]] | None = None
        self.end: tuple[float, int, dict[str, float]] | None = None

    def sample(self) -> tuple[float, int, dict[str, float]]:
        opt, dht = self.strategy.hivemind_optimizer, self.strategy.dht
        assert opt is not None and dht is not None
        daemons = [child.pid for child in psutil.Process(dht.pid).children(recursive=True)]
        cpu = {
            "dht": cpu_seconds(dht.pid) + sum(cpu_seconds(pid) for pid in daemons),
            "grad averager": cpu_seconds(opt.grad_averager.pid),
            "state averager": cpu_seconds(opt.state_averager.pid),
            "training": cpu_seconds(psutil.Process().pid),
        }
        return time.perf_counter(), self.counter.value, cpu

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1
        if self.batches == self.warmup_batches:
            self.start = self.sample()
        self.end = self.sample() if self.batches > self.warmup_batches else self.end


def use_patch(patched: bool) -> None:
    """Apply the rate limit, or put hivemind's method back and keep the strategy from applying it."""
    if patched:
        strategy_module.apply_hivemind_patches = hivemind_patches.apply_hivemind_patches
        assert hivemind_patches.apply_hivemind_patches()
    else:
        strategy_module.apply_hivemind_patches = lambda: False
        PotentialLeaders._update_queue_periodically = hivemind_patches.HIVEMIND_UPDATE_QUEUE_PERIODICALLY


def run(args, counter, patched: bool) -> dict[str, float]:
    use_patch(patched)
    accumulate = args.target // args.batch_size
    total_batches = accumulate * (args.global_steps + 1)
    strategy = HivemindStrategy(
        target_batch_size=args.target,
        batch_size=args.batch_size,
        run_id=f"bench-cpu-{time.monotonic_ns()}",
        host_maddrs=LOOPBACK,
        matchmaking_time=args.matchmaking_time,
        averaging_timeout=10,
        print_join_message=False,
    )
    clock = CpuClock(strategy, counter, warmup_batches=accumulate)
    trainer = trainer_for(args, strategy, 1, total_batches, clock)
    trainer.fit(Mlp(args.width), make_data(total_batches, args.batch_size))
    assert clock.start is not None and clock.end is not None
    (t0, n0, cpu0), (t1, n1, cpu1) = clock.start, clock.end
    wall = t1 - t0
    result = {name: 100 * (cpu1[name] - cpu0[name]) / wall for name in cpu0}
    result["lookups/s"] = (n1 - n0) / wall
    result["samples/s"] = (clock.batches - accumulate) * args.batch_size / wall
    return result


def main() -> None:
    args = parse_workload(__doc__, width=3072, target=16384, global_steps=2, repeats=2)
    silence_training_logs()

    counter = multiprocessing.get_context("fork").Value("L", 0)
    count_lookups(counter)
    modes = {"hivemind": False, "patched": True}
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        for mode, patched in modes.items():
            results[mode].append(run(args, counter, patched))
            row = "  ".join(f"{k} {v:.1f}" for k, v in results[mode][-1].items())
            print(f"  repeat {repeat + 1} {mode:<9} {row}", flush=True)
    print(f"median of {args.repeats}; CPU in % of one core   " + "  ".join(f"{mode:>9}" for mode in modes))
    for name in results["patched"][0]:
        row = "  ".join(f"{statistics.median(r[name] for r in results[mode]):9.1f}" for mode in modes)
        print(f"  {name:<36} {row}")


if __name__ == "__main__":
    main()
