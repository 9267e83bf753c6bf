"""Shared memory (``/dev/shm``): hivemind's averagers keep the parameters, gradients and optimizer state there.

Docker gives a container 64 MB of ``/dev/shm`` unless told otherwise (``--shm-size``, ``--ipc=host``, compose's
``shm_size``). A model whose tensors do not fit crashed the training process with ``unable to write to file
</torch_...>: No space left on device`` and restarted it until the session gave up; the client now checks
before joining the swarm and stops with the fix (docs/docker.md has the measurements).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from volunteer.errors import ConfigError

if TYPE_CHECKING:
    import torch

SHM_PATH = "/dev/shm"
MIB = 2**20
SHARED_COPIES = 2
"""Copies of the parameters hivemind keeps in shared memory, measured in the image (docs/docker.md): the gradient
averager's averaged gradients and the state averager's averaged parameters (8 bytes per fp32 parameter)."""
HEADROOM = 4 * MIB
"""Everything else in /dev/shm (under 1 MB for the demo, measured in the image)."""


@dataclass(frozen=True)
class ShmSpace:
    path: str
    total: int
    free: int


def shm_space(path: str = SHM_PATH) -> ShmSpace | None:
    """Size and free space of the shared-memory file system, or None where there is none."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return ShmSpace(path, stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize)


def shm_needed(parameter_bytes: int) -> int:
    """Bytes of shared memory that training a model whose parameters take ``parameter_bytes`` takes."""
    return parameter_bytes * SHARED_COPIES + HEADROOM


def suggested_size(needed: int) -> str:
    """A ``--shm-size`` value with room to spare: twice the need, rounded up to a power of two, at least 256m."""
    mib = max(256, 2 ** math.ceil(math.log2(max(1, 2 * needed / MIB))))
    return f"{mib // 1024}g" if mib >= 1024 else f"{mib}m"


def parameters_text(parameters: int) -> str:
    return f"{parameters / 1e6:.1f} M parameters" if parameters >= 100_000 else f"{parameters:,} parameters"


def fix_hint(needed: int) -> str:
    size = suggested_size(needed)
    return (
        f"give the container more shared memory: docker run --shm-size={size} ... (or --ipc=host; in compose, "
        f"shm_size: {size}); outside Docker, make {SHM_PATH} larger (mount -o remount,size={size} {SHM_PATH})"
    )


def shortage(parameters: int, parameter_bytes: int, space: ShmSpace | None) -> tuple[str, str] | None:
    """(problem, fix) when ``space`` cannot hold a model's shared tensors, else None."""
    if space is None:
        return None
    needed = shm_needed(parameter_bytes)
    if space.free >= needed:
        return None
    return (
        f"{space.path} has {space.free / MIB:.0f} MB free of {space.total / MIB:.0f} MB, but training this model "
        f"({parameters_text(parameters)}) with hivemind needs about {needed / MIB:.0f} MB of it",
        fix_hint(needed),
    )


DOCKER_DEFAULT = 64 * MIB
"""Docker's /dev/shm for a container without --shm-size or --ipc=host."""


def largest_model(space: ShmSpace) -> int:
    """The most fp32 parameters whose shared tensors fit in the free space."""
    return max(0, (space.free - HEADROOM) // (4 * SHARED_COPIES))


def check_shm(module: torch.nn.Module, space: ShmSpace | None = None) -> None:
    """Raise a ConfigError with the fix when ``/dev/shm`` cannot hold the shared tensors of a torch module."""
    parameters, parameter_bytes = count_parameters(module)
    found = shortage(parameters, parameter_bytes, space if space is not None else shm_space())
    if found is not None:
        raise ConfigError(*found)


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """Parameters of a torch module (each shared tensor once) and the bytes they take."""
    seen: set[int] = set()
    count = size = 0
    for parameter in module.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            count += parameter.numel()
            size += parameter.numel() * parameter.element_size()
    return count, size
