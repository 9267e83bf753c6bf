"""``volunteer check``: the client's validation, an import, and a few real training steps on the CPU.

Each failure is one ``error:`` line naming the file (and line), one ``hint:`` line, and status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.hubserver import HubServer
from tests.support.projects import PEER_A, assert_user_error, isolate_environment
from volunteer.authoring.check import check_project
from volunteer.authoring.init import create_project
from volunteer.cli import main
from volunteer.datadir import DataDir
from volunteer.settings import Settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return create_project(tmp_path / "spirals").root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_scaffold_passes_and_reports_size_time_and_memory(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "spirals"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 4,547 (4,547 trainable" in out
    assert "5 training steps on cpu (32-true), batch size 4: loss" in out
    assert "step time:" in out and "peak memory:" in out and "samples/s here at batch size 4" in out
    assert "no peers listed yet" in out
    assert "without asking" not in out  # a local folder needs no consent anyway
    assert not list(project.rglob("lightning_logs"))  # Lightning wrote nothing into the project


def test_json_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(project), "--json", "--steps", "3", "--batch-size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["batch_size"] == 2 and report["parameters"] == 4547
    assert report["mean_step_seconds"] > 0 and report["first_step_seconds"] > 0
    assert report["peak_memory_bytes"] > report["parameter_bytes"] > 0
    assert report["samples_per_second"] > 0 and report["files"] == ["data.py", "model.py"]


def test_import_only(project: Path, tmp_path: Path) -> None:
    report = check_project(Settings(project=str(project)), DataDir.open(tmp_path / "data"), steps=0)
    assert report.steps == 0 and report.mean_step_seconds is None and report.parameters == 4547


def test_peers_file_is_read_as_a_volunteer_reads_it(project: Path, tmp_path: Path) -> None:
    (project / "peers.txt").write_text(f"# the lab's machine\n{PEER_A}\n")
    report = check_project(Settings(project=str(project)), DataDir.open(tmp_path / "data"), steps=0)
    assert report.peers == 1 and report.peer_sources == ("peers.txt: 1",)


def test_a_hub_project_needs_consent_to_run_here(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with HubServer() as hub:
        files = {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()}
        sha = hub.add_repo("lab/spirals").commit(files)
        data = tmp_path / "data"
        argv = ["check", "lab/spirals", "--endpoint", hub.url, "--data-dir", str(data), "--steps", "1"]
        error, _ = assert_user_error(capsys, main(argv), "consent to run project 'spirals'", "--trust")
        assert "2 Python files: data.py, model.py" in error
        assert not (data / "consent.json").exists()

        # on a terminal the author is asked, with every file that will run
        monkeypatch.setattr("sys.stdin.isatty", lambda: True)
        answers = iter(["n", "y"])
        monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
        assert_user_error(capsys, main(argv), "was declined", "--trust")
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "2 Python files: data.py, model.py" in out and f"ok  lab/spirals@{sha[:7]}: 'spirals'" in out
        assert json.loads((data / "consent.json").read_text())["projects"][f"{hub.url}/lab/spirals"][sha]["how"] == (
            "asked"
        )

        hub.repos["lab/spirals"].commit({"model.py": files["model.py"] + b"\n# changed\n"})
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert_user_error(capsys, main(argv), "has not been given", "--trust")
        assert main([*argv, "--trust"]) == 0


BUGGY_STEP = "        loss = nn.functional.cross_entropy(self(x), y)\n"


@pytest.mark.parametrize(
    ("file", "old", "new", "error", "hint"),
    [
        (
            "model.py",
            BUGGY_STEP,
            "        loss = nn.functional.cross_entropy(self(x)[:, :1] @ torch.ones(2, 1), y)\n",
            "spirals/model.py line {line}: training step 1 raised RuntimeError: mat1 and mat2 shapes cannot be",
            "fix the code at that line and check again",
        ),
        (
            "model.py",
            BUGGY_STEP,
            "        loss = nn.functional.cross_entropy(self(x), y) * float('nan')\n",
            "spirals/model.py: the loss is nan at training step 1",
            "check the data for NaN",
        ),
        (
            "model.py",
            "        return loss\n",
            "        return None\n",
            "Model.training_step returned no loss at step 1",
            "return the loss tensor",
        ),
        (
            "model.py",
            "        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)\n",
            "        return [torch.optim.Adam(self.parameters()), torch.optim.SGD(self.parameters(), lr=0.1)]\n",
            "Model.configure_optimizers returned 2 optimizers; a swarm trains with exactly one",
            "return a single optimizer",
        ),
        (
            "model.py",
            "        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)\n",
            "        opt = torch.optim.Adam(self.parameters())\n"
            "        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)\n"
            '        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "train_loss"}}\n',
            "returned a ReduceLROnPlateau scheduler, which a swarm cannot use",
            "depends on the step count only",
        ),
        (
            "model.py",
            "        self.save_hyperparameters()\n",
            "        self.save_hyperparameters()\n        raise ValueError('no weights here')\n",
            "spirals/model.py line {line}: Model(...) with [model.init_args] raised ValueError: no weights here",
            "fix [model.init_args] in volunteer.toml, or the code at that line",
        ),
        (
            "data.py",
            "        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)\n",
            "        return DataLoader(self.dataset[:0], batch_size=self.batch_size, drop_last=True)\n",
            "spirals/data.py: Data gave 0 batches in 5 epochs; the check needed 5",
            "make the training data loader yield batches",
        ),
        (
            "volunteer.toml",
            'class_path = "model.py:Model"',
            'class_path = "model.py:Modle"',
            "key 'model.class_path': Modle is not defined in model.py",
            "model.py defines: Model",
        ),
        (
            "model.py",
            "class Model(pl.LightningModule):",
            "class Model(pl.LightningModule)",
            "spirals/model.py line 17: syntax error",
            "python -m py_compile model.py",
        ),
    ],
    ids=[
        "exception",
        "nan loss",
        "no loss",
        "two optimizers",
        "plateau",
        "init raises",
        "no batches",
        "bad class",
        "syntax",
    ],
)
def test_failures_are_one_line_with_a_hint(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    old: str,
    new: str,
    error: str,
    hint: str,
) -> None:
    _edit(project / file, old, new)
    lines = (project / file).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if new.splitlines()[-1].strip() in text)
    code = main(["check", "spirals"])
    assert_user_error(capsys, code, error.format(line=line), hint)


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (["check", "spirals", "--steps", "-1"], "--steps: '-1' must be 0 or more", "fix the value of --steps"),
        (["check", "spirals", "--batch-size", "0"], "--batch-size: '0' must be greater than 0", "--batch-size"),
        (["check", "spirals", "--device", "tpu"], "--device: 'tpu' is not a device", "--device"),
        (["check", "./nowhere"], "project folder './nowhere' does not exist", "check the path"),
        (["check"], "the following arguments are required: DIR|ID", "volunteer check --help"),
    ],
)
def test_bad_flags(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str) -> None:
    assert_user_error(capsys, main(argv), error, hint)
