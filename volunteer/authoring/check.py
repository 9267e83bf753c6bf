"""``volunteer check DIR|ID``: validate a project as a volunteer's client would, then train it a few steps here.

The project is resolved and validated by the client's own loader (:func:`volunteer.project.resolve_project`:
manifest, code references, the peers file), imported and instantiated in isolation
(:func:`~volunteer.project.loader.build_project`), and trained with a plain single-device ``lightning.Trainer``
on a tiny batch, without hivemind. The report gives the parameter count, the mean step time and the peak memory;
a failure is one line naming the file and line, and a hint.

A Hub project's code runs here only with consent, as for a volunteer: remembered, given with ``--trust``, or
answered at a prompt on a terminal. Only the manifest and the code are downloaded before that.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import resource
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volunteer.authoring.errors import CheckFailed
from volunteer.authoring.options import checked, non_negative_int, positive_int
from volunteer.constants import without_hub_token
from volunteer.datadir import DataDir
from volunteer.errors import VolunteerError
from volunteer.project import PreparedProject, ResolvedProject, resolve_project
from volunteer.project.loader import build_project
from volunteer.project.peersources import PeerList, SourceFailed, fetch_peers_url, read_peers_file
from volunteer.project.prepare import finish_download
from volunteer.project.trust import describe_code, require_consent
from volunteer.settings import ArgumentParser, Settings, add_run_options, parse_device, settings_from_namespace

DEFAULT_STEPS = 5
DEFAULT_BATCH_SIZE = 4
"""The tiny batch a check trains on, unless the manifest's batch size is smaller or ``--batch-size`` is given."""
MIN_STEP_SECONDS = 1e-6


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found: the project, its size, and how training it went on this machine."""

    project: str
    """How messages name the project: ``org/name@1a2b3c4``, a folder, or ``demo``."""
    name: str
    run_id: str
    revision: str
    files: tuple[str, ...]
    model: str
    data: str
    parameters: int = 0
    trainable_parameters: int = 0
    parameter_bytes: int = 0
    steps: int = 0
    """Training steps run (0: imported and instantiated only)."""
    batch_size: int = 0
    device: str = "cpu"
    precision: str = "32-true"
    first_step_seconds: float | None = None
    mean_step_seconds: float | None = None
    """The mean of the steps after the first (the first includes warm-up); the first alone for one step."""
    first_loss: float | None = None
    last_loss: float | None = None
    peak_memory_bytes: int | None = None
    """Peak resident memory of this process (CPU), or peak memory allocated on the GPU."""
    memory_before_bytes: int | None = None
    """Resident memory (CPU) or GPU memory allocated just before training."""
    peers: int = 0
    peer_sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """Warnings that do not stop a volunteer (the project's own Python warnings too)."""
    target_batch_size: int = 0

    @property
    def samples_per_second(self) -> float | None:
        if not self.mean_step_seconds or not self.batch_size:
            return None
        return self.batch_size / max(self.mean_step_seconds, MIN_STEP_SECONDS)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["samples_per_second"] = self.samples_per_second
        return data


def check_project(
    settings: Settings,
    data_dir: DataDir,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int | None = None,
    device: str = "cpu",
    ask: Callable[[ResolvedProject], bool] | None = None,
) -> CheckReport:
    """Validate, import and (``steps`` > 0) train the project ``settings.project`` names.

    Args:
        settings: ``project``, ``endpoint`` and ``trust`` are used (``HF_TOKEN`` is read for private projects).
        data_dir: Where a Hub project is downloaded (its ``hub/`` cache).
        steps: Training steps to run; 0 only imports the code and creates the model and data source.
        batch_size: Samples per step (default: the manifest's, at most :data:`DEFAULT_BATCH_SIZE`).
        device: ``cpu`` (the default), ``auto``, ``cuda`` or ``cuda:N``.
        ask: Asks the author for consent to run a Hub project's code (``None``: only ``--trust`` or a remembered
            consent lets it run).

    Raises:
        TrustError: a Hub project's code has no consent to run here.
        ProjectError: anything the client would refuse (manifest, code references, the peers file, imports).
        CheckFailed: training fails, or the module cannot train in a swarm (several optimizers,
            ReduceLROnPlateau, no trainable parameters, a loss that is not a finite number).
    """
    project = resolve_project(settings, data_dir)
    require_consent(project, data_dir, trust=settings.trust, ask=ask)
    project = finish_download(project, settings, data_dir)
    with without_hub_token():  # the download is done; the project's code runs in this process now
        return _check_built(project, steps, batch_size, device)


def _check_built(project: ResolvedProject, steps: int, batch_size: int | None, device: str) -> CheckReport:
    manifest = project.manifest
    notes = list(project.warnings)
    peers = _peers(project, notes)
    size = batch_size if batch_size is not None else min(manifest.batch_size, DEFAULT_BATCH_SIZE)
    prepared = PreparedProject(project=project, peers=peers, consent="check")
    built = build_project(prepared.project, size)  # imports the code: ProjectError naming the file and line on failure

    report = CheckReport(
        project=_shown(project),
        name=manifest.name,
        run_id=manifest.run_id,
        revision=project.revision,
        files=project.files,
        model=str(manifest.model.ref),
        data=str(manifest.data.ref),
        batch_size=size,
        peers=len(peers.addresses),
        peer_sources=peers.sources,
        target_batch_size=manifest.target_batch_size,
    )
    parameters = list(built.module.parameters())
    report = dataclasses.replace(
        report,
        parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in parameters),
    )
    if report.trainable_parameters == 0:
        raise CheckFailed(
            f"{project.where(manifest.model.ref.file)}: {manifest.model.ref.name} has no trainable parameters",
            "create the layers in __init__ (as attributes, or in nn.ModuleList/ModuleDict) with requires_grad left on",
        )
    if steps > 0:
        report = _train(project, built, report, steps, device, notes)
    return dataclasses.replace(report, notes=tuple(notes))


