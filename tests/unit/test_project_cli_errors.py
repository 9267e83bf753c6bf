"""Bad projects, through the real CLI: each ends in one ``error:`` line, one ``hint:`` line and status 2.

All of them fail inside ``prepare_project``, before any training (and before torch is imported).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.projects import DELETE, MODEL_PY, assert_user_error, isolate_environment, write_project
from volunteer.cli import main

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


def _project(
    changes: dict[str, Any] | None = None, files: dict[str, str | None] | None = None
) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        return str(write_project(tmp_path / "proj", changes, files))

    return make


def _fixed(project_id: str) -> Callable[[Path], str]:
    return lambda tmp_path: project_id


NOT_A_MODULE = "from torch import nn\n\n\nclass TinyModel(nn.Module):\n    pass\n"

# (id, project, extra argv, text in the error line, text in the hint line)
CASES: list[tuple[str, Callable[[Path], str], list[str], str, str]] = [
    ("empty id", _fixed(""), [], "--project is empty", "org/name"),
    ("unknown word", _fixed("nosuchproject"), [], "unknown project 'nosuchproject'", "my-lab/nosuchproject"),
    ("bad hub id", _fixed("org/na me"), [], "is not a Hugging Face Hub repository id", "./org/na me"),
    ("too many slashes", _fixed("a/b/c"), [], "'a/b/c' is not a Hugging Face Hub repository id", "org/name"),
    ("empty revision", _fixed("org/name@"), [], "names no revision", "org/name@<branch"),
    ("missing folder", _fixed("./nowhere"), [], "project folder './nowhere' does not exist", "check the path"),
    (
        "no manifest",
        _project(files={"volunteer.toml": None}),
        [],
        "the project has no volunteer.toml",
        "docs/projects.md",
    ),
    (
        "toml syntax",
        _project(files={"volunteer.toml": 'name = "x\nrun_id = 3\n'}),
        [],
        "volunteer.toml: not valid TOML",
        "strings need quotes",
    ),
    ("missing run_id", _project({"run_id": DELETE}), [], "missing key 'run_id'", 'add run_id = "mnist-v1"'),
    ("missing [model]", _project({"model": DELETE}), [], "missing section [model]", "class_path"),
    (
        "wrong type",
        _project({"target_batch_size": "many"}),
        [],
        "key 'target_batch_size' must be a whole number, got the string 'many'",
        "target_batch_size = 4096",
    ),
    (
        "not positive",
        _project({"batch_size": 0}),
        [],
        "key 'batch_size' must be greater than 0",
        "batch_size = 32",
    ),
    (
        "unknown key",
        _project({"hivemind.matchmaking": 5.0}),
        [],
        "unknown key 'hivemind.matchmaking'",
        "did you mean 'matchmaking_time'?",
    ),
    (
        "top-level key in a section",
        _project({"hivemind.run_id": "x"}),
        [],
        "unknown key 'hivemind.run_id'",
        "move run_id = ... above the first [section]",
    ),
    (
        "bad compression",
        _project({"hivemind.grad_compression": "fp16"}),
        [],
        "key 'hivemind.grad_compression' must be one of 'none', 'float16'",
        'grad_compression = "float16"',
    ),
    (
        "batch larger than target",
        _project({"batch_size": 512}),
        [],
        "batch_size (512) is larger than target_batch_size (256)",
        "raise target_batch_size",
    ),
    (
        "path leaves the project",
        _project({"model.class_path": "../model.py:TinyModel"}),
        [],
        "key 'model.class_path': '../model.py' leaves the project folder",
        "without '..'",
    ),
    (
        "absolute path",
        _project({"peers.file": "/etc/hosts"}),
        [],
        "key 'peers.file': '/etc/hosts' leaves the project folder",
        "relative path",
    ),
    (
        "no class separator",
        _project({"model.class_path": "model.py"}),
        [],
        'is not of the form "file.py:Name"',
        'class_path = "model.py:MyModel"',
    ),
    (
        "file not found",
        _project({"model.class_path": "models.py:TinyModel"}),
        [],
        "key 'model.class_path': file models.py does not exist",
        "model.py",
    ),
    (
        "class not found",
        _project({"model.class_path": "model.py:BigModel"}),
        [],
        "BigModel is not defined in model.py",
        "model.py defines: TinyModel",
    ),
    (
        "not a LightningModule",
        _project(files={"model.py": NOT_A_MODULE}),
        [],
        "TinyModel in model.py is not a LightningModule (it derives from nn.Module)",
        "lightning.pytorch.LightningModule",
    ),
    (
        "function, not class",
        _project({"model.class_path": "data.py:make_loader"}),
        [],
        "make_loader in data.py is a function, not a LightningModule class",
        "subclass of lightning.pytorch.LightningModule",
    ),
    (
        "class where a function is needed",
        _project({"data.datamodule": DELETE, "data.dataloader": "data.py:TinyData"}),
        [],
        "TinyData in data.py is a class, not a function",
        "data.datamodule",
    ),
    (
        "both data sources",
        _project({"data.dataloader": "data.py:make_loader"}),
        [],
        "give exactly one of datamodule or dataloader, not both",
        "either datamodule",
    ),
    (
        "unknown init argument",
        _project({"model.init_args": {"widht": 4}}),
        [],
        "TinyModel in model.py takes no argument 'widht'",
        "takes: lr, width",
    ),
    (
        "batch size argument missing",
        _project({"data.batch_size_arg": "bs"}),
        [],
        "key 'data.batch_size_arg': TinyData in data.py takes no argument 'bs'",
        "add a bs parameter",
    ),
    (
        "syntax error in code",
        _project(files={"model.py": "class TinyModel(:\n"}),
        [],
        "/proj/model.py line 1: syntax error",
        "python -m py_compile model.py",
    ),
    (
        "required init argument missing",
        _project({"model.init_args": {}}, files={"model.py": MODEL_PY.replace("width: int = 4", "width: int")}),
        [],
        "key 'model.init_args': TinyModel in model.py needs argument 'width', which is not given",
        "add width = ... under [model.init_args]",
    ),
    (
        "client too old",
        _project({"requirements.min_client_version": "99.0"}),
        [],
        "the project needs volunteer 99.0 or newer",
        "upgrade volunteer",
    ),
    (
        "bad gpu requirement",
        _project({"requirements.gpu": "yes"}),
        [],
        "key 'requirements.gpu' must be one of 'required' or 'optional', got the string 'yes'",
        'gpu = "optional"',
    ),
    (
        "bad peers file line",
        _project({"peers.file": "peers.txt"}, files={"peers.txt": "# peers\n/ip4/1.2.3.4/tcp/31337\n"}),
        [],
        "invalid peer address '/ip4/1.2.3.4/tcp/31337' (from",
        "one full multiaddress a line",
    ),
    (
        "missing peers file",
        _project({"peers.file": "peers.txt"}),
        [],
        "key 'peers.file': peers.txt does not exist in the project",
        "add peers.txt",
    ),
    (
        "bad peers url",
        _project({"peers.url": "ftp://example.org/peers"}),
        [],
        "key 'peers.url': 'ftp://example.org/peers' is not an http(s) URL",
        'url = "https://',
    ),
    (
        "unknown training mode",
        _project({"training.mode": "async"}),
        [],
        "key 'training.mode' must be one of 'sync', 'local' or 'diloco', got the string 'async'",
        'mode = "sync" under [training]',
    ),
    (
        "powersgd with diloco",
        _project({"training.mode": "diloco", "hivemind.grad_compression": "powersgd"}),
        [],
        "key 'hivemind.grad_compression': grad_compression = \"powersgd\" compresses gradient averaging, which "
        'mode "diloco" does not do',
        'use mode = "sync" with PowerSGD',
    ),
    (
        "powersgd with local",
        _project({"training.mode": "local", "hivemind.grad_compression": "powersgd"}),
        [],
        'which mode "local" does not do',
        "state_averaging_compression",
    ),
    (
        "diloco setting in sync mode",
        _project({"training.inner_steps": 50}),
        [],
        'key \'training.inner_steps\': inner_steps is a setting of mode "diloco", but mode is "sync"',
        'set mode = "diloco" under [training], or remove inner_steps',
    ),
    (
        "reuse_grad_buffers with local updates",
        _project({"training.mode": "local", "hivemind.reuse_grad_buffers": True, "hivemind.grad_compression": "none"}),
        [],
        "key 'hivemind.reuse_grad_buffers': reuse_grad_buffers cannot be used in mode \"local\"",
        "remove reuse_grad_buffers",
    ),
    (
        "outer momentum out of range",
        _project({"training.mode": "diloco", "training.outer_momentum": 1.0}),
        [],
        "key 'training.outer_momentum' must be less than 1",
        "outer_momentum = 0.9 under [training]",
    ),
    (
        "powersgd_rank without powersgd",
        _project({"hivemind.powersgd_rank": 2}),
        [],
        "key 'hivemind.powersgd_rank': powersgd_rank is set but grad_compression is \"float16\"",
        'set grad_compression = "powersgd"',
    ),
    (
        "bad --initial-peers",
        _project(),
        ["--initial-peers", "/ip4/1.2.3.4/tcp/1"],
        "invalid peer address '/ip4/1.2.3.4/tcp/1'",
        "/p2p/",
    ),
]


@pytest.mark.parametrize(("make", "argv", "error", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_project_is_one_line_error_with_hint(
    make: Callable[[Path], str],
    argv: list[str],
    error: str,
    hint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = make(tmp_path)
    code = main(["--project", project, "--data-dir", str(tmp_path / "data"), "--status-port", "0", *argv])
    assert_user_error(capsys, code, error, hint)


def test_errors_name_the_manifest_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "proj", {"run_id": "has spaces"})
    code = main(["--project", str(root), "--data-dir", str(tmp_path / "data"), "--status-port", "0"])
    error, _ = assert_user_error(capsys, code, "key 'run_id': 'has spaces' is not a run id", 'run_id = "mnist-v1"')
    assert error.startswith(f"error: {root / 'volunteer.toml'}: ")


def test_preparation_fails_before_torch_is_imported(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = write_project(tmp_path / "proj", {"model.class_path": "model.py:Nope"})
    script = (
        "import sys\n"
        "from volunteer.cli import main\n"
        f"code = main(['--project', {str(root)!r}, '--data-dir', {str(tmp_path / 'data')!r}, '--status-port', '0'])\n"
        "heavy = [m for m in ('torch', 'lightning', 'hivemind') if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "2 []", result.stdout + result.stderr
