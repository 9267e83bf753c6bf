"""``volunteer init``: the scaffold is a valid, lint-clean project; bad input is one error line and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.projects import assert_user_error, isolate_environment
from volunteer import __version__
from volunteer.authoring.init import create_project, default_run_id, template_files
from volunteer.cli import main
from volunteer.project.manifest import read_manifest
from volunteer.project.static import check_project_code

pytestmark = pytest.mark.timeout(60)

SCAFFOLD = (".gitignore", "README.md", "data.py", "model.py", "peers.txt", "volunteer.toml")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


def test_init_writes_a_valid_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "spirals", "--repo", "my-lab/spirals"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "spirals"
    assert sorted(p.name for p in root.iterdir()) == sorted(SCAFFOLD)
    manifest = read_manifest(root / "volunteer.toml", "volunteer.toml")
    assert (manifest.name, manifest.run_id) == ("spirals", "spirals-v1")
    assert manifest.peers.file == "peers.txt" and manifest.requirements.min_client_version == __version__
    check_project_code(manifest, root, lambda file: file)  # every reference resolves, every argument fits
    readme = (root / "README.md").read_text()
    assert readme.startswith("---\ntags:") and "volunteer --project my-lab/spirals" in readme
    assert "run id `spirals-v1`" in readme
    for command in (
        "volunteer check spirals",
        "volunteer --project ./spirals",
        "volunteer publish spirals --repo my-lab/spirals",
        "volunteer host --project my-lab/spirals",
    ):
        assert command in out


def test_name_run_id_and_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    scaffold = create_project(tmp_path / "empty", name='Spirals "together" ü', run_id="spirals.v2")
    manifest = read_manifest(scaffold.root / "volunteer.toml", "volunteer.toml")
    assert manifest.name == 'Spirals "together" ü' and manifest.run_id == "spirals.v2"
    assert scaffold.repo == "your-org/empty"  # a placeholder until --repo is given


def test_default_run_id() -> None:
    assert default_run_id("My Spirals!") == "my-spirals-v1"
    assert default_run_id("...") == "project-v1"


def test_the_scaffold_is_lint_clean(tmp_path: Path) -> None:
    """What authors start from passes the same ruff rules as volunteer itself."""
    create_project(tmp_path / "p")
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(repo_root / "pyproject.toml"), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_templates_are_packaged() -> None:
    files = template_files()
    assert sorted(files) == sorted(SCAFFOLD)
    assert "$run_id" in files["volunteer.toml"] and "$repo" in files["README.md"]


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (["init", "taken"], "folder 'taken' already exists and is not empty", "init never overwrites files"),
        (["init", "afile"], "'afile' is a file", "volunteer init my-project"),
        (["init", "p", "--run-id", "no spaces"], "--run-id 'no spaces' is not a run id", "--run-id mnist-v1"),
        (["init", "p", "--repo", "not a repo"], "--repo 'not a repo' is not a Hub repository id", "my-lab/spirals"),
        (["init", "p", "--repo", "lab/x@v1"], "--repo 'lab/x@v1' is not a Hub repository id", "my-lab/spirals"),
        (["init", "p", "--name", " "], "--name ' ' is not a usable project name", "MNIST together"),
        (["init"], "the following arguments are required: DIR", "volunteer init --help"),
    ],
)
def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.py").write_text("")
    (tmp_path / "afile").write_text("")
    assert_user_error(capsys, main(argv), error, hint)
    assert not (tmp_path / "p").exists()
