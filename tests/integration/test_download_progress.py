"""The data files a Hub project downloads after consent are counted against their listed size."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.hubserver import HubServer
from tests.support.projects import isolate_environment, project_files
from volunteer.datadir import DataDir
from volunteer.project import prepare_project
from volunteer.settings import Settings
from volunteer.transfer import TransferMeter

pytestmark = pytest.mark.timeout(120)


def test_the_download_after_consent_feeds_a_meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_environment(monkeypatch, tmp_path)
    data = bytes(range(256)) * 8192  # 2 MiB
    seen: list = []
    meter = TransferMeter()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            shot = meter.snapshot()
            if shot is not None:
                seen.append(shot)

    with HubServer() as hub:
        hub.add_repo("lab/big").commit({**project_files(), "data/train.bin": data})
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            prepared = prepare_project(
                Settings(project="lab/big", endpoint=hub.url, trust=True),
                DataDir.open(tmp_path / "data"),
                meter=meter,
            )
        finally:
            stop.set()
            thread.join(timeout=5)
    assert prepared.project.data_bytes == len(data)
    assert seen, "the meter showed the download while it ran"
    assert all(shot.what == "project files" and shot.total_bytes == len(data) for shot in seen)
    assert meter.snapshot() is None, "finished"
    assert max(shot.done_bytes for shot in seen) <= len(data)
