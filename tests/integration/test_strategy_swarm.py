"""Three real peers, each its own process on 127.0.0.1, train one model together through HivemindStrategy."""

from __future__ import annotations

import json

import pytest
import torch

from tests.integration.procs import Proc, wait_for

pytestmark = pytest.mark.integration

EPOCHS = 3
TARGET = 768


def test_three_peers_step_together_and_end_identical(tmp_path):
    procs: list[Proc] = []
    try:
        first = Proc.python(
            "tests.integration.strategy_peer",
            "--name",
            "a",
            "--out",
            str(tmp_path),
            "--seed",
            "1",
            log=tmp_path / "a.log",
        )
        procs.append(first)
        bootstrap = wait_for(lambda: _read(tmp_path / "a.addr"), 60, "the first peer's address", procs)
        # one joiner gets the address as an argument, the other through the INITIAL_PEERS variable
        procs.append(
            Proc.python(
                "tests.integration.strategy_peer",
                "--name",
                "b",
                "--out",
                str(tmp_path),
                "--seed",
                "2",
                "--initial-peers",
                bootstrap,
                log=tmp_path / "b.log",
            )
        )
        procs.append(
            Proc.python(
                "tests.integration.strategy_peer",
                "--name",
                "c",
                "--out",
                str(tmp_path),
                "--seed",
                "3",
                log=tmp_path / "c.log",
                env={"INITIAL_PEERS": bootstrap},
            )
        )
        wait_for(lambda: all((tmp_path / f"{n}.addr").exists() for n in "bc"), 60, "the joiners", procs)
        (tmp_path / "go").touch()
        for proc in procs:
            wait_for(lambda p=proc: p.popen.poll() is not None, 90, f"{proc.log_path.name} to finish", [])
            assert proc.popen.returncode == 0, proc.output()[-4000:]
    finally:
        for proc in procs:
            proc.stop()

    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in "abc"}
    per_step = _samples_per_global_step(results)
    total = sum(r["contributed"] for r in results.values())
    for name, result in results.items():
        epochs = [t["epoch"] for t in result["transitions"]]
        assert epochs and epochs[-1] >= EPOCHS, f"peer {name} advanced through global steps: {epochs}"
        # nobody carried the swarm alone: every peer computed part of the samples
        assert 0 < result["contributed"] < EPOCHS * TARGET, (name, result["contributed"])
        assert max(t["peers"] for t in result["transitions"]) >= 2, f"peer {name} saw the others"
    # hivemind steps when the swarm's samples reach the target, or at the time it estimates they will
    # (ProgressTracker.ready_to_update_epoch: eta_next_epoch extrapolates every other peer's last reported
    # samples at its reported rate; this peer's own count is exact, volunteer.swarm.hivemind_patches). A peer
    # that slows down after its last report (a busy machine) is counted for samples it has not computed, so a
    # step can fall short of the target by up to a report interval of the others' samples; otherwise a step is
    # not short by design (a peer that sees the swarm step follows it, with the samples already counted).
    # Measured here in 8 runs (2 cores shared with other test runs), total and the smallest step, of 2,304 and
    # 768: 2,408 / 784, 2,392 / 784, 2,400 / 784, 2,360 / 776, 2,184 / 680 (steps 704, 800 and 680: 89 % of the
    # target), 2,456 / 752, 2,424 / 784, 2,352 / 776; the author saw 2,216 in all. The bounds leave
    # room below those and fail a swarm that steps short of its target: at half of it in every step (1,152 in
    # all) or in one.
    assert total >= 0.85 * EPOCHS * TARGET, f"{total} samples in {EPOCHS} global steps; per step {per_step}"
    assert len(per_step) >= EPOCHS and min(per_step.values()) >= 0.7 * TARGET, per_step
    weights = [torch.tensor(r["weight"] + r["bias"]) for r in results.values()]
    for other in weights[1:]:
        torch.testing.assert_close(other, weights[0], atol=1e-5, rtol=1e-4)
    initial = torch.nn.Linear(16, 1)
    torch.manual_seed(0)
    initial = torch.nn.Linear(16, 1)
    assert not torch.allclose(weights[0][:16], initial.weight.detach().flatten()), "the model trained"


def _samples_per_global_step(results: dict) -> dict[int, int]:
    """The swarm's samples in each global step: every peer's samples between its transitions to e and e + 1."""
    steps: dict[int, int] = {}
    for result in results.values():
        epoch, contributed = 0, 0
        for transition in result["transitions"]:
            if transition["epoch"] == epoch + 1:  # a step, not a jump by loading state
                steps[epoch] = steps.get(epoch, 0) + transition["contributed"] - contributed
            epoch, contributed = transition["epoch"], transition["contributed"]
    return dict(sorted(steps.items()))


def _read(path):
    return path.read_text() if path.exists() else None
