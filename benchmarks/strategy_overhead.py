"""What does HivemindStrategy cost a lone peer, compared with the same arithmetic without it?

Three ways to train the same model on the same data, alternated in one invocation so that machine noise
hits all of them alike:

* ``lightning``: plain Lightning, accumulating gradients over ``target_batch_size / batch_size`` batches,
  so the inner optimizer steps exactly as often as hivemind's (stepping every batch would flatter us);
* ``strategy``: Lightning with ``HivemindStrategy`` (one peer, loopback DHT);
* ``reuse``: the same with ``reuse_grad_buffers=True``, which accumulates in ``.grad`` as Lightning does
  instead of copying every batch's gradients into hivemind's own buffers;
* ``raw``: a hand-written loop around ``hivemind.Optimizer``, no Lightning, with hivemind 1.1.12 as released;
* ``raw+fix``: the same loop with ``volunteer.swarm.hivemind_patches`` applied, as the strategy applies them, so
  that ``strategy / raw+fix`` is what the strategy itself costs.

Throughput is measured after a warm-up (the first global step, which includes building the optimizer) and
reported as samples/s, with ratios against the plain Lightning baseline.

    python benchmarks/strategy_overhead.py              # the recorded configuration
    python benchmarks/strategy_overhead.py --quick      # a smoke run
    python benchmarks/strategy_overhead.py --accelerator gpu --width 8192 --batch-size 256 --target 65536
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import hivemind
import lightning as L
import torch
from hivemind.averaging.matchmaking import PotentialLeaders
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from volunteer.strategy import HivemindStrategy
from volunteer.swarm import hivemind_patches

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


class Mlp(L.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class BatchClock(L.Callback):
    def __init__(self, warmup_batches: int) -> None:
        self.warmup_batches = warmup_batches
        self.start: float | None = None
        self.end: float | None = None
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1
        if self.batches == self.warmup_batches:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        self.end = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":  # the last batches' kernels may still be queued
            synchronize(pl_module.device)
            self.end = time.perf_counter()


def synchronize(device) -> None:
    """Wait for queued GPU work, so that a clock read covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_data(num_batches: int, batch_size: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(num_batches * batch_size, 256, generator=generator)
    y = torch.randint(0, 10, (num_batches * batch_size,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def trainer_for(args, strategy, accumulate: int, max_steps: int, clock: BatchClock) -> L.Trainer:
    return L.Trainer(
        strategy=strategy,
        accelerator=args.accelerator,
        devices=1,
        accumulate_grad_batches=accumulate,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )


def run_lightning(args, accumulate: int) -> float:
    clock = BatchClock(warmup_batches=accumulate)
    total_batches = accumulate * (args.global_steps + 1)
    # with accumulation, max_steps counts optimizer steps
    trainer = trainer_for(args, "auto", accumulate, args.global_steps + 1, clock)
    trainer.fit(Mlp(args.width), make_data(total_batches, args.batch_size))
    return (clock.batches - clock.warmup_batches) * args.batch_size / (clock.end - clock.start)


def run_strategy(args, accumulate: int, reuse_grad_buffers: bool = False) -> float:
    clock = BatchClock(warmup_batches=accumulate)
    total_batches = accumulate * (args.global_steps + 1)
    strategy = HivemindStrategy(
        target_batch_size=args.target,
        batch_size=args.batch_size,
        run_id=f"bench-{time.monotonic_ns()}",
        host_maddrs=LOOPBACK,
        matchmaking_time=args.matchmaking_time,
        averaging_timeout=10,
        reuse_grad_buffers=reuse_grad_buffers,
        print_join_message=False,
    )
    trainer = trainer_for(args, strategy, 1, total_batches, clock)
    trainer.fit(Mlp(args.width), make_data(total_batches, args.batch_size))
    return (clock.batches - clock.warmup_batches) * args.batch_size / (clock.end - clock.start)


def run_raw(args, accumulate: int, patched: bool = False) -> float:
    # the patch is process-wide once a strategy has applied it: set either state explicitly
    if patched:
        assert hivemind_patches.apply_hivemind_patches()
    else:
        PotentialLeaders._update_queue_periodically = hivemind_patches.HIVEMIND_UPDATE_QUEUE_PERIODICALLY
    device = torch_device(args)
    model = Mlp(args.width).to(device)
    dht = hivemind.DHT(host_maddrs=[LOOPBACK], start=True)
    opt = hivemind.Optimizer(
        dht=dht,
        run_id=f"bench-raw-{time.monotonic_ns()}",
        target_batch_size=args.target,
        batch_size_per_step=args.batch_size,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        matchmaking_time=args.matchmaking_time,
        averaging_timeout=10,
        client_mode=False,
    )
    try:
        total_batches = accumulate * (args.global_steps + 1)
        start = None
        for i, (x, y) in enumerate(make_data(total_batches, args.batch_size)):
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model.net(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if i + 1 == accumulate:
                synchronize(device)
                start = time.perf_counter()
        synchronize(device)
        end = time.perf_counter()
        return (total_batches - accumulate) * args.batch_size / (end - start)
    finally:
        opt.shutdown()
        dht.shutdown()


def torch_device(args) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def step_time_ms(args) -> float:
    device = torch_device(args)
    model = Mlp(args.width).to(device)
    x, y = (t.to(device) for t in next(iter(make_data(1, args.batch_size))))
    for _ in range(3):
        nn.functional.cross_entropy(model.net(x), y).backward()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        nn.functional.cross_entropy(model.net(x), y).backward()
    synchronize(device)
    return (time.perf_counter() - start) * 100


def parse_workload(
    doc: str | None,
    *,
    width: int,
    target: int,
    global_steps: int,
    repeats: int,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The command line shared by the benchmarks that train ``Mlp``, with their own defaults.

    ``add_arguments`` adds a benchmark's own options to the parser before it reads the command line.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target", type=int, default=target)
    parser.add_argument("--global-steps", type=int, default=global_steps)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--matchmaking-time", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="small and short, for a smoke test")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="gpu: the first CUDA device")
    args = parser.parse_args()
    if args.quick:
        args.width, args.target, args.global_steps, args.repeats = 256, 512, 1, 1
    if args.target % args.batch_size:
        parser.error("--target must be a multiple of --batch-size")
    return args


def silence_training_logs() -> None:
    """Keep Lightning's and hivemind's messages out of the benchmark's table."""
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    hivemind.utils.logging.use_hivemind_log_handler("nowhere")


def main() -> None:
    args = parse_workload(__doc__, width=1024, target=2048, global_steps=4, repeats=3)
    accumulate = args.target // args.batch_size
    silence_training_logs()

    print(
        f"model: MLP width {args.width}, batch {args.batch_size}, one fwd+bwd step ≈ {step_time_ms(args):.1f} ms; "
        f"target_batch_size {args.target} ({accumulate} batches per global step), "
        f"{args.global_steps} measured global steps, {args.repeats} alternating repeats, "
        f"torch threads {torch.get_num_threads()}, on {torch_device(args)}"
        + (f" ({torch.cuda.get_device_name()})" if args.accelerator == "gpu" else "")
    )
    runners = {
        "lightning": run_lightning,
        "strategy": run_strategy,
        "reuse": lambda args, accumulate: run_strategy(args, accumulate, reuse_grad_buffers=True),
        "raw": run_raw,
        "raw+fix": lambda args, accumulate: run_raw(args, accumulate, patched=True),
    }
    results: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(args.repeats):
        for name, runner in runners.items():
            value = runner(args, accumulate)
            results[name].append(value)
            print(f"  repeat {repeat + 1} {name:<10} {value:9.1f} samples/s", flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    print("median samples/s:  " + "  ".join(f"{name} {value:.1f}" for name, value in median.items()))
    base = median["lightning"]
    print(f"ratio strategy / lightning (accumulating):          {median['strategy'] / base:.3f}")
    print(f"ratio strategy, reuse_grad_buffers / lightning:     {median['reuse'] / base:.3f}")
    print(f"ratio raw hivemind as released / lightning:         {median['raw'] / base:.3f}")
    print(f"ratio raw hivemind with the fix / lightning:        {median['raw+fix'] / base:.3f}")
    print(f"ratio strategy / raw+fix (the strategy alone):      {median['strategy'] / median['raw+fix']:.3f}")


if __name__ == "__main__":
    main()
