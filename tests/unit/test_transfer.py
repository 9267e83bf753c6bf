"""Download progress: bytes done and total, rate and ETA, from huggingface_hub's downloads and hivemind's state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.hubserver import HubServer
from tests.support.projects import isolate_environment
from volunteer.stats import Snapshot, Transfer
from volunteer.transfer import TransferMeter, watching


def test_meter_measures_done_total_rate_and_eta() -> None:
    meter = TransferMeter()
    assert meter.snapshot() is None
    meter.start("model state", total=1000)
    time.sleep(0.6)
    meter.add(300)
    shot = meter.snapshot()
    assert shot is not None and shot.what == "model state"
    assert shot.done_bytes == 300 and shot.total_bytes == 1000
    assert shot.fraction == pytest.approx(0.3)
    assert 0 < shot.bytes_per_second <= 300 / 0.6
    assert shot.eta == pytest.approx(700 / shot.bytes_per_second)
    meter.finish()
    assert meter.snapshot() is None


def test_a_transfer_round_trips_through_the_snapshot_dict() -> None:
    snapshot = Snapshot(transfer=Transfer("project files", 10, 20, 5.0, 2.0))
    again = Snapshot.from_dict(snapshot.to_dict())
    assert again.transfer == snapshot.transfer and again.transfer.eta == pytest.approx(2.0)
    assert Transfer("model state", 5).fraction is None and Transfer("model state", 5).eta is None


def test_huggingface_hub_downloads_feed_the_meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_environment(monkeypatch, tmp_path)
    from huggingface_hub import snapshot_download

    blob = bytes(range(256)) * 4096  # 1 MiB
    with HubServer() as hub:
        hub.add_repo("lab/big").commit({"weights.bin": blob, "model.py": "x = 1\n"})
        meter = TransferMeter()
        meter.start("project files", total=len(blob) + 6)
        cache = tmp_path / "cache"
        with watching(meter, cache / "models--lab--big" / "blobs", interval=0.05):
            snapshot_download("lab/big", endpoint=hub.url, cache_dir=str(cache))
    shot = meter.snapshot()
    assert shot is not None
    assert shot.done_bytes == len(blob) + 6
    assert shot.fraction == 1.0
