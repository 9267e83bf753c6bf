"""Bytes on the wire, checked against the kernel: three volunteers on separate hosts, one of them capped.

Each volunteer runs in a network namespace of its own (``tests/support/netns.py``), so its ``eth0`` carries
exactly its swarm traffic. Over a window of steady training the test compares what each volunteer reports
(``/status``'s ``wire``: hivemind's payload counted, its framing estimated) with its interface's byte counters,
and checks that the capped one (``--max-upload``) sent no more than the cap allows, measured on its interface,
while the others kept stepping together.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.netns import Network, leftover_namespaces, unavailable_reason
from tests.support.projects import TINY_PROJECT
from tests.support.swarm import Swarm, wait_until

pytestmark = [pytest.mark.integration]

_reason = unavailable_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=f"network namespaces unavailable: {_reason}"))

WIDTH = 10_000
"""Hidden width of the test model: 100k parameters, 400 kB of gradients a round, so that averaging dominates."""
CAP = "512kbit"
CAP_BYTES = 64_000
LINK = "1mbit"
WINDOW = 90.0
"""Seconds of steady training measured."""

MODEL = """

class Wide(L.LightningModule):
    def __init__(self, lr: float = 0.05, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, width), nn.Linear(width, 1))
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)
"""


def _wide_project(tmp_path):
    folder = tmp_path / "wide_project"
    folder.mkdir()
    (folder / "model.py").write_text((Path(TINY_PROJECT) / "model.py").read_text() + MODEL)
    text = (Path(TINY_PROJECT) / "volunteer.toml").read_text()
    text = text.replace('class_path = "model.py:Regressor"', 'class_path = "model.py:Wide"')
    text = text.replace("init_args = { lr = 0.05 }", f"init_args = {{ lr = 0.05, width = {WIDTH} }}")
    (folder / "volunteer.toml").write_text(text)
    return str(folder)


def _wire(status: dict | None) -> dict:
    return (status or {}).get("wire") or {}


def _sent_by_kind(status: dict | None) -> dict[str, int]:
    return {k["kind"]: k["sent"] for k in _wire(status).get("by_kind") or ()}


@pytest.mark.timeout(600)
def test_counted_bytes_match_the_interfaces_and_the_cap_holds(tmp_path):
    project = _wide_project(tmp_path)
    with Network(prefix="wire") as net, Swarm(net, tmp_path) as swarm:
        a = swarm.start("a", project=project)
        wait_until(lambda: _wire(a.status()) and (a.status() or {}).get("state") == "training", 180, "a training", [a])
        b = swarm.start("b", peers=a.address(), project=project)
        swarm.wait_one_swarm([a, b], 180)  # full peers training: c will join as a client
        # c is a home volunteer: a 1 Mbit/s uplink (tc tbf, where the kernel has it), capped at half of it
        shaped = net.limit_bandwidth(net.add_host("c"), rate=LINK, burst="32kbit", latency="400ms")
        c = swarm.start("c", peers=a.address(), project=project, extra=("--max-upload", CAP))
        wait_until(lambda: (c.status() or {}).get("swarm_samples", 0) > 0, 180, "c credited for a global step", [c])
        vols = [a, b, c]

        before = {v.name: (v.host.interface_bytes(), v.status()) for v in vols}
        started = time.monotonic()
        time.sleep(WINDOW)
        after = {v.name: (v.host.interface_bytes(), v.status()) for v in vols}
        elapsed = time.monotonic() - started

        report = {}
        for v in vols:
            (tx0, rx0), s0 = before[v.name]
            (tx1, rx1), s1 = after[v.name]
            sent = _wire(s1)["sent_bytes"] - _wire(s0)["sent_bytes"]
            received = _wire(s1)["received_bytes"] - _wire(s0)["received_bytes"]
            report[v.name] = dict(
                interface_tx=tx1 - tx0,
                interface_rx=rx1 - rx0,
                sent=sent,
                received=received,
                sent_ratio=sent / max(1, tx1 - tx0),
                received_ratio=received / max(1, rx1 - rx0),
                tx_rate=(tx1 - tx0) / elapsed,
                epochs=s1["local_epoch"] - s0["local_epoch"],
                swarm_samples=s1["swarm_samples"] - s0["swarm_samples"],
                cap=_wire(s1)["cap"],
                states=(s0["state"], s1["state"]),
                sent_by_kind={k: n - _sent_by_kind(s0).get(k, 0) for k, n in _sent_by_kind(s1).items()},
            )
        report["c"]["link"] = LINK if shaped else "unshaped"
        (tmp_path / "report.json").write_text(json.dumps(report, indent=1))
        for name in "ab":
            r = report[name]
            # the payload counted plus the framing estimated is what the interface carries, within 10 %
            assert 0.9 <= r["sent_ratio"] <= 1.1, report
            assert 0.9 <= r["received_ratio"] <= 1.1, report
            assert r["swarm_samples"] > 0, f"{name} stopped taking global steps with the others"
        capped = report["c"]
        assert capped["tx_rate"] <= CAP_BYTES * 1.1, json.dumps(capped)
        assert capped["epochs"] > 0, "the capped peer neither stepped nor caught up with the swarm"
        mode = (c.status() or {}).get("network_mode"), (c.status() or {}).get("network_mode_reason", "")
        assert mode[0] == "client mode" and "upload cap" in mode[1], ("a capped peer answers others' lookups", mode)
        said = [e["message"] for e in c.events() if e["kind"] == "bandwidth"]
        assert any("averaging state every" in message for message in said), ("optional rounds not stretched", said)
        for v in vols:
            assert v.status()["state"] in ("training", "loading_state"), v.status()
    assert not [n for n in leftover_namespaces("wire") if n.startswith(f"wire-{net.tag}-")]
