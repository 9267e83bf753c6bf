"""Forms of --project: demo, a folder, org/name and org/name@revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from volunteer.errors import ProjectError
from volunteer.project import parse_project_id


def test_demo() -> None:
    ref = parse_project_id("demo")
    assert (ref.kind, ref.repo, ref.revision) == ("builtin", "demo", "")


@pytest.mark.parametrize(
    ("text", "repo", "revision", "pinned"),
    [
        ("lab/mnist", "lab/mnist", "main", False),
        ("lab/mnist@v1", "lab/mnist", "v1", False),
        ("my-lab/mnist_2.0@dev-branch", "my-lab/mnist_2.0", "dev-branch", False),
        ("lab/mnist@refs/pr/3", "lab/mnist", "refs/pr/3", False),
        ("lab/mnist@" + "ab" * 20, "lab/mnist", "ab" * 20, True),
        ("  lab/mnist  ", "lab/mnist", "main", False),
    ],
)
def test_hub_ids(text: str, repo: str, revision: str, pinned: bool) -> None:
    ref = parse_project_id(text)
    assert (ref.kind, ref.repo, ref.revision, ref.pinned) == ("hub", repo, revision, pinned)
    assert ref.text == text


def test_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "demo").mkdir()
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for text in (str(tmp_path / "proj"), "./proj", "proj", "../" + tmp_path.name + "/proj"):
        ref = parse_project_id(text)
        assert (ref.kind, ref.repo) == ("local", str((tmp_path / "proj").resolve())), text
    assert parse_project_id("demo").kind == "builtin"
    assert parse_project_id("./demo").kind == "local"
    assert parse_project_id("org/name").kind == "hub"
    assert parse_project_id("./org/name").kind == "local"


def test_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "proj").mkdir()
    assert parse_project_id("~/proj").repo == str((tmp_path / "proj").resolve())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--project is empty"),
        ("   ", "--project is empty"),
        ("mnist", "unknown project 'mnist'"),
        ("lab/mnist@", "names no revision"),
        ("lab/", "is not a Hugging Face Hub repository id"),
        ("lab/-mnist", "is not a Hugging Face Hub repository id"),
        ("lab/mn--ist", "is not a Hugging Face Hub repository id"),
        ("lab/mnist@a b", "contains spaces"),
        ("@v1", "is not a Hugging Face Hub repository id"),
        ("./missing-folder", "does not exist"),
    ],
)
def test_bad_ids(text: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message) as caught:
        parse_project_id(text)
    assert caught.value.hint


def test_a_file_is_not_a_project(tmp_path: Path) -> None:
    (tmp_path / "volunteer.toml").write_text("")
    with pytest.raises(ProjectError, match="is a file, not a folder"):
        parse_project_id(str(tmp_path / "volunteer.toml"))
