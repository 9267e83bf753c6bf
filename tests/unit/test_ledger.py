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


GOOD = {
    "run_id": "run",
    "samples": 5,
    "steps": 1,
    "swarm_samples": 5,
    "local_only_samples": 0,
    "compute_seconds": 1.5,
    "sessions": 1,
    "first_seen": 1.0,
    "updated": 2.0,
}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"run_id": "run", "samples": ', "Expecting value"),
        (b'{"run_id": "run"}', "field 'samples'"),
        (b"\xff\xfe not utf-8", "not UTF-8 text"),
        (json.dumps({**GOOD, "compute_seconds": 1e400}).replace("Infinity", "1e400").encode(), "not a finite number"),
        (json.dumps({**GOOD, "samples": -3}).encode(), "'samples' is -3, not a whole number"),
        (json.dumps({**GOOD, "steps": 2.5}).encode(), "'steps' is 2.5"),
        (json.dumps({**GOOD, "steps": True}).encode(), "'steps' is True"),
        (json.dumps({**GOOD, "samples": 10**30}).encode(), "not a whole number"),
        (json.dumps({**GOOD, "run_id": ["x"]}).encode(), "'run_id' is not a short string"),
        (b'["a list"]', "not a JSON object"),
        (b"[" * 100_000, "RecursionError"),
    ],
)
def test_a_damaged_ledger_is_set_aside_with_a_warning_never_overwritten(tmp_path, content, why):
    path = tmp_path / "ledger" / "run.json"
    path.parent.mkdir()
    path.write_bytes(content)
    ledger = LedgerFile(path, "run")
    assert ledger.warning is not None and why in ledger.warning, ledger.warning
    (aside,) = [p for p in path.parent.iterdir() if p.name.startswith("run.json.damaged-")]
    assert aside.read_bytes() == content, "the damaged ledger is kept, byte for byte"
    assert f"moved aside to {aside}" in ledger.warning
    assert ledger.current.totals == Counters() and ledger.current.sessions == 1
    ledger.update(Counters(samples=7))
    ledger.save()
    assert json.loads(path.read_text())["samples"] == 7 and aside.read_bytes() == content


def test_a_ledger_that_cannot_be_read_or_moved_is_an_error(tmp_path):
    path = tmp_path / "run.json"
    path.mkdir()
    with pytest.raises(DataDirError) as info:
        LedgerFile(path, "run")
    assert "rm -r" in (info.value.hint or "") and path.is_dir()


def test_a_good_ledger_is_read_as_written(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(GOOD))
    ledger = LedgerFile(path, "run")
    assert ledger.warning is None and ledger.base.totals.samples == 5 and ledger.base.totals.compute_seconds == 1.5


def test_a_lock_file_that_is_a_folder_is_a_clear_error(tmp_path):
    data_dir = DataDir.open(tmp_path)
    data_dir.lock_file.mkdir()
    with pytest.raises(DataDirError) as info, data_dir.lock():
        pass
    assert "lock file" in info.value.message and "rm -r" in (info.value.hint or "")


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


def test_the_session_says_when_it_set_a_ledger_aside(tmp_path):
    from volunteer.contribution.session import Session
    from volunteer.project import resolve_project
    from volunteer.settings import Settings

    settings = Settings(project="demo", status_port=0)
    data_dir = DataDir.open(tmp_path / "data")
    path = data_dir.ledger_file(resolve_project(settings, data_dir).manifest.run_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe")
    session = Session(settings, data_dir)
    session._prepare()
    (event,) = [e for e in session.events_since(0) if e.kind == "warning" and "contribution ledger" in e.message]
    assert "not UTF-8 text" in event.message and ".damaged-" in event.message
