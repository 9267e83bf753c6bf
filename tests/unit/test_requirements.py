"""A project's hardware requirements are enforced before any training starts."""

import pytest

from volunteer.errors import ConfigError
from volunteer.project.manifest import Requirements
from volunteer.stats import DeviceInfo
from volunteer.worker import check_requirements

CPU = DeviceInfo(kind="cpu", name="CPU (2 cores)")
SMALL_GPU = DeviceInfo(kind="cuda", name="GeForce GTX 1060", memory_used_mb=100, memory_total_mb=6 * 1024)


def test_gpu_required_refuses_the_cpu():
    with pytest.raises(ConfigError) as info:
        check_requirements(Requirements(gpu="required"), "cpu", CPU)
    assert "requires a GPU" in info.value.message and "--gpus all" in info.value.hint


def test_minimum_gpu_memory():
    with pytest.raises(ConfigError) as info:
        check_requirements(Requirements(gpu="required", min_gpu_memory_gb=16), "gpu", SMALL_GPU)
    assert "16 GB" in info.value.message and "6.4 GB" in info.value.message
    check_requirements(Requirements(gpu="required", min_gpu_memory_gb=6), "gpu", SMALL_GPU)


def test_optional_gpu_runs_anywhere():
    check_requirements(Requirements(), "cpu", CPU)
    check_requirements(Requirements(min_gpu_memory_gb=64), "cpu", CPU)