def _peers(project: ResolvedProject, notes: list[str]) -> PeerList:
    """The project's own peer sources, as a volunteer reads them (no flags, no cache)."""
    manifest = project.manifest
    addresses: list[str] = []
    sources: list[str] = []
    if manifest.peers.file is not None:
        found = read_peers_file(project.root / manifest.peers.file, project.where(manifest.peers.file))
        addresses += found
        sources.append(f"{manifest.peers.file}: {len(found)}")
    if manifest.peers.url is not None:
        try:
            found, skipped = fetch_peers_url(manifest.peers.url, manifest.peers.url_timeout)
        except SourceFailed as e:
            notes.append(f"the peers URL {manifest.peers.url} failed ({e}): volunteers fall back to the other sources")
        else:
            notes.extend(skipped)
            addresses += found
            sources.append(f"{manifest.peers.url}: {len(found)}")
    return PeerList(tuple(dict.fromkeys(addresses)), tuple(sources))


def _train(
    project: ResolvedProject, built: Any, report: CheckReport, steps: int, device_setting: str, notes: list[str]
) -> CheckReport:
    import lightning as L
    import torch
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    from volunteer.authoring.steptimer import StepTimer
    from volunteer.device import resolve_device

    device = resolve_device(device_setting)
    precision = project.manifest.precision or "32-true"
    if device.accelerator == "cpu" and precision == "16-mixed":
        notes.append('precision "16-mixed" needs a GPU: checked here with "bf16-mixed", as Lightning does on a CPU')
        precision = "bf16-mixed"
    _check_optimizers(project, built.module)
    timer = StepTimer()
    checksum_before = _checksum(built.module)
    on_gpu = device.accelerator == "gpu"
    memory_before: int | None
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device.index)
        memory_before = torch.cuda.memory_allocated(device.index)
    else:
        memory_before = _resident_bytes()

    with tempfile.TemporaryDirectory(prefix="volunteer-check-") as root, _quiet(project, notes):
        trainer = L.Trainer(
            accelerator=device.accelerator,
            devices=[device.index or 0] if on_gpu else 1,
            max_steps=steps,
            # an empty data source must end the check rather than loop over empty epochs
            max_epochs=steps,
            precision=precision,
            default_root_dir=root,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[timer],
        )
        try:
            built.fit(trainer)
        except VolunteerError:
            raise
        except Exception as e:
            raise _training_error(project, e, timer.steps + 1) from e

    if on_gpu:
        peak = torch.cuda.max_memory_allocated(device.index)
    else:
        peak = _peak_resident_bytes()
    where = project.where(project.manifest.model.ref.file)
    name = project.manifest.model.ref.name
    if any(isinstance(config.scheduler, ReduceLROnPlateau) for config in trainer.lr_scheduler_configs):
        raise CheckFailed(
            f"{where}: {name}.configure_optimizers returned a ReduceLROnPlateau scheduler, which a swarm cannot use",
            "use a scheduler that depends on the step count only (LambdaLR, OneCycleLR, ...): every volunteer must "
            "compute the same learning rate for the same global step",
        )
    if timer.steps < steps:
        data = project.manifest.data.ref
        raise CheckFailed(
            f"{project.where(data.file)}: {data.name} gave {timer.steps} batches in {steps} epochs; the check "
            f"needed {steps}",
            f"make the training data loader yield batches of batch size {report.batch_size} (drop_last with a "
            "dataset smaller than a batch yields none)",
        )
    if timer.skipped:
        raise CheckFailed(
            f"{where}: {name}.training_step returned no loss at step {timer.skipped[0]}, so nothing was learnt",
            "return the loss tensor (or a dict with a 'loss' key) from training_step",
        )
    bad = next(((i, loss) for i, loss in enumerate(timer.losses, start=1) if not math.isfinite(loss)), None)
    if bad is not None:
        raise CheckFailed(
            f"{where}: the loss is {bad[1]} at training step {bad[0]}",
            "check the data for NaN or infinite values, and lower the learning rate (init_args in volunteer.toml)",
        )
    if _checksum(built.module) == checksum_before:
        notes.append(
            f"no parameter changed in {steps} steps: is the learning rate 0, or are the parameters detached from "
            "the loss?"
        )
    first = timer.durations[0]
    rest = timer.durations[1:] or timer.durations
    return dataclasses.replace(
        report,
        steps=timer.steps,
        device=device.torch_device,
        precision=precision,
        first_step_seconds=first,
        mean_step_seconds=sum(rest) / len(rest),
        first_loss=timer.losses[0] if timer.losses else None,
        last_loss=timer.losses[-1] if timer.losses else None,
        peak_memory_bytes=peak,
        memory_before_bytes=memory_before,
    )


