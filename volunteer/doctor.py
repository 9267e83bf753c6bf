"""``volunteer doctor``: check this machine before contributing, and name the fix for each problem found.

Each check is a small function that returns a :class:`CheckResult`: ok, warn, fail or skip, one line of detail
and, when something is wrong, the fix. The same checks serve a volunteer's own machine and the Docker image,
whose fixes name Docker's flags. Heavy modules (torch, huggingface_hub, the project loader) are imported inside
the check that needs them, so a broken one is reported instead of stopping the others.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import platform
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from volunteer import __version__, device
from volunteer.constants import env
from volunteer.datadir import DataDir
from volunteer.device import Gpu, running_in_container
from volunteer.errors import DataDirError, TrustError, VolunteerError
from volunteer.project.hub import hub_url
from volunteer.project.requirements import UPGRADE_HINT, client_too_old, gpu_missing, gpu_too_small
from volunteer.settings import ArgumentParser, Settings, add_run_options, settings_from_namespace
from volunteer.swarm.multiaddrs import split_addresses

if TYPE_CHECKING:
    from volunteer.project import PreparedProject
    from volunteer.project.manifest import Requirements

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)

GIB = 1024**3
MIN_FREE_BYTES = 1 * GIB
"""Below this the data directory cannot hold even a small project's checkpoint: fail."""
LOW_FREE_BYTES = 10 * GIB
"""Below this a project with a dataset or large model may run out of room: warn."""
DEFAULT_TIMEOUT = 5.0
DOCTOR_OPTIONS = (
    "project",
    "data_dir",
    "endpoint",
    "device",
    "host_maddrs",
    "client_mode",
    "status_port",
    "max_upload",
    "monthly_data",
)
"""The run flags whose values doctor checks; they read the same ``VOLUNTEER_*`` variables as a run."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str
    """One of ok, warn, fail, skip."""
    detail: str
    fix: str | None = None
    """What to do about a warn or fail; None when there is nothing to do."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")


@dataclass
class Context:
    """What the checks share: the settings being checked and facts found by earlier checks."""

    settings: Settings
    timeout: float = DEFAULT_TIMEOUT
    in_container: bool = False
    gpus: list[Gpu] | None = None
    """GPUs PyTorch can use, filled in by the gpu check (None: not known)."""
    data_dir: DataDir | None = None
    """The data directory once the data-dir check found it usable."""
    prepared: PreparedProject | None = None
    """The project, once the project check loaded it (consent given)."""


def gpu_fix(ctx: Context) -> str:
    return device.gpu_fix(ctx.in_container)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


# --- checks ---------------------------------------------------------------------------------------------------


def check_gpu(ctx: Context) -> CheckResult:
    """A GPU visible to PyTorch, and its memory."""
    try:
        import torch  # noqa: F401 - whether PyTorch imports at all
    except ImportError as e:
        return CheckResult(
            "gpu", FAIL, f"PyTorch cannot be imported: {e}", "reinstall volunteer: pip install volunteer"
        )
    gpus = device.probe_gpus()
    if not gpus:
        ctx.gpus = []
        detail, fix = device.no_gpu(ctx.in_container)
        return CheckResult("gpu", WARN, detail, fix)
    ctx.gpus = gpus
    listing = "; ".join(
        f"cuda:{g.index} {g.name}, {_gib(g.total_bytes)}" + (f" ({_gib(g.free_bytes)} free)" if g.free_bytes else "")
        for g in gpus
    )
    setting = ctx.settings.device
    if setting.startswith("cuda:") and int(setting.split(":")[1]) >= len(gpus):
        return CheckResult(
            "gpu",
            FAIL,
            f"--device {setting} asked for, but PyTorch sees {len(gpus)} GPU(s): {listing}",
            f"choose one of cuda:0..cuda:{len(gpus) - 1}, or leave --device at auto",
        )
    if setting == "cpu":
        return CheckResult("gpu", WARN, f"--device cpu: training will not use the GPU(s) found: {listing}", None)
    busy = [g for g in gpus if g.free_bytes is not None and g.free_bytes < 0.5 * g.total_bytes]
    if busy:
        return CheckResult(
            "gpu",
            WARN,
            f"{listing}; less than half the memory of {', '.join(f'cuda:{g.index}' for g in busy)} is free",
            "another program is using the GPU (see nvidia-smi); stop it, or pick another GPU with --device cuda:N "
            "(in Docker: --gpus '\"device=N\"')",
        )
    return CheckResult("gpu", OK, listing)


