"""Consent: per (repository, commit), remembered in the data directory; the demo and local folders are trusted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.support.projects import isolate_environment, manifest, to_toml, write_project
from volunteer.datadir import DataDir
from volunteer.errors import DataDirError, TrustError
from volunteer.project import ResolvedProject, parse_manifest, prepare_project
from volunteer.project.trust import is_trusted, remember_consent, require_consent
from volunteer.settings import Settings

SHA_1 = "1" * 40
SHA_2 = "2" * 40


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.open(tmp_path / "data")


def hub_project(revision: str = SHA_1, endpoint: str = "https://hub.example", files: int = 2) -> ResolvedProject:
    # each commit's snapshot has its own code (a missing root reads as the same, empty, code for both)
    root = Path(f"/nonexistent/{revision}")
    return ResolvedProject(
        id="lab/tiny",
        repo="lab/tiny",
        revision=revision,
        root=root,
        manifest=parse_manifest(to_toml(manifest()), "x"),
        files=tuple(f"file{i}.py" for i in range(files)),
        kind="hub",
        endpoint=endpoint,
    )


def test_remembered_per_commit_and_per_hub(data_dir: DataDir, tmp_path: Path) -> None:
    assert not is_trusted(data_dir, hub_project())
    remember_consent(data_dir, hub_project(), "asked")
    assert is_trusted(data_dir, hub_project())
    assert is_trusted(data_dir, hub_project(SHA_2)), "same (missing) code and manifest: the same code"
    changed = dataclasses.replace(hub_project(SHA_2), root=tmp_path)
    (tmp_path / "file0.py").write_text("print('new code')\n")
    assert not is_trusted(data_dir, changed), "new code asks again"
    assert not is_trusted(data_dir, hub_project(endpoint="https://mirror.example"))
    record = json.loads(data_dir.consent_file.read_text())
    entry = record["projects"]["https://hub.example/lab/tiny"][SHA_1]
    assert entry["files"] == ["file0.py", "file1.py"] and entry["how"] == "asked"
    assert entry["name"] == "Tiny test project"


def test_require_consent_paths(data_dir: DataDir) -> None:
    asked: list[str] = []

    def yes(project: ResolvedProject) -> bool:
        asked.append(project.revision)
        return True

    assert require_consent(hub_project(), data_dir, trust=False, ask=yes) == "asked"
    assert require_consent(hub_project(), data_dir, trust=False, ask=yes) == "remembered"
    assert require_consent(hub_project(SHA_2, files=3), data_dir, trust=True, ask=yes) == "--trust"
    assert asked == [SHA_1]


def test_refusal_lists_every_file_that_will_run_and_names_the_fix(data_dir: DataDir) -> None:
    with pytest.raises(TrustError) as caught:
        require_consent(
            dataclasses.replace(hub_project(files=7), data_files=2, data_bytes=3_500_000),
            data_dir,
            trust=False,
            ask=None,
        )
    message = caught.value.message
    files = ", ".join(f"file{i}.py" for i in range(7))
    assert f"(lab/tiny at commit 111111111111: 7 Python files: {files}; also 2 data files" in message
    assert "(3.5 MB) that the code may read)" in message
    assert caught.value.hint and "--trust" in caught.value.hint and "VOLUNTEER_TRUST=1" in caught.value.hint
    assert not data_dir.consent_file.exists()


def test_damaged_consent_file(data_dir: DataDir) -> None:
    data_dir.consent_file.write_text("{not json")
    with pytest.raises(DataDirError, match=r"consent file .* is damaged"):
        is_trusted(data_dir, hub_project())
    data_dir.consent_file.write_text('["a list"]')
    with pytest.raises(DataDirError, match="has no 'projects' table") as caught:
        is_trusted(data_dir, hub_project())
    assert "mv " in (caught.value.hint or "")


def test_demo_and_local_folders_need_no_consent(tmp_path: Path, data_dir: DataDir) -> None:
    assert prepare_project(Settings(project="demo"), data_dir).consent == "builtin"
    root = write_project(tmp_path / "proj")
    assert prepare_project(Settings(project=str(root)), data_dir).consent == "local"
    assert not data_dir.consent_file.exists()
