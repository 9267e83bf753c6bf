"""Global-step latency: what does each global step cost, from a few batches per step to hundreds?

A ladder of cells: batches per global step (``--batches``) by model step time (``--step-ms``, an MLP whose
width is calibrated at start to take about that long for one forward and backward pass on one thread).
In every cell these runs alternate, each in a fresh process on one torch thread, ``--repeats`` times:

* ``lightning``: plain Lightning accumulating the same batches (one peer; the baseline);
* ``strategy``: Lightning with ``HivemindStrategy``, one peer, then two peers on loopback (``--peers``);
* ``before``: the strategy as it was before issue 14 (state averaged in the foreground, every report
  throttled, the tracker reading this peer's own record back from the DHT), so the fix is measured in the
  same invocation;
* ``window``: the strategy without early group assembly (``apply_group_patches``): every averaging round
  with other peers waits for its whole matchmaking window, as in hivemind as released; for two peers;
* ``unthrottled``: the strategy publishing its progress after every batch (``progress_report_interval=0``),
  not run unless asked for;
* ``foreground``: the strategy averaging parameters in the foreground (``delay_state_averaging=False``, its
  default before issue 14), not run unless asked for;
* ``reuse``: the strategy with ``reuse_grad_buffers=True`` (hivemind accumulates in the parameters' own
  ``.grad`` instead of copying every batch's gradients into its accumulators), not run unless asked for;
* ``raw``: a hand-written ``hivemind.Optimizer`` loop without Lightning, hivemind 1.1.12 as released apart
  from the matchmaking rate limit of ``volunteer.swarm.hivemind_patches`` (without it hivemind's matchmaking busy
  loop dominates every figure; ``benchmarks.strategy_overhead`` measures that separately).

Two-peer runs start a bootstrap DHT here and two workers that join it; each waits at its first batch until
it sees the other, so that both train together from the first global step.

For each run: samples/s over the measured global steps (after a warm-up), its ratio to plain Lightning, the
fixed cost per global step derived from the two (``target / strategy - target / lightning``, seconds), and
the latency measured directly from timestamps around every ``hivemind.Optimizer.step``: from the call whose
batch brought the swarm's samples for that global step to the target (from the end of the closure in which
Lightning computes that batch, for the strategy) (summed over both peers' calls) to
the end of the call in which this peer's optimizer stepped. Medians over repeats; for two peers the
samples/s is the swarm's (the sum of both peers'), and the ratio is against one peer of the same run kind.

Every hivemind run also prints the CPU seconds per global step of the training processes, of hivemind's
own processes (DHT, averagers) and of ``p2pd``, and one batch's time; ``--trace`` decomposes the latency
on every peer (``Trace``: tracker re-reads, ready, round scheduled, group assembled, all-reduce done,
stepped).

    python -m benchmarks.latency_ladder --quick                     # one small cell, a smoke run
    python -m benchmarks.latency_ladder                             # the whole ladder (long)
    python -m benchmarks.latency_ladder --step-ms 20 --batches 10,32 --runs lightning,strategy,before
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

RESULT_PREFIX = "LADDER-RESULT "
RUN_KINDS = ("lightning", "strategy", "before", "raw", "window", "unthrottled", "foreground", "reuse")


@dataclass(frozen=True)
class Job:
    """One run of one worker process."""

    kind: str
    width: int
    batch_size: int
    batches: int
    warmup_steps: int
    global_steps: int
    peers: int
    initial_peers: list[str]
    run_id: str
    matchmaking_time: float
    trace: bool = False
    tracker_opts: dict | None = None


# -- the worker: one peer in its own process ---------------------------------------------------------------


class StepLog:
    """Timestamps around every ``hivemind.Optimizer.step`` of this process."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, int, int, int]] = []  # enter, exit, epoch before, after, samples

    def install(self) -> None:
        import hivemind

        original = hivemind.Optimizer.step
        rows = self.rows

        def step(opt, closure=None, batch_size=None, **kwargs):
            before = opt.local_epoch
            entered = [time.time()]
            if closure is not None:  # Lightning computes the batch inside step(): count from its end
                inner = closure

                def closure():
                    loss = inner()
                    entered[0] = time.time()
                    return loss

            output = original(opt, closure, batch_size=batch_size, **kwargs)
            rows.append((entered[0], time.time(), before, opt.local_epoch, batch_size or opt.batch_size_per_step))
            return output

        hivemind.Optimizer.step = step


