"""A project's requirements are enforced before any training starts (volunteer.project.requirements)."""

import pytest

from volunteer.errors import ConfigError
from volunteer.project.manifest import Requirements
from volunteer.project.requirements import check_device, client_too_old
from volunteer.stats import DeviceInfo

CPU = DeviceInfo(kind="cpu", name="CPU (2 cores)")
SMALL_GPU = DeviceInfo(kind="cuda", name="GeForce GTX 1060", memory_used_mb=100, memory_total_mb=6 * 1024)


def test_gpu_required_refuses_the_cpu():
    with pytest.raises(ConfigError) as info:
        check_device(Requirements(gpu="required"), "cpu", CPU)
    assert "requires a GPU" in info.value.message and "--gpus all" in info.value.hint


def test_minimum_gpu_memory():
    with pytest.raises(ConfigError) as info:
        check_device(Requirements(gpu="required", min_gpu_memory_gb=16), "gpu", SMALL_GPU)
    assert "16 GB" in info.value.message and "6.4 GB" in info.value.message
    check_device(Requirements(gpu="required", min_gpu_memory_gb=6), "gpu", SMALL_GPU)


def test_optional_gpu_runs_anywhere():
    check_device(Requirements(), "cpu", CPU)
    check_device(Requirements(min_gpu_memory_gb=64), "cpu", CPU)


@pytest.mark.parametrize(
    ("wanted", "version", "too_old"),
    [("0.1.0", "0.1.0", False), ("0.2", "0.10.0", False), ("0.10.1", "0.10.0", True), ("1.0", "1.0.0rc1", True)],
)
def test_client_version_compares_by_pep_440(wanted: str, version: str, too_old: bool) -> None:
    assert client_too_old(Requirements(min_client_version=wanted), version) is too_old
