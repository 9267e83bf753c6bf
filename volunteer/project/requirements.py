"""A project's ``[requirements]`` judged in one place: the client's version (with ``packaging``) and the GPU.

The session refuses a project it cannot run (:func:`check_client_version` when the project is resolved,
:func:`check_device` in the training process, against the device in use); ``volunteer doctor`` reports the
same judgements against every GPU it sees.
"""

from __future__ import annotations

from packaging.version import Version

import volunteer
from volunteer.errors import ConfigError, ProjectError
from volunteer.project.manifest import Requirements
from volunteer.stats import DeviceInfo

UPGRADE_HINT = (
    "upgrade volunteer (pip install --upgrade volunteer, or rebuild or pull the latest Docker image), then start again"
)


def client_too_old(requirements: Requirements, version: str = volunteer.__version__) -> bool:
    """Whether the project asks for a newer volunteer than ``version`` (the manifest checked the number's form)."""
    wanted = requirements.min_client_version
    return wanted is not None and Version(version) < Version(wanted)


def gpu_missing(requirements: Requirements, has_gpu: bool) -> bool:
    return requirements.gpu == "required" and not has_gpu


def gpu_too_small(requirements: Requirements, memory_bytes: float) -> bool:
    """Whether a GPU with ``memory_bytes`` has less than the project asks for (GB are 10^9 bytes)."""
    return bool(requirements.min_gpu_memory_gb) and memory_bytes < requirements.min_gpu_memory_gb * 1e9


def check_client_version(requirements: Requirements, where: str) -> None:
    """Refuse a project that needs a newer volunteer than this one.

    Raises:
        ProjectError: naming both versions and how to upgrade.
    """
    if client_too_old(requirements):
        raise ProjectError(
            f"{where}: the project needs volunteer {requirements.min_client_version} or newer (key "
            f"'requirements.min_client_version'); this is volunteer {volunteer.__version__}",
            UPGRADE_HINT,
        )


def check_device(requirements: Requirements, accelerator: str, info: DeviceInfo) -> None:
    """Refuse to start where the project's manifest says it cannot train.

    Raises:
        ConfigError: no GPU for a project that requires one, or one with too little memory.
    """
    if gpu_missing(requirements, accelerator == "gpu"):
        raise ConfigError(
            "this project requires a GPU and none is in use",
            "run on a machine with an NVIDIA GPU (in Docker: --gpus all; check with 'volunteer doctor'), and do "
            "not pass --device cpu",
        )
    if accelerator == "gpu" and info.memory_total_mb is not None:
        memory = info.memory_total_mb * 2**20
        if gpu_too_small(requirements, memory):
            raise ConfigError(
                f"this project needs a GPU with {requirements.min_gpu_memory_gb:g} GB of memory; "
                f"{info.name} has {memory / 1e9:.1f} GB",
                "pick a larger GPU with --device cuda:N, or contribute to a project with smaller requirements",
            )