class Trace:
    """``--trace``: timestamps of what happens between "the target is reached" and "stepped" in one peer.

    Installed on the optimizer's instances (hivemind's and our patched methods stay as they are):

    * ``fetch``: the tracker re-read the swarm's progress from the DHT (samples it saw, its ETA);
    * ``ready``: ``Optimizer.step`` found ``tracker.ready_to_update_epoch`` and began ``_update_global_epoch``,
      with the reason (``samples``: the swarm's samples reached the target; ``epoch``: another peer is
      already in a later global step; ``eta``: hivemind's time estimate passed);
    * ``scheduled``: a gradient round was scheduled (matchmaking began), ``assembled``: its group was
      assembled and the all-reduce began (the round's stage, polled every 5 ms), ``averaged``: the foreground
      wait for the all-reduce ended;
    * ``stepped``: ``_update_global_epoch`` returned (optimizer step done, state round handed to the
      background); ``report``: a progress record handed to the reporter thread (its publication).
    """

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int, dict]] = []

    def add(self, name: str, epoch: int, **data) -> None:
        self.events.append((time.time(), name, epoch, data))

    def install(self, opt) -> None:
        import threading

        from hivemind.averaging.control import AveragingStage
        from hivemind.utils import get_dht_time

        tracker, trace = opt.tracker, self
        parse = tracker._parse_swarm_progress_data

        def parse_and_log(metadata):
            progress = parse(metadata)
            trace.add(
                "fetch",
                tracker.local_progress.epoch,
                samples=progress.samples_accumulated,
                peers=progress.num_peers,
                global_epoch=progress.epoch,
                eta=progress.eta_next_epoch - get_dht_time(),
            )
            return progress

        tracker._parse_swarm_progress_data = parse_and_log
        update = opt._update_global_epoch

        def update_and_log(grad_scaler):
            progress = tracker.global_progress
            if tracker.global_epoch > tracker.local_progress.epoch:
                why = "epoch"
            elif progress.samples_accumulated >= tracker.target_batch_size:
                why = "samples"
            else:
                why = "eta"
            epoch = opt.local_epoch
            trace.add("ready", epoch, why=why, samples=progress.samples_accumulated, peers=progress.num_peers)
            try:
                return update(grad_scaler)
            finally:
                trace.add("stepped", epoch)

        opt._update_global_epoch = update_and_log
        average = opt._average_gradients_and_load_into_optimizer

        def average_and_log(control):
            try:
                return average(control)
            finally:
                trace.add("averaged", opt.local_epoch)

        opt._average_gradients_and_load_into_optimizer = average_and_log
        event = tracker.should_report_progress
        event_set = event.set

        def set_and_log():
            event_set()
            if event.is_set():
                trace.add("report", tracker.local_progress.epoch, samples=tracker.local_progress.samples_accumulated)

        event.set = set_and_log

        def poll_rounds():
            seen = None
            while not tracker.shutdown_triggered.is_set():
                control = opt.scheduled_grads
                if control is not None and control is not seen and not control.done():
                    trace.add("scheduled", opt.local_epoch)
                    seen = control
                    while not control.done() and not tracker.shutdown_triggered.is_set():
                        if control.stage == AveragingStage.RUNNING_ALLREDUCE:
                            trace.add("assembled", opt.local_epoch)
                            break
                        time.sleep(0.005)
                time.sleep(0.005)

        threading.Thread(target=poll_rounds, daemon=True).start()


def wait_for_peers(opt, peers: int, timeout: float = 180.0) -> None:
    if peers < 2:
        return
    deadline = time.monotonic() + timeout
    while opt.tracker.global_progress.num_peers < peers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {opt.tracker.global_progress.num_peers} of {peers} peers after {timeout} s")
        time.sleep(0.05)
    # forget the wait: hivemind's speed estimate (an EMA, alpha 0.1) would count it as one batch taking
    # seconds, and its estimates of the time to the target stayed far too long for the next ~80 batches
    ema = opt.tracker.performance_ema
    opt.tracker.performance_ema = type(ema)(alpha=ema.alpha)


