"""``volunteer host`` restarted with nobody online: it resumes from its checkpoint and newcomers get that state."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.integration.procs import Proc, wait_for
from tests.integration.volunteers import Volunteer, free_port, host_swarm
from tests.support.projects import isolate_environment
from volunteer.authoring.checkpoints import save_checkpoint
from volunteer.authoring.init import create_project
from volunteer.project.loader import build_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STEP = 42


def test_a_restarted_host_resumes_from_its_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    from volunteer.datadir import DataDir
    from volunteer.project import prepare_project
    from volunteer.settings import Settings

    isolate_environment(monkeypatch, tmp_path)
    root = create_project(tmp_path / "spirals", run_id="spirals-resume").root
    # the checkpoint a host saved at global step 42 before everyone left (parameters set to a recognizable value)
    module = build_project(prepare_project(Settings(project=str(root)), DataDir.open(tmp_path / "d")).project).module
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(0.25)
    optimizer = torch.optim.Adam(module.parameters())
    state = optimizer.state_dict()  # no statistics yet: the host creates them, as hivemind does
    state["state"]["local_epoch"] = STEP
    save_checkpoint(tmp_path / "ckpt", "spirals-resume", STEP, {"model": module.state_dict(), "optimizer": state}, 3)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = Proc.python(
        "volunteer",
        "host",
        "--project",
        str(root),
        "--data-dir",
        str(tmp_path / "host"),
        "--host-maddrs",
        "/ip4/127.0.0.1/tcp/0",
        "--peers-port",
        str(port),
        "--peers-bind",
        "127.0.0.1",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        log=tmp_path / "host.log",
    )
    volunteer = None
    try:
        wait_for(lambda: host_swarm(url).get("swarm", {}).get("state_epoch") == STEP, 90, "the host to resume", [host])
        assert f"[resumed] no peer had newer state: resumed from checkpoint {tmp_path / 'ckpt'}" in host.output()
        address = host_swarm(url)["peers"][0]
        volunteer = Volunteer(tmp_path, "late", project=str(root), peers=address)
        volunteer.wait_training(90)
        loaded = [e["message"] for e in volunteer.events() if e["kind"] == "state_loaded"]
        assert loaded and int(re.search(r"global step (\d+)", loaded[0]).group(1)) >= STEP, loaded
        host.signal(signal.SIGTERM)
        assert wait_for(lambda: host.popen.poll() is not None and [host.popen.returncode], 15, "the host to exit") == [
            0
        ]
    finally:
        if volunteer is not None:
            volunteer.stop()
        host.stop()
