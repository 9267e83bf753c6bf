"""Which device to train on, what it is doing (name, memory, utilisation), and the GPUs PyTorch can see.

The GPU probe lives here, so the training process learns why it runs on the CPU without importing
``volunteer doctor`` (which reports the same probe as its ``gpu`` check).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from volunteer.constants import env
from volunteer.errors import ConfigError
from volunteer.stats import DeviceInfo

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
class Gpu:
    """A GPU PyTorch can use."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int | None = None


def running_in_container() -> bool:
    """Whether this process runs inside a Docker (or Podman) container."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists() or env("container") is not None


def gpu_fix(in_container: bool) -> str:
    """How to give PyTorch a GPU, here."""
    return GPU_FIX_DOCKER if in_container else GPU_FIX_HOST


def probe_gpus() -> list[Gpu]:
    """The GPUs PyTorch can use, with their memory (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        free: int | None = None
        with contextlib.suppress(RuntimeError):
            free, _ = torch.cuda.mem_get_info(index)
        gpus.append(Gpu(index, props.name, int(props.total_memory), free))
    return gpus


def no_gpu(in_container: bool) -> tuple[str, str]:
    """Why training will run on the CPU when :func:`probe_gpus` found nothing, and the fix."""
    import torch

    build = "" if torch.version.cuda else f" (PyTorch {torch.__version__} is a CPU-only build)"
    fix = gpu_fix(in_container)
    if in_container and not torch.version.cuda:
        fix = (
            "this image's PyTorch has no CUDA: it was built on a CPU base (the arm64 PyTorch image, or "
            "docker/build-cpu-base.sh); build it on linux/amd64 with the Dockerfile's default BASE_IMAGE"
        )
    return f"no GPU visible: training will run on CPU{build}", fix


def cpu_fallback_warning() -> str | None:
    """The warning a run on ``--device auto`` logs when it falls back to the CPU; None when a GPU is there.

    For the client's start-up, so that ``docker run`` without ``--gpus`` says why it is slow and how to fix it.
    """
    if probe_gpus():
        return None
    detail, fix = no_gpu(running_in_container())
    return f"{detail}. To use a GPU: {fix}"


@dataclass(frozen=True)
class ResolvedDevice:
    accelerator: str
    """Lightning accelerator: "cpu" or "gpu"."""
    index: int | None

    @property
    def torch_device(self) -> str:
        return "cpu" if self.accelerator == "cpu" else f"cuda:{self.index}"


def resolve_device(setting: str) -> ResolvedDevice:
    """``auto`` takes the first GPU when PyTorch sees one, else the CPU (:func:`cpu_fallback_warning` says why)."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if setting == "cpu":
        return ResolvedDevice("cpu", None)
    if setting == "auto":
        if available:
            return ResolvedDevice("gpu", 0)
        return ResolvedDevice("cpu", None)
    index = int(setting.split(":", 1)[1]) if ":" in setting else 0
    if index >= available:
        raise ConfigError(
            f"--device {setting}: PyTorch sees {available} GPU(s)",
            "use --device auto or cpu, or check the GPU with 'volunteer doctor' (in Docker: --gpus all)",
        )
    return ResolvedDevice("gpu", index)


def device_info(device: ResolvedDevice) -> DeviceInfo:
    """A snapshot of the device; memory and utilisation come from PyTorch and NVML when present."""
    if device.accelerator == "cpu":
        import os

        return DeviceInfo(kind="cpu", name=f"CPU ({os.cpu_count()} cores)")
    import torch

    index = device.index or 0
    name = torch.cuda.get_device_name(index)
    free, total = torch.cuda.mem_get_info(index)
    utilization = None
    try:
        utilization = float(torch.cuda.utilization(index))  # needs NVML (nvidia-ml-py)
    except Exception:
        pass
    return DeviceInfo(
        kind="cuda",
        name=name,
        memory_used_mb=(total - free) / 2**20,
        memory_total_mb=total / 2**20,
        utilization=utilization,
    )