def run_worker(job: Job) -> dict:
    import torch

    torch.set_num_threads(1)
    import lightning as L
    from torch import nn

    from benchmarks.strategy_overhead import LOOPBACK, Mlp, make_data, silence_training_logs

    silence_training_logs()
    target = job.batches * job.batch_size
    last_epoch = job.warmup_steps + job.global_steps
    data = make_data(job.batches, job.batch_size)  # one epoch per global step: Lightning steps at epoch ends
    log = StepLog()
    trace = Trace() if job.trace else None
    batch_ends: list[tuple[float, int]] = []  # plain Lightning: (time, optimizer steps so far)

    if job.kind == "lightning":

        class Clock(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                batch_ends.append((time.time(), trainer.global_step))

        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            accumulate_grad_batches=job.batches,
            max_steps=last_epoch,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Clock()],
        )
        trainer.fit(Mlp(job.width), data)
        return {"batch_ends": batch_ends}

    from volunteer.swarm import hivemind_patches

    log.install()
    if job.kind == "raw":
        import hivemind

        assert hivemind_patches.apply_hivemind_patches()
        model = Mlp(job.width)
        dht = hivemind.DHT(host_maddrs=[LOOPBACK], initial_peers=job.initial_peers, start=True)
        opt = hivemind.Optimizer(
            dht=dht,
            run_id=job.run_id,
            target_batch_size=target,
            batch_size_per_step=job.batch_size,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            matchmaking_time=job.matchmaking_time,
            averaging_timeout=30,
            client_mode=False,
            tracker_opts=job.tracker_opts or {},
        )
        if trace is not None:
            trace.install(opt)
        try:
            opt.load_state_from_peers()
            first = True
            while opt.local_epoch < last_epoch:
                for x, y in data:
                    nn.functional.cross_entropy(model.net(x), y).backward()
                    opt.step()
                    opt.zero_grad()
                    if first:
                        wait_for_peers(opt, job.peers)
                        first = False
                    if opt.local_epoch >= last_epoch:
                        break
        finally:
            opt.shutdown()
            dht.shutdown()
        return {"steps": log.rows, "trace": trace.events if trace else []}

    from volunteer import strategy as strategy_module

    if job.kind in ("before", "window"):
        # without early group assembly: every round with others waits for its whole matchmaking window
        strategy_module.apply_group_patches = lambda: False
    if job.kind == "before":
        # the code before issue 14: every report throttled, the tracker's own record read back from the DHT
        strategy_module.apply_step_patches = lambda: False

        class ThrottleEveryReport(strategy_module._ThrottledEvent):
            def __init__(self, interval, tracker=None):
                super().__init__(interval)

        strategy_module._ThrottledEvent = ThrottleEveryReport

    strategy = strategy_module.HivemindStrategy(
        target_batch_size=target,
        batch_size=job.batch_size,
        run_id=job.run_id,
        host_maddrs=LOOPBACK,
        initial_peers=job.initial_peers or None,
        matchmaking_time=job.matchmaking_time,
        averaging_timeout=30,
        print_join_message=False,
        progress_report_interval=0 if job.kind == "unthrottled" else 0.5,
        delay_state_averaging=job.kind not in ("foreground", "before"),
        tracker_opts=job.tracker_opts,
        reuse_grad_buffers=job.kind == "reuse",
    )

    class Stop(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            opt = strategy.hivemind_optimizer
            if batch_idx == 0 and trainer.current_epoch == 0:
                if trace is not None:
                    trace.install(opt)
                wait_for_peers(opt, job.peers)
            if opt.local_epoch >= last_epoch:
                trainer.should_stop = True

    trainer = L.Trainer(
        strategy=strategy,
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        max_steps=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Stop()],
    )
    trainer.fit(Mlp(job.width), data)
    return {"steps": log.rows, "trace": trace.events if trace else []}


# -- the analysis ---------------------------------------------------------------------------------------------


