"""Where the data directory puts what must last (identity, consent, ledger) and what is only a cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from volunteer.datadir import DataDir


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("VOLUNTEER_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_by_default_what_lasts_is_in_the_user_data_dir_and_caches_in_the_cache(xdg: Path) -> None:
    data_dir = DataDir.open()
    assert data_dir.root == (xdg / "share" / "volunteer").resolve()
    assert data_dir.identity_file.parent == data_dir.root
    assert data_dir.ledger_file("run").is_relative_to(data_dir.root)
    assert data_dir.consent_file.parent == data_dir.root
    assert data_dir.peers_cache("run").is_relative_to(xdg / "cache" / "volunteer")
    # the user's own Hugging Face cache, shared with their other Hub tools
    assert data_dir.hub_cache == xdg / "cache" / "huggingface" / "hub"


def test_hf_home_wins_for_the_hub_cache(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(xdg / "hf"))
    assert DataDir.open().hub_cache == xdg / "hf" / "hub"
    assert DataDir.open(xdg / "explicit").hub_cache == xdg / "hf" / "hub"


def test_an_explicit_folder_holds_everything(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = DataDir.open(xdg / "mine")
    assert data_dir.root == data_dir.cache == (xdg / "mine").resolve()
    assert data_dir.hub_cache == data_dir.root / "hub"
    monkeypatch.setenv("VOLUNTEER_HOME", str(xdg / "env"))
    from_env = DataDir.open()
    assert from_env.root == from_env.cache == (xdg / "env").resolve()
    assert not (xdg / "share").exists()


def _old_layout(old: Path) -> None:
    (old / "ledger").mkdir(parents=True)
    (old / "ledger" / "run.json").write_text('{"all_time": 1}')
    (old / "identity.key").write_bytes(b"k" * 100)
    (old / "consent.json").write_text("{}")
    (old / "peers").mkdir()
    (old / "peers" / "run.txt").write_text("/ip4/10.0.0.1/tcp/1/p2p/X\n")


def test_identity_consent_and_ledger_move_out_of_the_cache_once(xdg: Path, capsys: pytest.CaptureFixture) -> None:
    old = xdg / "cache" / "volunteer"
    _old_layout(old)
    data_dir = DataDir.open()
    assert (data_dir.root / "identity.key").read_bytes() == b"k" * 100
    assert (data_dir.root / "ledger" / "run.json").read_text() == '{"all_time": 1}'
    assert (data_dir.root / "consent.json").exists()
    assert not (old / "identity.key").exists() and not (old / "ledger").exists()
    assert (old / "peers" / "run.txt").exists()  # a cache stays a cache
    assert "moved identity.key, consent.json, ledger" in capsys.readouterr().err

    # an older client writing the cache again never overwrites the newer record
    (old / "identity.key").write_bytes(b"o" * 100)
    DataDir.open()
    assert (data_dir.root / "identity.key").read_bytes() == b"k" * 100
    assert capsys.readouterr().err == ""


def test_the_host_has_a_data_dir_of_its_own(xdg: Path) -> None:
    _old_layout(xdg / "cache" / "volunteer" / "host")
    host = DataDir.open(name="host")
    assert host.root == (xdg / "share" / "volunteer" / "host").resolve()
    assert (host.root / "identity.key").exists()
    assert host.peers_cache("r").is_relative_to(xdg / "cache" / "volunteer" / "host")