def _check_optimizers(project: ResolvedProject, module: Any) -> None:
    """A swarm trains with one optimizer: say so before Lightning refuses several with its own advice."""
    from lightning.pytorch.core.optimizer import _configure_optimizers

    try:
        optimizers, _, _ = _configure_optimizers(module.configure_optimizers())
    except Exception:
        return  # e.g. it needs the Trainer: Lightning calls it again in fit and reports what is wrong
    if len(optimizers) != 1:
        ref = project.manifest.model.ref
        raise CheckFailed(
            f"{project.where(ref.file)}: {ref.name}.configure_optimizers returned {len(optimizers)} optimizers; a "
            "swarm trains with exactly one",
            "return a single optimizer (and optionally its schedulers) from configure_optimizers",
        )


def _checksum(module: Any) -> float:
    import torch

    with torch.no_grad():
        return float(sum(float(p.detach().double().abs().sum()) for p in module.parameters()))


def _resident_bytes() -> int | None:
    """This process's resident memory now (Linux), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def _peak_resident_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


@contextlib.contextmanager
def _quiet(project: ResolvedProject, notes: list[str]) -> Iterator[None]:
    """Keep Lightning's banner and warnings out of the report; the project's own warnings become notes."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    root = str(project.root)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    seen: set[str] = set()
    for warning in caught:
        filename = str(warning.filename)
        if filename.startswith(root + "/"):
            text = f"{project.where(filename[len(root) + 1 :])} line {warning.lineno}: {warning.message}"
            if text not in seen:
                seen.add(text)
                notes.append(text)


def _training_error(project: ResolvedProject, error: Exception, step: int) -> CheckFailed:
    """One line naming the project's file and line where training failed (innermost frame in the project)."""
    location = None
    root = str(project.root)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith(root + "/"):
            location = f"{project.where(frame.filename[len(root) + 1 :])} line {frame.lineno}"
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
    if location is None:
        location = project.where(project.manifest.model.ref.file)
        return CheckFailed(
            f"{location}: training step {step} failed: {text}",
            "the error came from Lightning or a library, not a line of the project: check what training_step, "
            "configure_optimizers and the data loader return",
        )
    return CheckFailed(f"{location}: training step {step} raised {text}", "fix the code at that line and check again")


