import json
import os

import pytest

from volunteer.datadir import DataDir, atomic_write_text
from volunteer.errors import DataDirError
from volunteer.ledger import Counters, LedgerFile


def test_a_new_session_adds_to_the_previous_totals(tmp_path):
    path = tmp_path / "ledger" / "run.json"
    first = LedgerFile(path, "run")
    first.update(Counters(samples=100, steps=10, swarm_samples=64, local_only_samples=36, compute_seconds=2.5), "peerA")
    first.save()
    second = LedgerFile(path, "run")
    ledger = second.update(Counters(samples=10, steps=1, swarm_samples=10))
    assert ledger.sessions == 2 and ledger.peer_id == "peerA"
    assert ledger.totals == Counters(
        samples=110, steps=11, swarm_samples=74, local_only_samples=36, compute_seconds=2.5
    )
    second.save()
    data = json.loads(path.read_text())
    assert data["samples"] == 110 and data["swarm_samples"] == 74 and data["sessions"] == 2


def test_a_damaged_ledger_is_a_clear_error_and_is_not_overwritten(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "run", "samples": ')
    with pytest.raises(DataDirError) as info:
        LedgerFile(path, "run")
    assert "damaged" in info.value.message and "mv " in info.value.hint
    assert path.read_text() == '{"run_id": "run", "samples": '
    path.write_text('{"run_id": "run"}')
    with pytest.raises(DataDirError):
        LedgerFile(path, "run")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a.json"
    for i in range(5):
        atomic_write_text(target, str(i))
    assert target.read_text() == "4"
    assert os.listdir(tmp_path) == ["a.json"]


def test_data_dir_that_is_not_writable_names_the_fix(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(DataDirError) as info:
        DataDir.open(blocked / "data")
    assert "not writable" in info.value.message and "--data-dir" in info.value.hint


def test_unreadable_or_damaged_identity_is_a_clear_error(tmp_path):
    data_dir = DataDir.open(tmp_path)
    data_dir.identity_file.write_bytes(b"short")
    with pytest.raises(DataDirError) as info:
        data_dir.check_identity()
    assert "damaged" in info.value.message and "rm " in info.value.hint
    data_dir.identity_file.write_bytes(b"x" * 200)
    data_dir.identity_file.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(DataDirError):
            data_dir.check_identity()


def test_the_data_dir_lock_refuses_a_second_client(tmp_path):
    data_dir = DataDir.open(tmp_path)
    with data_dir.lock():
        other = os.fork()
        if other == 0:  # a second process must be refused
            try:
                with DataDir.open(tmp_path).lock():
                    os._exit(0)
            except DataDirError:
                os._exit(7)
        _, status = os.waitpid(other, 0)
        assert os.WEXITSTATUS(status) == 7
    with data_dir.lock():
        pass


def test_hub_cache_follows_hugging_face_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    data_dir = DataDir.open(tmp_path / "data")
    assert data_dir.hub_cache == data_dir.root / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert data_dir.hub_cache == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert data_dir.hub_cache == tmp_path / "cache"