def window(steps: list, first: int, last: int) -> tuple[float, float, int] | None:
    """(start, end, samples): from the step into global step ``first`` to the step into ``last``."""
    start = next((exit_ for _, exit_, before, after, _ in steps if before < first <= after), None)
    end = next((exit_ for _, exit_, before, after, _ in steps if before < last <= after), None)
    if start is None or end is None or end <= start:
        return None
    samples = sum(size for enter, _, _, _, size in steps if start < enter <= end)
    return start, end, samples


def target_reached(peer_steps: list[list], target: int, epoch: int) -> float | None:
    """When the step call whose batch brought the swarm's samples for ``epoch`` to ``target`` began (all peers'
    calls merged), or None if they never did."""
    batches = sorted((enter, size) for steps in peer_steps for enter, _, before, _, size in steps if before == epoch)
    total = 0
    for enter, size in batches:
        total += size
        if total >= target:
            return enter
    return None


def latencies(peer_steps: list[list], target: int, first: int, last: int) -> list[float]:
    """Seconds from the swarm reaching ``target`` samples for a global step to each peer's step past it."""
    found = []
    for epoch in range(first, last):
        reached = target_reached(peer_steps, target, epoch)
        if reached is None:
            continue
        for steps in peer_steps:
            stepped = next((exit_ for _, exit_, before, after, _ in steps if before == epoch < after), None)
            if stepped is not None:
                found.append(stepped - reached)
    return found


def decompose(job: Job, results: list[dict]) -> dict:
    """``--trace``: per measured global step and peer, the moments of its trace after the swarm's samples
    reached the target (both peers' step calls merged), in seconds; medians over steps and peers."""
    first, last = job.warmup_steps, job.warmup_steps + job.global_steps
    target = job.batches * job.batch_size
    phases: dict[str, list[float]] = {}
    reasons: dict[str, int] = {}
    gaps: list[float] = []
    for result in results:
        fetches = [t for t, name, _, _ in result["trace"] if name == "fetch"]
        gaps += [b - a for a, b in itertools.pairwise(fetches)]
    for epoch in range(first, last):
        reached = target_reached([r["steps"] for r in results], target, epoch)
        if reached is None:
            continue
        readies = []
        for result in results:
            events = [(t, name, data) for t, name, e, data in result["trace"] if e == epoch]

            def first_of(name, after=-math.inf, events=events):
                return next((t for t, n, _ in events if n == name and t >= after), None)

            ready = next(((t, d) for t, n, d in events if n == "ready"), None)
            if ready is None:
                continue
            readies.append(ready[0])
            reasons[ready[1]["why"]] = reasons.get(ready[1]["why"], 0) + 1
            marks = {
                "last report before target": max(
                    (t for t, n, _ in events if n == "report" and t <= reached), default=None
                ),
                "first fetch after target": first_of("fetch", reached),
                "ready (tracker)": ready[0],
                "round scheduled": max((t for t, n, _ in events if n == "scheduled" and t <= ready[0]), default=None),
                "group assembled": first_of("assembled"),
                "all-reduce done": first_of("averaged"),
                "stepped": first_of("stepped"),
            }
            for name, moment in marks.items():
                if moment is not None:
                    phases.setdefault(name, []).append(moment - reached)
        if len(readies) > 1:
            phases.setdefault("last peer ready", []).append(max(readies) - reached)
    return {"phases": phases, "reasons": reasons, "fetch gaps": gaps}


def print_decomposition(found: dict) -> None:
    print("    trace: seconds after the swarm's samples reached the target, median (min, max) over steps and peers")
    for name, values in found["phases"].items():
        spread = f"({min(values):.3f}, {max(values):.3f})"
        print(f"      {name:<27} {statistics.median(values):7.3f} {spread}  n={len(values)}")
    gaps = found["fetch gaps"]
    if gaps:
        print(f"      tracker re-reads: every {statistics.median(gaps):.3f} s (median; min {min(gaps):.3f})")
    print(f"      why the tracker was ready: {found['reasons']}", flush=True)