def _shown(project: ResolvedProject) -> str:
    if project.kind == "hub":
        return f"{project.repo}@{project.revision[:7]}"
    return project.repo


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def ask_on_terminal(project: ResolvedProject) -> bool:
    """Ask on the terminal whether a Hub project's code may run here, listing every file that will run."""
    print(
        f"{project.repo} at commit {project.revision[:12]} runs its own code on this machine, with your rights:\n"
        f"  {describe_code(project)}\n"
        f"  read it first: {project.endpoint}/{project.repo}/tree/{project.revision}",
        flush=True,
    )
    try:
        answer = input("Run this code here? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def format_report(report: CheckReport) -> list[str]:
    """The report as lines for a terminal."""
    lines = [f"ok  {report.project}: {report.name!r}, run id {report.run_id}"]
    lines.append(f"ok  manifest, code references and peers file; Python files: {', '.join(report.files)}")
    lines.append(f"ok  imported and created {report.model} and {report.data}")
    lines.append(
        f"    parameters: {report.parameters:,} ({report.trainable_parameters:,} trainable, "
        f"{_bytes(report.parameter_bytes)})"
    )
    if report.steps:
        loss = ""
        if report.first_loss is not None and report.last_loss is not None:
            loss = f": loss {report.first_loss:.4g} -> {report.last_loss:.4g}"
        steps = f"{report.steps} training step{'s' if report.steps != 1 else ''}"
        lines.append(f"ok  {steps} on {report.device} ({report.precision}), batch size {report.batch_size}{loss}")
        assert report.mean_step_seconds is not None and report.first_step_seconds is not None
        lines.append(
            f"    step time: {_seconds(report.mean_step_seconds)} mean (the first, with warm-up: "
            f"{_seconds(report.first_step_seconds)})"
        )
        if report.peak_memory_bytes is not None:
            where = "allocated on the GPU" if report.device.startswith("cuda") else "resident, this process"
            before = (
                f"; {_bytes(report.memory_before_bytes)} before training"
                if report.memory_before_bytes is not None
                else ""
            )
            lines.append(f"    peak memory: {_bytes(report.peak_memory_bytes)} ({where}{before})")
        rate = report.samples_per_second
        if rate:
            alone = report.target_batch_size / rate
            lines.append(
                f"    {rate:,.0f} samples/s here at batch size {report.batch_size}: one volunteer like this machine "
                f"would fill target_batch_size ({report.target_batch_size:,}) alone in {_seconds(alone)} (larger "
                "batches are faster per sample)"
            )
    if report.peer_sources:
        lines.append(f"ok  peers: {report.peers} ({'; '.join(report.peer_sources)})")
    if not report.peers:
        lines.append(
            "    no peers listed yet: the first volunteer starts the swarm ('volunteer host' runs a stable one)"
        )
    lines.extend(f"note: {note}" for note in report.notes)
    return lines


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer check",
        description="Validate a project as a volunteer's client would (manifest, code, peers file), import it, and "
        "train it a few steps on this machine with a tiny batch, without hivemind. Reports the parameter count, the "
        "step time and the peak memory. A Hub project's code runs here only with consent: --trust, a consent "
        "remembered from an earlier run, or your answer at the prompt on a terminal.",
    )
    parser.add_argument("project", metavar="DIR|ID", help="a project folder, org/name or org/name@revision")
    parser.add_argument(
        "--steps", default=None, help=f"training steps to run; 0: import only (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--batch-size",
        dest="check_batch_size",
        default=None,
        metavar="N",
        help=f"samples per step (default: the manifest's, at most {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--device", dest="check_device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_run_options(parser, ("data_dir", "endpoint", "trust"))
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    steps = non_negative_int("--steps", args.steps)
    batch_size = positive_int("--batch-size", args.check_batch_size)
    device = checked("--device", parse_device, args.check_device)
    settings = settings_from_namespace(
        argparse.Namespace(data_dir=args.data_dir, endpoint=args.endpoint, trust=args.trust)
    )
    settings = settings.replace(project=args.project)
    data_dir = DataDir.open(settings.data_dir)
    if not args.json:
        print(f"checking {args.project} ...", flush=True)
    ask = ask_on_terminal if sys.stdin.isatty() and not args.json else None
    report = check_project(
        settings,
        data_dir,
        steps=DEFAULT_STEPS if steps is None else steps,
        batch_size=batch_size,
        device=device,
        ask=ask,
    )
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in format_report(report):
            print(line)
        print("the project is ready: publish it with 'volunteer publish DIR --repo org/name'")
    return 0
