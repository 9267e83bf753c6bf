"""``volunteer doctor``: check this machine before contributing, and name the fix for each problem found.

Each check is a small function that returns a :class:`CheckResult`: ok, warn, fail or skip, one line of detail
and, when something is wrong, the fix. The same checks serve a volunteer's own machine and the Docker image,
whose fixes name Docker's flags. Heavy modules (torch, huggingface_hub, the project loader) are imported inside
the check that needs them, so a broken one is reported instead of stopping the others.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from volunteer import __version__
from volunteer.constants import env
from volunteer.datadir import DataDir
from volunteer.errors import DataDirError, TrustError, VolunteerError
from volunteer.peers import split_addresses
from volunteer.settings import ArgumentParser, Settings, add_run_options, settings_from_namespace

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)

GIB = 1024**3
MIN_FREE_BYTES = 1 * GIB
"""Below this the data directory cannot hold even a small project's checkpoint: fail."""
LOW_FREE_BYTES = 10 * GIB
"""Below this a project with a dataset or large model may run out of room: warn."""
DEFAULT_TIMEOUT = 5.0
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
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

GPU_FIX_DOCKER = (
    "install the NVIDIA driver and the NVIDIA Container Toolkit on the host, then start the container with "
    "--gpus all (one GPU: --gpus '\"device=0\"'); 'docker run --rm --gpus all volunteer doctor' shows the result"
)
GPU_FIX_HOST = (
    "to train on an NVIDIA GPU, run the Docker image with 'docker run --gpus all ...' (needs the NVIDIA driver and "
    "the NVIDIA Container Toolkit), or install the NVIDIA driver and a CUDA build of PyTorch "
    "(https://pytorch.org/get-started/locally/); 'nvidia-smi' must list the GPU"
)


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


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int | None = None


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
    prepared: Any = None
    """The project, once the project check loaded it (consent given)."""


