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

from volunteer.errors import ConfigError

SHM_PATH = "/dev/shm"
MIB = 2**20
BYTES_PER_PARAMETER = 20
"""Shared bytes per fp32 parameter, measured in the image (docs/docker.md): hivemind's gradient averager holds the
accumulated and the averaged gradients, its state averager the averaged parameters and the optimizer's state."""
HEADROOM = 16 * MIB
"""DHT, p2pd and queue buffers besides the tensors."""


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


def shm_needed(parameters: int) -> int:
    """Bytes of shared memory that training a model of ``parameters`` parameters with hivemind takes."""
    return parameters * BYTES_PER_PARAMETER + HEADROOM


def suggested_size(needed: int) -> str:
    """A ``--shm-size`` value with room to spare: twice the need, rounded up to a power of two, at least 256m."""
    mib = max(256, 2 ** math.ceil(math.log2(max(1, 2 * needed / MIB))))
    return f"{mib // 1024}g" if mib >= 1024 else f"{mib}m"


def fix_hint(needed: int) -> str:
    size = suggested_size(needed)
    return (
        f"give the container more shared memory: docker run --shm-size={size} ... (or --ipc=host; in compose, "
        f"shm_size: {size}); outside Docker, make {SHM_PATH} larger (mount -o remount,size={size} {SHM_PATH})"
    )


def check_shm(parameters: int, space: ShmSpace | None = None) -> None:
    """Raise a ConfigError with the fix when ``/dev/shm`` cannot hold a model of ``parameters`` parameters."""
    space = space if space is not None else shm_space()
    if space is None:
        return
    needed = shm_needed(parameters)
    if space.free < needed:
        raise ConfigError(
            f"{space.path} has {space.free / MIB:.0f} MB free of {space.total / MIB:.0f} MB, but training this "
            f"model ({parameters / 1e6:.1f} M parameters) with hivemind needs about {needed / MIB:.0f} MB of it",
            fix_hint(needed),
        )


def count_parameters(module: object) -> int:
    """Parameters of a torch module (each shared tensor once)."""
    seen: set[int] = set()
    total = 0
    for parameter in module.parameters():  # type: ignore[attr-defined]
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total