def _driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the installed NVIDIA driver supports, from libcuda; None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return version.value // 1000, (version.value % 1000) // 10


def _driver_release() -> str | None:
    """The driver's own version (e.g. 560.35.03) from nvidia-smi, when it is on PATH."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.strip().splitlines()
    return lines[0].strip() if lines else None


def check_cuda(ctx: Context) -> CheckResult:
    """The CUDA version PyTorch was built for against the one the NVIDIA driver supports."""
    try:
        import torch
    except ImportError:
        return CheckResult("cuda", SKIP, "PyTorch cannot be imported (see gpu)")
    built = torch.version.cuda
    if not built:
        return CheckResult("cuda", SKIP, f"PyTorch {torch.__version__} is a CPU-only build: no CUDA to check")
    driver = _driver_cuda_version()
    release = _driver_release()
    driver_text = f"driver {release}" if release else "driver"
    if driver is None:
        return CheckResult(
            "cuda", SKIP, f"PyTorch {torch.__version__} is built for CUDA {built}; no NVIDIA driver found (see gpu)"
        )
    built_version = tuple(int(part) for part in built.split(".")[:2])
    supported = f"{driver[0]}.{driver[1]}"
    detail = f"PyTorch {torch.__version__} built for CUDA {built}; {driver_text} supports CUDA up to {supported}"
    if driver[0] < built_version[0]:
        return CheckResult(
            "cuda",
            FAIL,
            detail,
            f"update the NVIDIA driver to one that supports CUDA {built}, or use a PyTorch build (or an image "
            "built with --build-arg BASE_IMAGE=...) for the CUDA version your driver has",
        )
    if driver < built_version:
        return CheckResult(
            "cuda",
            WARN,
            detail + " (works through CUDA minor-version compatibility, without PTX just-in-time compilation)",
            f"update the NVIDIA driver to one that supports CUDA {built} to be safe",
        )
    return CheckResult("cuda", OK, detail)


def check_data_dir(ctx: Context) -> CheckResult:
    """The data directory is writable, its identity file usable, and its disk has room."""
    try:
        data_dir = DataDir.open(ctx.settings.data_dir)
        data_dir.check_identity()
    except DataDirError as e:
        return CheckResult("data-dir", FAIL, e.message, e.hint)
    usage = shutil.disk_usage(data_dir.root)
    detail = f"{data_dir.root}: writable, {_gib(usage.free)} free"
    room_fix = "free some space, or put the data directory on a bigger disk: " + (
        "mount a bigger disk at /data (-v /big/disk:/data)" if ctx.in_container else "--data-dir /big/disk/vol"
    )
    ctx.data_dir = data_dir
    if usage.free < MIN_FREE_BYTES:
        return CheckResult("data-dir", FAIL, detail, room_fix)
    if usage.free < LOW_FREE_BYTES:
        return CheckResult("data-dir", WARN, f"{detail}; projects may need more than {_gib(LOW_FREE_BYTES)}", room_fix)
    return CheckResult("data-dir", OK, detail)


def project_uses_hub(project: str) -> bool:
    """Whether a project id names a Hub repository (org/name[@rev]), as the project loader reads it."""
    from volunteer.project.ids import parse_project_id

    try:
        return parse_project_id(project).kind == "hub"
    except VolunteerError:
        return False  # the project check says what is wrong with it


def check_hub(ctx: Context) -> CheckResult:
    """The Hugging Face Hub (or the mirror in ``HF_ENDPOINT``) answers."""
    project = ctx.settings.project
    needed = project_uses_hub(project)
    if (env("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on"):
        return CheckResult("hub", SKIP, "HF_HUB_OFFLINE is set: projects load from the cache only")
    endpoint = hub_url(ctx.settings.endpoint)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint + "/", method="HEAD"), timeout=ctx.timeout):
            pass
    except urllib.error.HTTPError as e:
        # any HTTP answer, even an error page, proves the endpoint is reachable
        code = f", HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        why = "timed out" if isinstance(reason, TimeoutError) else str(reason)
        status = FAIL if needed else WARN
        use = f"project {project!r} is downloaded from it" if needed else f"project {project!r} does not need it"
        return CheckResult(
            "hub",
            status,
            f"cannot reach {endpoint} ({why}); {use}",
            "check the network, firewall and proxy (HTTPS_PROXY); or point HF_ENDPOINT (--endpoint) at a reachable "
            "mirror; a project already in the cache also loads offline with HF_HUB_OFFLINE=1",
        )
    else:
        code = ""
    elapsed = (time.monotonic() - start) * 1000
    return CheckResult("hub", OK, f"{endpoint} answered in {elapsed:.0f} ms{code}")


def check_project(ctx: Context, load: Callable[[Context], PreparedProject] | None = None) -> CheckResult:
    """The project's manifest requirements (GPU, GPU memory, client version) are met by this machine.

    Args:
        ctx: the shared context; the gpu and data-dir checks must have run.
        load: returns the prepared project; by default ``prepare_project(settings, data_dir)``.
    """
    project = ctx.settings.project
    if ctx.data_dir is None:
        return CheckResult("project", SKIP, f"project {project!r} not checked: the data directory is unusable")
    if load is None:
        from volunteer.project import prepare_project

        data_dir = ctx.data_dir
        load = lambda ctx: prepare_project(ctx.settings, data_dir)  # noqa: E731
    try:
        prepared = load(ctx)
    except TrustError as e:
        return CheckResult("project", WARN, f"project {project!r}: {e.message}", e.hint)
    except VolunteerError as e:
        return CheckResult("project", FAIL, f"project {project!r}: {e.message}", e.hint)
    ctx.prepared = prepared
    return _judge_requirements(ctx, project, prepared.project.manifest.requirements)


def _judge_requirements(ctx: Context, project: str, requirements: Requirements) -> CheckResult:
    met: list[str] = []
    min_version = requirements.min_client_version
    if client_too_old(requirements):
        return CheckResult(
            "project",
            FAIL,
            f"project {project!r} needs volunteer {min_version} or newer; this is {__version__}",
            UPGRADE_HINT,
        )
    if min_version:
        met.append(f"volunteer >= {min_version}")
    policy, min_gb = requirements.gpu, requirements.min_gpu_memory_gb
    gpus = ctx.gpus or []
    if gpu_missing(requirements, bool(gpus)):
        return CheckResult("project", FAIL, f"project {project!r} needs a GPU and none is visible", gpu_fix(ctx))
    best = max(gpus, key=lambda g: g.total_bytes) if gpus else None
    if best is not None and gpu_too_small(requirements, best.total_bytes):
        status = FAIL if policy == "required" else WARN
        return CheckResult(
            "project",
            status,
            f"project {project!r} asks for a GPU with {min_gb:g} GB; the largest here, cuda:{best.index} "
            f"{best.name}, has {best.total_bytes / 1e9:.1f} GB",
            "use a GPU with more memory"
            + ("" if policy == "required" else ", or run with --device cpu (slower)")
            + "; a smaller --batch-size may also fit",
        )
    met.append(f"GPU {policy}" + (f" with {min_gb:g} GB" if min_gb else ""))
    return CheckResult("project", OK, f"project {project!r}: requirements met ({', '.join(met)})")


def check_shm(ctx: Context, space: Any = None) -> CheckResult:
    """/dev/shm holds the project's shared tensors (hivemind's averagers keep them there)."""
    from volunteer import shm

    space = space if space is not None else shm.shm_space()
    if space is None:
        return CheckResult("shm", SKIP, f"no {shm.SHM_PATH} on this system")
    room = f"{shm.SHM_PATH}: {space.free / shm.MIB:.0f} MB free of {space.total / shm.MIB:.0f} MB"
    if ctx.prepared is not None:
        from volunteer.project.loader import build_project

        parameters, parameter_bytes = shm.count_parameters(build_project(ctx.prepared.project).module)
        found = shm.shortage(parameters, parameter_bytes, space)
        if found is not None:
            return CheckResult("shm", FAIL, found[0], found[1])
        needed = shm.shm_needed(parameter_bytes)
        return CheckResult(
            "shm",
            OK,
            f"{room}; the project's model ({shm.parameters_text(parameters)}) needs about {needed / shm.MIB:.0f} MB",
        )
    limit = f"enough for models up to about {shm.parameters_text(shm.largest_model(space))}"
    if space.total <= shm.DOCKER_DEFAULT:
        return CheckResult("shm", WARN, f"{room}: {limit}", shm.fix_hint(2 * shm.DOCKER_DEFAULT))
    return CheckResult("shm", OK, f"{room}: {limit}")


def _maddr_sockets(address: str) -> list[tuple[int, str, int, int]]:
    """(family, host, port, socket type) for each TCP or UDP listener a multiaddress asks for."""
    parts = address.strip("/").split("/")
    family = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}.get(parts[0]) if parts else None
    if family is None or len(parts) < 4 or parts[2] not in ("tcp", "udp") or not parts[3].isdigit():
        return []
    kind = socket.SOCK_STREAM if parts[2] == "tcp" else socket.SOCK_DGRAM
    return [(family, parts[1], int(parts[3]), kind)]


def _try_listen(family: int, host: str, port: int, kind: int) -> tuple[int, str | None]:
    """Bind (and for TCP, listen and connect back over this host's loopback); the port bound and any error."""
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound = sock.getsockname()[1]
        if kind != socket.SOCK_STREAM:
            return bound, None
        sock.listen(1)
        target = host
        if host in ("0.0.0.0", "::"):
            target = "127.0.0.1" if family == socket.AF_INET else "::1"
        try:
            with socket.create_connection((target, bound), timeout=2):
                pass
        except OSError as e:
            return bound, f"bound, but a connection from this host to {target}:{bound} failed: {e.strerror or e}"
    return bound, None


def _running_client_state(ctx: Context) -> str | None:
    """The state of a volunteer already running here (its status endpoint), or None."""
    from volunteer.healthcheck import StatusUnavailable, fetch_status

    port = ctx.settings.status_port
    if not port:
        return None
    try:
        state = fetch_status(port, timeout=min(ctx.timeout, 2.0)).get("state")
    except StatusUnavailable:
        return None
    return str(state) if state else "running"


def check_listen(ctx: Context) -> CheckResult:
    """The addresses hivemind will listen on can be bound, and reached from this host."""
    settings = ctx.settings
    if settings.client_mode:
        return CheckResult("listen", SKIP, "client mode: this peer only dials out and listens on no port")
    addresses = split_addresses(settings.host_maddrs) or ["/ip4/0.0.0.0/tcp/0"]
    listeners = [s for a in addresses for s in _maddr_sockets(a)]
    if not listeners:
        return CheckResult("listen", SKIP, f"no TCP or UDP address to test in {' '.join(addresses)}")
    done: list[str] = []
    for family, host, port, kind in listeners:
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        where = f"{proto} {host}:{port}" if port else f"{proto} {host} (a free port)"
        try:
            bound, problem = _try_listen(family, host, port, kind)
        except OSError as e:
            return _listen_failure(ctx, where, proto, port, e)
        if problem:
            return CheckResult(
                "listen",
                WARN,
                f"{where}: {problem}",
                "a firewall on this host blocks the port; allow it (e.g. ufw allow " + f"{port}/{proto})",
            )
        done.append(where if port else f"{proto} {host}:{bound} (a free port)")
    detail = "can listen on " + ", ".join(done)
    if ctx.in_container and not settings.announce_maddrs:
        detail += (
            "; peers on other machines reach this container only if the port is published (-p) and "
            "--announce-maddrs names your public address (else they connect through relays)"
        )
    return CheckResult("listen", OK, detail)


def _listen_failure(ctx: Context, where: str, proto: str, port: int, error: OSError) -> CheckResult:
    if error.errno == errno.EADDRINUSE:
        state = _running_client_state(ctx)
        if state is not None:
            return CheckResult("listen", OK, f"{where} is in use by the volunteer already running here ({state})")
        return CheckResult(
            "listen",
            FAIL,
            f"{where} is already in use by another program",
            f"stop it (find it with: ss -lnp | grep :{port}), or listen on another port: "
            f"--host-maddrs /ip4/0.0.0.0/{proto}/{port + 1}" + (" (and publish that port)" if ctx.in_container else ""),
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return CheckResult(
            "listen",
            FAIL,
            f"{where}: that address does not belong to this host",
            "listen on 0.0.0.0 (all addresses) or on one that 'ip addr' lists; to be reached at a public address, "
            "announce it with --announce-maddrs instead",
        )
    if error.errno == errno.EACCES:
        return CheckResult("listen", FAIL, f"{where}: permission denied", "choose a port from 1024 up in --host-maddrs")
    return CheckResult("listen", FAIL, f"{where}: {error.strerror or error}", "check --host-maddrs")


LOW_AVERAGE_RATE = 125_000.0
"""Bytes per second (1 Mbit/s): a cap below this holds training back most of the time on a model of any size."""


def check_bandwidth(ctx: Context) -> CheckResult:
    """What ``--max-upload`` and ``--monthly-data`` allow, on average (docs/bandwidth.md)."""
    from volunteer.wire import MONTH_SECONDS, format_rate

    upload, monthly = ctx.settings.max_upload, ctx.settings.monthly_data
    if upload is None and monthly is None:
        return CheckResult("bandwidth", OK, "no upload cap (--max-upload) and no monthly data budget (--monthly-data)")
    parts, rates = [], []
    if upload is not None:
        parts.append(f"upload cap {format_rate(upload)}")
        rates.append(upload)
    if monthly is not None:
        average = monthly / MONTH_SECONDS
        parts.append(f"{monthly / 1e9:g} GB a month, {format_rate(average)} on average both ways")
        rates.append(average)
    detail = "; ".join(parts)
    if ctx.settings.client_mode is False:
        detail += "; a full peer (--no-client-mode) also answers the swarm's lookups on this budget"
    else:
        detail += "; joins as a client peer where a full peer trains, so as to answer no other peer's lookups"
    if min(rates) < LOW_AVERAGE_RATE:
        return CheckResult(
            "bandwidth",
            WARN,
            f"{detail}: below 1 Mbit/s the client holds training back between global steps most of the time",
            "raise --max-upload or --monthly-data if your link allows; the dashboard shows what the cap is doing",
        )
    return CheckResult("bandwidth", OK, detail)


CHECKS: tuple[Callable[[Context], CheckResult], ...] = (
    check_gpu,
    check_cuda,
    check_data_dir,
    check_hub,
    check_project,
    check_shm,
    check_listen,
    check_bandwidth,
)


def run_checks(ctx: Context, checks: Sequence[Callable[[Context], CheckResult]] = CHECKS) -> list[CheckResult]:
    """Run every check in order; a check that crashes is reported as failed and the others still run."""
    results = []
    for check in checks:
        try:
            results.append(check(ctx))
        except Exception as e:
            name = check.__name__.removeprefix("check_").replace("_", "-")
            results.append(
                CheckResult(name, FAIL, f"the check itself crashed: {type(e).__name__}: {e}", "please report this bug")
            )
    return results


# --- output ---------------------------------------------------------------------------------------------------

_LABELS = {OK: "ok", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


def format_table(results: Sequence[CheckResult], width: int = 100) -> str:
    name_width = max((len(r.name) for r in results), default=0)
    indent = " " * (2 + 4 + 2 + name_width + 2)
    lines = []
    for r in results:
        head = f"  {_LABELS[r.status]:<4}  {r.name:<{name_width}}  "
        lines.append(textwrap.fill(r.detail, width, initial_indent=head, subsequent_indent=indent))
        if r.fix:
            fix_indent = indent + "     "
            lines.append(textwrap.fill(r.fix, width, initial_indent=indent + "fix: ", subsequent_indent=fix_indent))
    return "\n".join(lines)


def summary(results: Sequence[CheckResult]) -> str:
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    if counts[FAIL]:
        verdict = "fix the failures above before contributing"
    elif counts[WARN]:
        verdict = "ready to contribute (see the warnings)"
    else:
        verdict = "ready to contribute"
    return f"{counts[FAIL]} failed, {counts[WARN]} warnings, {counts[OK]} ok, {counts[SKIP]} skipped: {verdict}"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer doctor",
        description="Check this machine (or container) for contributing: GPU, CUDA, data directory, Hub, "
        "project requirements and the listening port. Exit status 0 when nothing failed, 1 otherwise.",
    )
    add_run_options(parser, DOCTOR_OPTIONS)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long network checks wait (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``volunteer doctor``: 0 when no check failed, 1 when one did (2, from the CLI, for bad flags)."""
    args = build_parser().parse_args(list(argv))
    settings = settings_from_namespace(args)
    ctx = Context(settings=settings, timeout=args.timeout, in_container=running_in_container())
    if not args.json:
        where = "this container" if ctx.in_container else "this machine"
        print(
            f"volunteer {__version__} doctor: checking {where} for project {settings.project!r} "
            f"(Python {platform.python_version()})",
            flush=True,
        )
    results = run_checks(ctx)
    failed = any(r.status == FAIL for r in results)
    if args.json:
        report = {
            "version": __version__,
            "project": settings.project,
            "in_container": ctx.in_container,
            "ok": not failed,
            "checks": [asdict(r) for r in results],
        }
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
        print(format_table(results, width))
        print(summary(results))
    return 1 if failed else 0