def running_in_container() -> bool:
    """Whether this process runs inside a Docker (or Podman) container."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists() or env("container") is not None


def gpu_fix(ctx: Context) -> str:
    return GPU_FIX_DOCKER if ctx.in_container else GPU_FIX_HOST


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


# --- checks ---------------------------------------------------------------------------------------------------


def check_gpu(ctx: Context) -> CheckResult:
    """A GPU visible to PyTorch, and its memory."""
    try:
        import torch
    except ImportError as e:
        return CheckResult(
            "gpu", FAIL, f"PyTorch cannot be imported: {e}", "reinstall volunteer: pip install volunteer"
        )
    if not torch.cuda.is_available():
        ctx.gpus = []
        build = "" if torch.version.cuda else f" (PyTorch {torch.__version__} is a CPU-only build)"
        fix = gpu_fix(ctx)
        if ctx.in_container and not torch.version.cuda:
            fix = (
                "this image's PyTorch has no CUDA: it was built on a CPU base (the arm64 PyTorch image, or "
                "docker/build-cpu-base.sh); build it on linux/amd64 with the Dockerfile's default BASE_IMAGE"
            )
        return CheckResult("gpu", WARN, f"no GPU visible: training will run on CPU{build}", fix)
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        free: int | None = None
        with contextlib.suppress(RuntimeError):
            free, _ = torch.cuda.mem_get_info(index)
        gpus.append(Gpu(index, props.name, int(props.total_memory), free))
    ctx.gpus = gpus
    listing = "; ".join(
        f"cuda:{g.index} {g.name}, {_gib(g.total_bytes)}" + (f" ({_gib(g.free_bytes)} free)" if g.free_bytes else "")
        for g in gpus
    )
    device = ctx.settings.device
    if device.startswith("cuda:") and int(device.split(":")[1]) >= len(gpus):
        return CheckResult(
            "gpu",
            FAIL,
            f"--device {device} asked for, but PyTorch sees {len(gpus)} GPU(s): {listing}",
            f"choose one of cuda:0..cuda:{len(gpus) - 1}, or leave --device at auto",
        )
    if device == "cpu":
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


def gpu_warning(settings: Settings) -> str | None:
    """The warning a run should log when it will train on CPU for want of a GPU; None when a GPU is there.

    For the client's start-up, so that ``docker run`` without ``--gpus`` says why it is slow and how to fix it.
    """
    if settings.device == "cpu":
        return None
    result = check_gpu(Context(settings=settings, in_container=running_in_container()))
    if result.status == WARN and result.detail.startswith("no GPU visible"):
        return f"{result.detail}. To use a GPU: {result.fix}"
    return None


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
    """Whether a project id names a Hub repository (org/name[@rev]) rather than the demo or a local folder."""
    if project == "demo" or project.startswith((".", "/", "~")) or Path(project).expanduser().exists():
        return False
    return project.count("/") == 1


def hub_endpoint(settings: Settings) -> str:
    """``--endpoint``, else huggingface_hub's own (``HF_ENDPOINT`` or the public Hub)."""
    if settings.endpoint:
        return settings.endpoint.rstrip("/")
    try:
        from huggingface_hub import constants
    except ImportError:
        return (env("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/")
    return str(constants.ENDPOINT).rstrip("/")


def check_hub(ctx: Context) -> CheckResult:
    """The Hugging Face Hub (or the mirror in ``HF_ENDPOINT``) answers."""
    project = ctx.settings.project
    needed = project_uses_hub(project)
    if (env("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on"):
        return CheckResult("hub", SKIP, "HF_HUB_OFFLINE is set: projects load from the cache only")
    endpoint = hub_endpoint(ctx.settings)
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


def _requirement(requirements: Any, name: str) -> Any:
    if isinstance(requirements, Mapping):
        return requirements.get(name)
    return getattr(requirements, name, None)


def _gpu_policy(value: Any) -> str:
    """A manifest's ``gpu`` requirement as required, optional or none."""
    if value is True:
        return "required"
    if value is False:
        return "none"
    text = str(getattr(value, "value", value) or "optional").strip().lower()
    return text if text in ("required", "optional", "none") else "optional"


def _project_loader() -> Callable[[Context], Any] | None:
    """``prepare_project`` from the project loader, or None in a version that has none yet."""
    try:
        from volunteer.project import prepare_project
    except ModuleNotFoundError as e:
        if e.name == "volunteer.project":
            return None
        raise
    return lambda ctx: prepare_project(ctx.settings, ctx.data_dir)


def check_project(ctx: Context, load: Callable[[Context], Any] | None = None) -> CheckResult:
    """The project's manifest requirements (GPU, GPU memory, client version) are met by this machine.

    Args:
        ctx: the shared context; the gpu and data-dir checks must have run.
        load: returns the prepared project (its ``project.manifest.requirements``); by default the project
            loader's ``prepare_project(settings, data_dir)``.
    """
    project = ctx.settings.project
    if ctx.data_dir is None:
        return CheckResult("project", SKIP, f"project {project!r} not checked: the data directory is unusable")
    load = load or _project_loader()
    if load is None:
        return CheckResult("project", SKIP, "this volunteer version has no project loader to check with")
    try:
        prepared = load(ctx)
    except TrustError as e:
        return CheckResult("project", WARN, f"project {project!r}: {e.message}", e.hint)
    except VolunteerError as e:
        return CheckResult("project", FAIL, f"project {project!r}: {e.message}", e.hint)
    ctx.prepared = prepared
    requirements = getattr(getattr(getattr(prepared, "project", None), "manifest", None), "requirements", None)
    if requirements is None:
        return CheckResult("project", OK, f"project {project!r} loads and declares no requirements")
    return _judge_requirements(ctx, project, requirements)


def _judge_requirements(ctx: Context, project: str, requirements: Any) -> CheckResult:
    from packaging.version import InvalidVersion, Version

    met: list[str] = []
    min_version = _requirement(requirements, "min_client_version")
    if min_version:
        try:
            too_old = Version(__version__) < Version(str(min_version))
        except InvalidVersion:
            too_old = False
        if too_old:
            return CheckResult(
                "project",
                FAIL,
                f"project {project!r} needs volunteer {min_version} or newer; this is {__version__}",
                "update volunteer: rebuild the image from the latest source (git pull && docker build -t volunteer .) "
                "or pip install -U volunteer",
            )
        met.append(f"volunteer >= {min_version}")
    policy = _gpu_policy(_requirement(requirements, "gpu"))
    min_gb = _requirement(requirements, "min_gpu_memory_gb")
    gpus = ctx.gpus or []
    if policy == "required" and not gpus:
        return CheckResult("project", FAIL, f"project {project!r} needs a GPU and none is visible", gpu_fix(ctx))
    if min_gb and gpus and policy != "none":
        best = max(gpus, key=lambda g: g.total_bytes)
        if best.total_bytes < float(min_gb) * 1e9:
            status = FAIL if policy == "required" else WARN
            return CheckResult(
                "project",
                status,
                f"project {project!r} asks for a GPU with {min_gb} GB; the largest here, cuda:{best.index} "
                f"{best.name}, has {best.total_bytes / 1e9:.1f} GB",
                "use a GPU with more memory"
                + ("" if policy == "required" else ", or run with --device cpu (slower)")
                + "; a smaller --batch-size may also fit",
            )
    if policy != "none":
        met.append(f"GPU {policy}" + (f" with {min_gb} GB" if min_gb else ""))
    summary = ", ".join(met) or "no specific needs"
    return CheckResult("project", OK, f"project {project!r}: requirements met ({summary})")


def check_shm(ctx: Context, space: Any = None) -> CheckResult:
    """/dev/shm holds the project's shared tensors (hivemind's averagers keep them there)."""
    from volunteer import shm

    space = space if space is not None else shm.shm_space()
    if space is None:
        return CheckResult("shm", SKIP, f"no {shm.SHM_PATH} on this system")
    room = f"{shm.SHM_PATH}: {space.free / shm.MIB:.0f} MB free of {space.total / shm.MIB:.0f} MB"
    build = getattr(ctx.prepared, "build", None)
    if build is not None:
        parameters, parameter_bytes = shm.count_parameters(build().module)
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