def analyse(job: Job, results: list[dict]) -> dict:
    """samples/s computed (the swarm's, summed over peers), global steps/s and the step latencies."""
    first, last = job.warmup_steps, job.warmup_steps + job.global_steps
    if job.kind == "lightning":
        ends = results[0]["batch_ends"]
        start = next(t for t, steps in ends if steps >= first)
        end = next(t for t, steps in ends if steps >= last)
        batches = sum(1 for t, _ in ends if start < t <= end)
        return {"samples/s": batches * job.batch_size / (end - start), "steps/s": (last - first) / (end - start)}
    rates, step_rates = [], []
    for result in results:
        span = window(result["steps"], first, last)
        if span is None:
            raise RuntimeError(f"{job.kind}: the measured global steps were not all taken")
        start, end, samples = span
        rates.append(samples / (end - start))
        step_rates.append((last - first) / (end - start))
    target = job.batches * job.batch_size
    batch_gaps = [  # a batch's time between two step calls that did not step: compute under this load
        b[1] - a[1]
        for r in results
        for a, b in itertools.pairwise(r["steps"])
        if a[2] == a[3] and b[2] == b[3] and first <= a[2] < last
    ]
    return {
        "batch s": statistics.median(batch_gaps) if batch_gaps else None,
        "samples/s": sum(rates),
        "steps/s": statistics.mean(step_rates),
        "latency": latencies([r["steps"] for r in results], target, first, last),
    }


# -- the driver ----------------------------------------------------------------------------------------------


