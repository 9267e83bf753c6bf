"""Which device to train on, and what it is doing (name, memory, utilisation)."""

from __future__ import annotations

from dataclasses import dataclass

from volunteer.errors import ConfigError
from volunteer.stats import DeviceInfo


@dataclass(frozen=True)
class ResolvedDevice:
    accelerator: str
    """Lightning accelerator: "cpu" or "gpu"."""
    index: int | None

    @property
    def torch_device(self) -> str:
        return "cpu" if self.accelerator == "cpu" else f"cuda:{self.index}"


def resolve_device(setting: str) -> ResolvedDevice:
    """``auto`` takes the first GPU when PyTorch sees one, else the CPU (``doctor.gpu_warning`` says why)."""
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
