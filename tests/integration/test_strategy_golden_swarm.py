"""Golden tests for 2 and 3 real peers: every global step is plain SGD on the sample-weighted mean of exactly the
micro-batches that went into it, on every peer (issue 22, items 3).

Each peer (``tests/integration/golden_peer.py``, its own process on 127.0.0.1) records every micro-batch hivemind
accumulated (its local epoch, sample count, data and the parameters it was computed on), every global step (the
gradient round's weight and group) and every ``load_state_from_peers``, with the parameters after each. This
test replays the record: starting from the common initial parameters, the reference after global step ``e`` is

    theta[e + 1] = theta[e] - lr * sum(n_b * grad(theta[e]; b)) / sum(n_b)

over every micro-batch ``b`` accumulated at epoch ``e`` by every peer that stepped from ``e``, the gradients
recomputed here from the recorded batches. That mean is what hivemind must produce: each peer's gradient
accumulator holds the mean over its batches (``GradientAverager.accumulate_grads_`` / ``load_accumulators_...``,
exact for a peer whose batches all have one size, as here), and ``GradientAverager.step`` averages them with
``weight = local_samples_accumulated`` (checked below against the recorded batches), so the all-reduce's
weighted mean is the sample-weighted mean of all batches. The peers' batch sizes differ (8, 16, 12), so a mean
that weighted peers equally would be seen; the test checks that it would.

Four cases: peers that start together and step together (2 and 3 peers), a peer left alone after the other
leaves, and a newcomer joining mid-training (run only with ``VOLUNTEER_GOLDEN_KNOWN_BUGS=1``: an open join
race, described in it). Written by issue 22's helper before three of its fixes, they
found them: a failed round stepped on zeros (the departure case, 3 of 4 runs), a peer that had not read its own
progress record yet did not count itself (the newcomer, 1 of 3 runs; and peers starting together, "tracker saw
0 peers" at the first step, 1 of 6 runs), and a background state round undid the next global step. On the
fixed code the other three passed 3 of 3 runs (one of them in the whole suite), the two-peer case 4 more times
alone.

What each kind of step must be:

* a peer alone in the swarm (nobody else stepped from that epoch) steps on the mean of all its own samples
  (before the fix of issue 22 it stepped on its last micro-batch only: the departure test below failed on
  that code, commit 01a4ef2, rel. diff 6.8e-02 at a's last lone step);
* peers in sync step together: every peer that stepped from epoch ``e`` was in one gradient round with all the
  others. A step that was not averaged with the others (a failed or missed round) is reported with the round's
  outcome, not accepted;
* a newcomer's ``load_state_from_peers`` gives it the donor's parameters of the epoch it is given (the reference
  of that epoch), and samples it accumulated before a load are dropped, not averaged: only batches accumulated
  after a load and before the next step count, and every peer's parameters must still match the reference.

Bound: float32 everywhere (the peers, the all-reduce and this replay), ``max |param - reference| <=
1e-5 * max |reference|`` per step; measured 2e-8 to 1.7e-7 relative (a few float32 ulps from the weighted
all-reduce and from state averaging of equal parameters, which gradients of later steps then see).
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.integration.golden_peer import LR, make_mlp
from tests.integration.procs import Proc, wait_for

pytestmark = pytest.mark.integration

RTOL = 1e-5
TARGET = 384


def test_two_peers_every_global_step_is_the_sample_weighted_mean(tmp_path):
    # a (8 samples a batch) and b (16) step together 4 times
    peers = {"a": dict(batch=8, seed=1, stop=4), "b": dict(batch=16, seed=2, stop=4)}
    report = check_golden(tmp_path, _run_together(tmp_path, peers))
    assert report.joint_steps[2] >= 3, report.text
    assert report.weighted_steps >= 2, report.text


def test_three_peers_every_global_step_is_the_sample_weighted_mean(tmp_path):
    # a (8 samples a batch), b (16) and c (12) step together 4 times
    peers = {
        "a": dict(batch=8, seed=1, stop=4),
        "b": dict(batch=16, seed=2, stop=4),
        "c": dict(batch=12, seed=3, stop=4),
    }
    report = check_golden(tmp_path, _run_together(tmp_path, peers))
    assert report.joint_steps[3] >= 3, report.text
    assert report.weighted_steps >= 2, report.text


def test_a_peer_left_alone_steps_on_all_its_samples(tmp_path):
    """a and b step together 3 times; b leaves; a's next 3 steps are on all of its own samples.

    Failed on the code before issue 22 (a's steps with no round: last micro-batch only), and whenever a still
    saw b's progress record at a step (b's goodbye not read yet): a began a gradient round, it failed ("could not
    find a group"), and hivemind 1.1.12 then loaded the "local gradients" from accumulators that
    ``GradientAverager.step(reset_accumulators=True)`` had already emptied: the optimizer stepped on zeros (3 of 4
    runs with a departure; fixed in ``volunteer/swarm/hivemind_patches.py``).
    """
    peers = {"a": dict(batch=8, seed=1, stop=6), "b": dict(batch=16, seed=2, stop=3)}
    report = check_golden(tmp_path, _run_together(tmp_path, peers))
    assert report.joint_steps[2] >= 2, report.text
    assert report.lone_steps >= 2, report.text


JOIN_RACE = pytest.mark.skipif(
    not os.environ.get("VOLUNTEER_GOLDEN_KNOWN_BUGS"),
    reason="the join race (see the test) fails it in about half the runs; VOLUNTEER_GOLDEN_KNOWN_BUGS=1 runs it",
)


@JOIN_RACE
def test_a_newcomer_steps_with_the_swarm_from_its_first_step(tmp_path):
    """a trains alone; b, started once a took 2 steps, loads a's state mid-training and then steps with a.

    What a join must be: b's ``load_state_from_peers`` gives it a's parameters of the epoch it is given (checked
    against the reference of that epoch), samples accumulated before a load are dropped, and from then on every
    step of a and b is one round with both on the sample-weighted mean.

    Failed in some runs before issue 22's fixes (1 of 3 at this target; 2 of 2 at a target of 96 samples, where a
    step is shorter than the time a newcomer's progress record takes to be seen): a peer stepped alone at the
    join. A newcomer's tracker did not count the newcomer until its own progress record was in the DHT, so with
    one other peer it saw ``num_peers == 1`` and neither scheduled nor began a round; the other peer, not seeing
    the newcomer's record yet, stepped alone too. The one then an epoch behind followed at once and its gradient
    round could pair with the other's round of the next epoch (hivemind's gradient group key has no epoch).
    ``_parse_swarm_progress_data`` in ``volunteer/swarm/hivemind_patches.py`` now counts this peer from its local
    progress whether or not its record was read.

    Still open, so the test runs only with ``VOLUNTEER_GOLDEN_KNOWN_BUGS=1`` (on the final code of issue 22: 2
    passes, then 2 failures in 4 runs): the peer already training steps alone while it has not read the
    newcomer's record yet, and the newcomer, which read that peer's full count, begins a round nobody joins; the
    round fails and it steps on its own first few samples (a: 384 samples alone at epoch 3, b: 16), after which
    the two are apart until a state round or a load brings them together. The fix needs a decision on what a
    failed round should do when the swarm stepped without this peer (drop the samples and load the swarm's
    state, rather than step alone).
    """
    peers = {"a": dict(batch=8, seed=1), "b": dict(batch=16, seed=2)}
    procs: list[Proc] = []
    try:
        procs.append(_peer(tmp_path, "a", 8, 1, None, "--no-go"))
        bootstrap = wait_for(lambda: _read(tmp_path / "a.addr"), 90, "a's address", procs)
        wait_for(lambda: int(_read(tmp_path / "a.epoch") or 0) >= 2, 90, "a's two lone steps", procs)
        procs.append(_peer(tmp_path, "b", 16, 2, bootstrap, "--no-go"))
        joined = int(wait_for(lambda: _read(tmp_path / "b.joined"), 90, "b to join", procs))
        _write(tmp_path / "stop", str(joined + 3))
        _wait_all(procs)
    finally:
        for proc in procs:
            proc.stop()
    report = check_golden(tmp_path, peers)
    assert report.lone_steps >= 2, report.text
    assert report.joint_steps[2] >= 2, report.text


def _run_together(out, peers: dict[str, dict]) -> dict[str, dict]:
    """Start the peers (the first one is the others' bootstrap), let them take their first batch together, and
    stop each at its own epoch."""
    procs: list[Proc] = []
    try:
        names = list(peers)
        for name in names:
            _write(out / f"{name}.stop", str(peers[name]["stop"]))
        procs.append(_peer(out, names[0], peers[names[0]]["batch"], peers[names[0]]["seed"], None))
        bootstrap = wait_for(lambda: _read(out / f"{names[0]}.addr"), 90, "the first peer's address", procs)
        for name in names[1:]:
            procs.append(_peer(out, name, peers[name]["batch"], peers[name]["seed"], bootstrap))
        wait_for(lambda: all((out / f"{n}.addr").exists() for n in names), 90, "every peer's address", procs)
        (out / "go").touch()
        _wait_all(procs)
    finally:
        for proc in procs:
            proc.stop()
    return peers


# -- the replay --------------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[str] = []
        self.lone_steps = 0
        self.joint_steps = {2: 0, 3: 0}
        self.weighted_steps = 0  # steps together where sample and equal weights differ beyond the bound
        self.worst = 0.0

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, "FAILURES:", *self.failures])


def check_golden(out, names: dict[str, dict]) -> Report:
    """Replay every peer's record against the reference; fail with every discrepancy, clearly named."""
    records = {name: torch.load(out / f"{name}.pt", weights_only=False) for name in names}
    report = Report()
    by_id = {rec["peer_id"]: name for name, rec in records.items()}
    initial = records["a"]["initial"]
    for name, rec in records.items():
        assert torch.equal(rec["initial"], initial), f"{name} started from other parameters"
        assert rec["batch_size"] == names[name]["batch"]

    # cut each peer's record into global steps (the batches since its last step or load) and loads
    steps: dict[int, list[tuple[str, dict, list[dict]]]] = {}
    loads: list[tuple[str, dict, list[dict]]] = []
    for name, rec in records.items():
        bucket: list[dict] = []
        for event in rec["events"]:
            if event["kind"] == "acc":
                bucket.append(event)
            elif event["kind"] == "step":
                steps.setdefault(event["epoch"], []).append((name, event, bucket))
                bucket = []
            else:
                loads.append((name, event, bucket))
                bucket = []

    reference = {0: initial}
    for epoch in sorted(steps):
        stepping = steps[epoch]
        who = sorted(name for name, _, _ in stepping)
        if epoch not in reference:
            report.failures.append(f"epoch {epoch}: {who} stepped from an epoch no checked step reached")
            continue
        theta = reference[epoch]
        grads, samples = torch.zeros_like(theta), 0
        per_peer = {}
        for name, event, batches in stepping:
            n = sum(b["n"] for b in batches)
            if event["to"] != epoch + 1:
                report.failures.append(f"{name}: global step from epoch {epoch} went to {event['to']}")
            if event["samples"] != n or (event["weight"] is not None and event["weight"] != n):
                report.failures.append(
                    f"{name} epoch {epoch}: {n} samples recorded, hivemind counted {event['samples']}, "
                    f"round weight {event['weight']}"
                )
            peer_sum = torch.zeros_like(theta)
            stale = [_rel(batch["params"], theta) for batch in batches]
            if stale and max(stale) > RTOL:
                report.failures.append(
                    f"{name} epoch {epoch}: {sum(d > RTOL for d in stale)} of {len(batches)} batches' gradients were "
                    f"computed on other parameters than the epoch's (rel. diff up to {max(stale):.1e})"
                )
            for batch in batches:
                peer_sum += batch["n"] * _grad(theta, batch["x"], batch["y"])
            per_peer[name] = (peer_sum, n)
            grads += peer_sum
            samples += n
        expected = theta - LR * grads / max(samples, 1)
        reference[epoch + 1] = expected

        # who averaged with whom
        alone = [(name, event) for name, event, _ in stepping if not event["group"] or len(event["group"]) < 2]
        groups = {frozenset(by_id.get(p, p) for p in event["group"] or ()) for _, event, _ in stepping}
        if len(stepping) == 1 and alone:
            report.lone_steps += 1
            kind = f"alone ({alone[0][1]['error']}, tracker saw {alone[0][1]['num_peers']} peers)"
        elif alone or groups != {frozenset(who)}:
            kind = "NOT TOGETHER"
            for name, event in alone:
                report.failures.append(
                    f"{name} stepped from epoch {epoch} without the others {who}: round outcome "
                    f"{event['error'] or event['group']!r}, tracker saw {event['num_peers']} peers"
                )
            if not alone:
                report.failures.append(
                    f"epoch {epoch}: {who} stepped in different groups {sorted(map(sorted, groups))}"
                )
        else:
            report.joint_steps[len(who)] = report.joint_steps.get(len(who), 0) + 1
            kind = "together"
            if len({n for _, n in per_peer.values()}) > 1:
                # peers with different sample counts: weighting them equally would give another step
                equal = theta - LR * sum(s / max(n, 1) for s, n in per_peer.values()) / len(per_peer)
                if _rel(equal, expected) > 10 * RTOL:
                    report.weighted_steps += 1
        worst = 0.0
        for name, event, _ in stepping:
            diff = _rel(event["params"], expected)
            worst = max(worst, diff)
            if diff > RTOL:
                report.failures.append(
                    f"{name}'s parameters after its step from epoch {epoch} are not the reference "
                    f"(rel. diff {diff:.1e}; {kind})"
                )
        if worst > RTOL:
            # go on from what the first peer has, so that each later step is judged on its own
            reference[epoch + 1] = stepping[0][1]["params"]
            kind += f"; the reference goes on from {stepping[0][0]}'s parameters"
        report.worst = max(report.worst, worst)
        counts = ", ".join(f"{name}:{n}" for name, (_, n) in per_peer.items())
        report.lines.append(f"epoch {epoch} -> {epoch + 1}: {kind}, samples {counts}, rel. diff {worst:.1e}")

    for name, event, dropped in loads:
        params, to = event["params"], event["to"]
        n = sum(b["n"] for b in dropped)
        report.lines.append(f"{name} loaded state at epoch {event['epoch']} -> {to}, dropping {n} samples")
        if event["dropped"] != n:
            report.failures.append(f"{name}: load dropped {event['dropped']} samples, {n} recorded")
        if to == 0 and event["epoch"] == 0 and torch.equal(params, initial):
            continue  # the first peer found nobody to load from
        if to not in reference or _rel(params, reference[to]) > RTOL:
            near = min(reference, key=lambda e: _rel(params, reference[e]))
            report.failures.append(
                f"{name} loaded epoch {to} with parameters that are not that epoch's "
                f"(closest: epoch {near}, rel. diff {_rel(params, reference[near]):.1e})"
            )
    report.lines.append(
        f"worst rel. diff {report.worst:.1e} (bound {RTOL}); {report.weighted_steps} steps tell weights"
    )
    print(report.text)
    assert not report.failures, report.text
    return report


def _grad(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    net = make_mlp()
    torch.nn.utils.vector_to_parameters(theta.clone(), net.parameters())
    loss = torch.nn.functional.mse_loss(net(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))])


def _rel(params: torch.Tensor, reference: torch.Tensor) -> float:
    return ((params - reference).abs().max() / reference.abs().max()).item()


def _peer(out, name: str, batch: int, seed: int, bootstrap: str | None, *extra: str) -> Proc:
    args = ["--name", name, "--out", str(out), "--batch-size", str(batch), "--seed", str(seed)]
    args += ["--target", str(TARGET), *extra]
    if bootstrap:
        args += ["--initial-peers", bootstrap]
    return Proc.python("tests.integration.golden_peer", *args, log=out / f"{name}.log")


def _wait_all(procs: list[Proc]) -> None:
    for proc in procs:
        wait_for(lambda p=proc: p.popen.poll() is not None, 90, f"{proc.log_path.name} to finish", [])
        assert proc.popen.returncode == 0, proc.output()[-4000:]


def _read(path) -> str | None:
    return path.read_text() if path.exists() else None


def _write(path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