def run_job(job: Job, timeout: float) -> dict:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.latency_ladder", "--worker", json.dumps(asdict(job))],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        for _ in range(job.peers if job.kind != "lightning" else 1)
    ]
    results = []
    cpu = CpuMeter([worker.pid for worker in workers])
    try:
        for worker in workers:
            out, _ = worker.communicate(timeout=timeout)
            line = next((line for line in out.splitlines() if line.startswith(RESULT_PREFIX)), None)
            if line is None:
                raise RuntimeError(f"{job.kind} worker exited with {worker.returncode} and no result")
            results.append(json.loads(line[len(RESULT_PREFIX) :]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, 9)
                worker.wait()
    cpu.stop()
    found = analyse(job, results)
    if job.kind != "lightning":
        found["cpu"] = cpu.per_global_step(job, results)
    if job.trace:
        found["decomposition"] = decompose(job, results)
    return found


class CpuMeter:
    """CPU seconds of each worker's process tree, sampled every 0.25 s: the training process itself and the
    processes hivemind starts for it (its DHT, the gradient and state averagers, and ``p2pd``)."""

    def __init__(self, pids: list[int]) -> None:
        import threading

        self.samples: list[tuple[float, dict[str, float]]] = []
        self._roots = pids
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        last: dict[int, tuple[str, float]] = {}  # pid -> (role, cpu seconds): exited processes keep theirs
        while not self._done.wait(0.25):
            for root in self._roots:
                try:
                    parent = psutil.Process(root)
                    tree = [(parent, "training")] + [(p, "") for p in parent.children(recursive=True)]
                except psutil.Error:
                    continue
                for process, role in tree:
                    try:
                        times = process.cpu_times()
                        role = role or ("p2pd" if "p2pd" in process.name() else "hivemind processes")
                    except psutil.Error:
                        continue
                    last[process.pid] = (role, times.user + times.system)
            totals: dict[str, float] = {}
            for role, seconds in last.values():
                totals[role] = totals.get(role, 0.0) + seconds
            self.samples.append((time.time(), totals))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def per_global_step(self, job: Job, results: list[dict]) -> dict[str, float]:
        """CPU seconds per measured global step by role, summed over the peers, and the wall seconds."""
        first, last = job.warmup_steps, job.warmup_steps + job.global_steps
        spans = [window(r["steps"], first, last) for r in results]
        if not self.samples or any(span is None for span in spans):
            return {}
        start = max(span[0] for span in spans if span)
        end = min(span[1] for span in spans if span)
        before = next((totals for t, totals in reversed(self.samples) if t <= start), None)
        after = next((totals for t, totals in self.samples if t >= end), None)
        if before is None or after is None or end <= start:
            return {}
        steps = (end - start) * statistics.mean((last - first) / (span[1] - span[0]) for span in spans if span)
        found = {role: (after[role] - before.get(role, 0.0)) / steps for role in after}
        found["wall"] = (end - start) / steps
        return found


def calibrate(step_ms: float, batch_size: int) -> tuple[int, float]:
    """An MLP width whose forward and backward pass takes about ``step_ms`` on one thread, and its time."""
    from benchmarks.strategy_overhead import step_time_ms

    width, measured = 512, 0.0
    for _ in range(4):
        measured = step_time_ms(argparse.Namespace(width=width, batch_size=batch_size, accelerator="cpu"))
        if abs(measured - step_ms) < 0.1 * step_ms:
            break
        width = max(16, int(width * math.sqrt(step_ms / measured)))
    return width, measured


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", default="4,10,32,256", help="batches per global step, comma separated")
    parser.add_argument("--step-ms", default="5,20,100", help="model step times to calibrate, comma separated")
    parser.add_argument("--runs", default="lightning,strategy,before,raw", help=f"among {','.join(RUN_KINDS)}")
    parser.add_argument("--peers", default="1,2", help="peer counts for the hivemind runs: 1, 2 or 1,2")
    parser.add_argument("--window", type=float, default=8.0, help="measure at least this many seconds a run")
    parser.add_argument("--trace", action="store_true", help="decompose each hivemind run's step latency")
    parser.add_argument(
        "--min-refresh",
        type=float,
        default=None,
        help="the tracker's min_refresh_period for every hivemind run (default: the strategy's / hivemind's)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def main() -> None:
    if "--worker" in sys.argv:
        job = Job(**json.loads(sys.argv[sys.argv.index("--worker") + 1]))
        print(RESULT_PREFIX + json.dumps(run_worker(job)), flush=True)
        return

    import torch

    from benchmarks.strategy_overhead import LOOPBACK, parse_workload, silence_training_logs

    args = parse_workload(__doc__, width=0, target=64, global_steps=0, repeats=3, add_arguments=add_arguments)
    if args.quick:
        args.batches, args.step_ms, args.peers, args.repeats, args.window = "10", "5", "1", 1, 2.0
        args.global_steps = 0
    torch.set_num_threads(1)
    silence_training_logs()
    batches_list = [int(b) for b in args.batches.split(",")]
    step_ms_list = [float(ms) for ms in args.step_ms.split(",")]
    kinds = [kind for kind in args.runs.split(",") if kind]
    if unknown := set(kinds) - set(RUN_KINDS):
        raise SystemExit(f"error: unknown run kinds {sorted(unknown)}\nhint: choose among {','.join(RUN_KINDS)}")
    peer_counts = [int(p) for p in args.peers.split(",")]

    import hivemind

    print(
        f"batch {args.batch_size}; batches per global step {batches_list}; model step ≈ {step_ms_list} ms; "
        f"runs {kinds}; peers {peer_counts}; {args.repeats} alternating repeats; matchmaking_time "
        f"{args.matchmaking_time} s; one torch thread per process; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    for step_ms in step_ms_list:
        width, measured = calibrate(step_ms, args.batch_size)
        for batches in batches_list:
            epoch_s = batches * measured / 1000
            global_steps = max(2, min(60, math.ceil(args.window / epoch_s)))
            warmup = 2 if epoch_s < 2 else 1
            if args.global_steps:
                global_steps = args.global_steps
            print(
                f"\n== ≈{step_ms:g} ms model (MLP width {width}, measured {measured:.1f} ms), {batches} batches per "
                f"global step (≈{epoch_s:.2f} s of compute), {warmup} warm-up + {global_steps} measured global steps",
                flush=True,
            )
            cells = [("lightning", 1)] if "lightning" in kinds else []
            cells += [(kind, peers) for peers in peer_counts for kind in kinds if kind != "lightning"]
            measured_runs: dict[tuple[str, int], list[dict]] = {cell: [] for cell in cells}
            for repeat in range(args.repeats):
                for kind, peers in cells:
                    bootstrap = None
                    if peers > 1:
                        bootstrap = hivemind.DHT(host_maddrs=[LOOPBACK], start=True)
                    job = Job(
                        kind=kind,
                        width=width,
                        batch_size=args.batch_size,
                        batches=batches,
                        warmup_steps=warmup,
                        global_steps=global_steps,
                        peers=peers,
                        initial_peers=[str(a) for a in bootstrap.get_visible_maddrs()] if bootstrap else [],
                        run_id=f"ladder-{time.monotonic_ns()}",
                        matchmaking_time=args.matchmaking_time,
                        trace=args.trace,
                        tracker_opts=None if args.min_refresh is None else {"min_refresh_period": args.min_refresh},
                    )
                    try:
                        result = run_job(job, timeout=120 + 20 * (warmup + global_steps) * max(epoch_s, 1))
                    except Exception as e:  # one failed run must not lose the rest of the ladder
                        print(f"  repeat {repeat + 1} {kind:<9} {peers} peer(s): FAILED {e}", flush=True)
                        continue
                    finally:
                        if bootstrap is not None:
                            bootstrap.shutdown()
                    result["repeat"] = repeat
                    measured_runs[(kind, peers)].append(result)
                    lat = result.get("latency")
                    lat_text = f", step latency median {statistics.median(lat) * 1000:.0f} ms" if lat else ""
                    if result.get("batch s"):
                        lat_text += f", a batch {result['batch s'] * 1000:.1f} ms"
                    print(
                        f"  repeat {repeat + 1} {kind:<9} {peers} peer(s) "
                        f"{result['samples/s']:9.1f} samples/s, {result['steps/s']:6.2f} global steps/s{lat_text}",
                        flush=True,
                    )
                    if result.get("cpu"):
                        print(
                            "    CPU seconds per global step (all peers): "
                            + ", ".join(f"{role} {value:.3f}" for role, value in sorted(result["cpu"].items())),
                            flush=True,
                        )
                    if "decomposition" in result:
                        print_decomposition(result["decomposition"])
            report(measured_runs, batches * args.batch_size)


def paired(runs: list[dict], baseline: list[dict], key) -> float | None:
    """The median over repeats of ``key(run, baseline run of the same repeat)``: slow drifts of a shared
    machine's load then hit both sides of each figure alike."""
    by_repeat = {r["repeat"]: r for r in baseline}
    values = [key(r, by_repeat[r["repeat"]]) for r in runs if r["repeat"] in by_repeat]
    return statistics.median(values) if values else None


def report(runs: dict[tuple[str, int], list[dict]], target: int) -> None:
    plain = runs.get(("lightning", 1)) or []
    print(
        f"  {'run':<9} {'peers':>5} {'samples/s':>10} {'÷ plain':>8} {'steps/s':>8} {'÷ plain':>8} "
        f"{'fixed s/step':>12} {'÷ 1 peer':>9} {'latency ms: median':>19} {'max':>6}"
    )
    for (kind, peers), results in runs.items():
        if not results:
            continue
        samples = statistics.median(r["samples/s"] for r in results)
        steps = statistics.median(r["steps/s"] for r in results)
        ratio = step_ratio = fixed = scaling = None
        if peers == 1:
            ratio = paired(results, plain, lambda r, b: r["samples/s"] / b["samples/s"])
            step_ratio = paired(results, plain, lambda r, b: r["steps/s"] / b["steps/s"])
            fixed = paired(results, plain, lambda r, b: 1 / r["steps/s"] - 1 / b["steps/s"])
        else:
            one = runs.get((kind, 1)) or []
            scaling = paired(results, one, lambda r, b: r["samples/s"] / b["samples/s"])
        lat = [x for r in results for x in r.get("latency", [])]
        print(
            f"  {kind:<9} {peers:>5} {samples:10.1f} {_fmt(ratio, 8, 3)} {steps:8.2f} {_fmt(step_ratio, 8, 3)} "
            f"{_fmt(fixed, 12, 3)} {_fmt(scaling, 9, 2)} "
            + (f"{statistics.median(lat) * 1000:19.0f} {max(lat) * 1000:6.0f}" if lat else ""),
            flush=True,
        )


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * width


if __name__ == "__main__":
    main()
