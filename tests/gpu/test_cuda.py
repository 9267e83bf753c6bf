"""On a real NVIDIA GPU: what a CPU machine cannot check. Skipped where PyTorch sees no CUDA device.

The strategy in each precision (fp16 through hivemind's GradScaler, bf16, fp32) and with its GPU-relevant
options, two volunteers training together in fp16 through the whole client, the dashboard's device figures
from NVML, ``volunteer doctor``, and a real CUDA out-of-memory error answered by halving the batch.

    python -m pytest tests/gpu -v -rA

A test that hangs is stopped by a watchdog thread that prints every thread's stack and ends the run
(``method="thread"``): a hang inside hivemind or CUDA never returns to Python, where a signal could stop it.
docs/gpu.md records what these tests found on real GPUs.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys

import hivemind
import pytest
import torch

from tests.integration.procs import wait_for
from tests.integration.volunteers import FIXTURES, TINY_PROJECT, Volunteer
from tests.models import update_per_global_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.timeout(180, method="thread"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU that PyTorch can use"),
]

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def test_doctor_sees_the_gpu_and_runs_cuda(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "VOLUNTEER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "volunteer", "doctor"], capture_output=True, text=True, timeout=120, env=env
    )
    assert re.search(r"^\s*ok\s+gpu\s.*" + re.escape(torch.cuda.get_device_name(0)), done.stdout, re.MULTILINE), (
        done.stdout + done.stderr
    )
    assert re.search(r"^\s*ok\s+cuda\s", done.stdout, re.MULTILINE), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("precision", "options"),
    [
        # plain first: a hang ends the run (see above); on an H200 the fp16 cases failed and hung before
        # fp16 without reuse_grad_buffers stopped applying loss-scaled gradients
        ("32-true", {}),
        ("bf16-mixed", {}),
        ("16-mixed", {}),
        ("16-mixed", {"reuse_grad_buffers": True}),
        ("16-mixed", {"offload_optimizer": True}),
    ],
)
def test_strategy_trains_on_the_gpu(precision, options):
    gpu = dict(accelerator="gpu", devices=1)
    reference, _, _ = update_per_global_step(strategy_options=options, **gpu)
    step, epochs, plugin = update_per_global_step(strategy_options=options, precision=precision, **gpu)
    # fp16 skips the first batches while the scaler finds its scale (an overflow drops the batch)
    assert epochs >= 2, "global steps were taken"
    assert 0.5 < step / reference < 2, f"a global step moved the weights {step / reference:.3g}x as far as fp32"
    if precision == "16-mixed":
        assert isinstance(plugin.scaler, hivemind.GradScaler) == bool(options.get("reuse_grad_buffers"))


def _project_in(tmp_path, precision: str) -> str:
    """The tiny test project, copied, in another precision."""
    project = tmp_path / f"tiny-{precision}"
    shutil.copytree(TINY_PROJECT, project)
    manifest = project / "volunteer.toml"
    text = manifest.read_text()
    assert 'precision = "32-true"' in text
    manifest.write_text(text.replace('precision = "32-true"', f'precision = "{precision}"'))
    return str(project)


@pytest.mark.timeout(300, method="thread")
def test_real_out_of_memory_halves_the_batch_until_it_fits(tmp_path):
    a = Volunteer(tmp_path, "a", project=str(FIXTURES / "gpu_oom_project"), extra=("--max-steps", "12"))
    try:
        wait_for(lambda: a.proc.popen.poll() is not None, 240, "the bounded contribution to end", [])
        output = a.proc.output()
        assert a.proc.popen.returncode == 0, output[-3000:]
        assert "out of GPU memory: restarting with batch size 8" in output
        assert "batch size 4" not in output, "8 samples fit: no second halving"
        # the allocator's own error, not a simulated one, reached the training log
        assert "CUDA out of memory" in (a.data_dir / "logs" / "training.log").read_text(errors="replace")
        ledger = a.ledger("volunteer-tests-gpu-oom")
        assert ledger["steps"] == 12 and ledger["samples"] == 12 * 8
    finally:
        a.stop()


@pytest.mark.timeout(420, method="thread")
def test_two_volunteers_train_together_in_fp16_and_show_the_gpu(tmp_path):
    project = _project_in(tmp_path, "16-mixed")
    volunteers: list[Volunteer] = []
    try:
        a = Volunteer(tmp_path, "a", project=project)
        volunteers.append(a)
        a.wait_training(timeout=180)
        b = Volunteer(tmp_path, "b", project=project, peers=a.address())
        volunteers.append(b)
        b.wait_training(timeout=180)
        for v in volunteers:
            v.wait_status(
                lambda s: {e["nickname"] for e in s["leaderboard"]} >= {"a", "b"}, 90, "both on the board", volunteers
            )
        epoch = max(v.status()["global_epoch"] for v in volunteers)
        for v in volunteers:
            v.wait_status(lambda s, e=epoch: s["global_epoch"] >= e + 2, 120, "two more global steps", volunteers)
        name = torch.cuda.get_device_name(0)
        for v in volunteers:
            status = v.status()
            device = status["device"]
            assert device["kind"] == "cuda" and device["name"] == name
            assert 0 < device["memory_used_mb"] < device["memory_total_mb"]
            if _has_nvml():
                assert device["utilization"] is not None and 0 <= device["utilization"] <= 100
            assert status["swarm_samples"] > 0 and status["num_peers"] >= 2
            assert status["loss"] is not None and math.isfinite(status["loss"])
        for v in volunteers:
            v.proc.stop()
            ledger = v.ledger()
            assert ledger["swarm_samples"] > 0
            assert ledger["samples"] == ledger["swarm_samples"] + ledger["local_only_samples"]
    finally:
        for v in volunteers:
            v.stop()


def _has_nvml() -> bool:
    try:
        import pynvml  # noqa: F401  (nvidia-ml-py)
    except ImportError:
        return False
    return True
