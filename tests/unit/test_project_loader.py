"""Building a project: isolated import, module and data creation, and errors in the project's code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.projects import DATA_PY, MODEL_PY, doc_examples, isolate_environment, write_project
from volunteer.datadir import DataDir
from volunteer.errors import ProjectError
from volunteer.project import BuiltProject, PreparedProject, prepare_project
from volunteer.project.loader import build_project, package_name
from volunteer.settings import Settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


def _prepare(root: Path, tmp_path: Path) -> PreparedProject:
    return prepare_project(Settings(project=str(root)), DataDir.open(tmp_path / "data"))


def _build(
    tmp_path: Path, changes: dict[str, object] | None = None, files: dict[str, str | None] | None = None
) -> BuiltProject:
    root = write_project(tmp_path / "proj", changes, files)
    return build_project(_prepare(root, tmp_path).project)


def _build_error(
    tmp_path: Path, files: dict[str, str | None], changes: dict[str, object] | None = None
) -> ProjectError:
    with pytest.raises(ProjectError) as caught:
        _build(tmp_path, changes, files)
    assert "\n" not in caught.value.message and caught.value.hint
    return caught.value


def test_demo_builds_from_the_package(tmp_path: Path) -> None:
    from volunteer.demo.model import DemoClassifier, TeacherData

    prepared = prepare_project(Settings(project="demo"), DataDir.open(tmp_path / "data"))
    assert (prepared.project.repo, prepared.project.revision, prepared.project.kind) == ("demo", "", "builtin")
    assert prepared.project.files == ("__init__.py", "model.py")
    built = build_project(prepared.project, 16)
    assert type(built.module) is DemoClassifier and type(built.datamodule) is TeacherData
    assert built.datamodule.batch_size == 16 and built.batch_size == 16
    assert built.module.hparams.hidden_dim == 128


def test_local_project_with_datamodule(tmp_path: Path) -> None:
    path_before = list(sys.path)
    built = _build(tmp_path)
    assert sys.path == path_before
    assert type(built.module).__name__ == "TinyModel" and built.module.layer.in_features == 4
    assert built.datamodule is not None and built.datamodule.batch_size == 8 and built.train_dataloaders is None
    assert type(built.module).__module__.startswith("volunteer_project_proj_")
    assert "model" not in sys.modules and "data" not in sys.modules and "helpers" not in sys.modules


def test_dataloader_function(tmp_path: Path) -> None:
    built = _build(
        tmp_path,
        {"data.datamodule": None, "data.dataloader": "data.py:make_loader", "data.init_args": {"size": 32}},
    )
    assert built.datamodule is None and built.train_dataloaders.batch_size == 8
    assert len(built.train_dataloaders.dataset) == 32


def test_code_in_subfolders_and_package_init(tmp_path: Path) -> None:
    files = {
        "__init__.py": "from .src.nets import TinyModel as Exported\n",
        "src/nets.py": MODEL_PY,
        "src/loading/data.py": DATA_PY.replace("from .helpers", "from ...helpers"),
    }
    built = _build(
        tmp_path,
        {"model.class_path": "src/nets.py:TinyModel", "data.datamodule": "src/loading/data.py:TinyData"},
        files,
    )
    package = sys.modules[type(built.module).__module__.rsplit(".", 2)[0]]
    assert package.Exported is type(built.module)


def test_two_projects_with_the_same_file_names_do_not_clash(tmp_path: Path) -> None:
    first = write_project(tmp_path / "a" / "proj")
    second = write_project(tmp_path / "b" / "proj", files={"model.py": MODEL_PY.replace("model-v1", "model-v2")})
    one = build_project(_prepare(first, tmp_path).project)
    two = build_project(_prepare(second, tmp_path).project)
    assert type(one.module).__module__ != type(two.module).__module__
    assert sys.modules[type(one.module).__module__].VERSION == "model-v1"
    assert sys.modules[type(two.module).__module__].VERSION == "model-v2"


def test_edited_local_code_is_imported_afresh(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    before = package_name(_prepare(root, tmp_path).project)
    (root / "model.py").write_text(MODEL_PY.replace("model-v1", "model-v2"))
    after = _prepare(root, tmp_path)
    assert package_name(after.project) != before
    assert sys.modules[type(build_project(after.project).module).__module__].VERSION == "model-v2"


def test_documented_example_trains(tmp_path: Path) -> None:
    import lightning as L

    root = tmp_path / "spirals"
    root.mkdir()
    for name, text in doc_examples().items():
        (root / name).write_text(text)
    prepared = _prepare(root, tmp_path)
    assert prepared.project.files == ("data.py", "model.py")
    built = build_project(prepared.project)
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(built.module, datamodule=built.datamodule)
    assert trainer.global_step == 2


# errors in the project's code


def test_absolute_import_of_a_sibling_file(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {"data.py": DATA_PY.replace("from .helpers import", "from helpers import")})
    assert error.message.endswith(
        "data.py line 4: 'import helpers' looks for a top-level module, but helpers is a file of the project"
    )
    assert "from .helpers import ..." in (error.hint or "")


def test_missing_package(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {"model.py": "import not_installed_package_xyz\n" + MODEL_PY})
    assert "model.py line 1: importing model.py needs the Python package 'not_installed_package_xyz'" in error.message
    assert "pip install not_installed_package_xyz" in (error.hint or "")


def test_syntax_error_in_an_imported_helper(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {"helpers.py": "def make_dataset(:\n"})
    assert error.message == f"{tmp_path / 'proj' / 'helpers.py'} line 1: syntax error: invalid syntax"
    assert "python -m py_compile helpers.py" in (error.hint or "")


def test_exception_at_import_time(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {"helpers.py": "x = 1\nraise RuntimeError('no GPU found')\n"})
    assert error.message.endswith("helpers.py line 2: importing data.py raised RuntimeError: no GPU found")


def test_exception_in_init(tmp_path: Path) -> None:
    model = MODEL_PY.replace(
        "        self.lr = lr\n", "        self.lr = lr\n        raise ValueError('lr too high')\n"
    )
    error = _build_error(tmp_path, {"model.py": model})
    assert error.message.endswith(
        "model.py line 11: TinyModel(...) with [model.init_args] raised ValueError: lr too high"
    )
    assert "fix [model.init_args] in volunteer.toml" in (error.hint or "")


def test_wrong_init_argument_value(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {}, {"model.init_args": {"width": "four"}})
    assert "model.py line 9: TinyModel(...) with [model.init_args] raised TypeError" in error.message


def test_init_arguments_checked_at_creation_when_inherited(tmp_path: Path) -> None:
    model = MODEL_PY + "\n\nclass Child(TinyModel):\n    pass\n"
    error = _build_error(
        tmp_path, {"model.py": model}, {"model.class_path": "model.py:Child", "model.init_args": {"depth": 2}}
    )
    assert "key 'model.init_args': Child(...) with [model.init_args] failed: TypeError" in error.message
    assert "depth" in error.message


BASE_PY = "from torch import nn\n\n\nclass Base(nn.Module):\n    pass\n"
INDIRECT_MODEL_PY = """\
from .base import Base


class TinyModel(Base):
    def __init__(self, width: int = 4):
        super().__init__()
"""


def test_not_a_lightning_module_found_at_import(tmp_path: Path) -> None:
    error = _build_error(tmp_path, {"base.py": BASE_PY, "model.py": INDIRECT_MODEL_PY})
    assert (
        "key 'model.class_path': TinyModel in model.py is not a LightningModule (it is a class deriving from base.Base)"
        in error.message
    )
    assert "lightning.pytorch.LightningModule" in (error.hint or "")


def test_not_a_datamodule_found_at_import(tmp_path: Path) -> None:
    files = {
        "data.py": DATA_PY.replace(
            "from .helpers import make_dataset", "from .helpers import make_dataset as TinyData\n"
        )
    }
    files["data.py"] = files["data.py"].replace(
        "class TinyData(pl.LightningDataModule)", "class Unused(pl.LightningDataModule)"
    )
    error = _build_error(tmp_path, files)
    assert "TinyData in data.py is not a LightningDataModule (it is a function)" in error.message


def test_dataloader_function_returning_none(tmp_path: Path) -> None:
    files = {"data.py": DATA_PY + "\n\ndef nothing(batch_size):\n    return None\n"}
    error = _build_error(
        tmp_path, files, {"data.datamodule": None, "data.dataloader": "data.py:nothing", "data.init_args": {}}
    )
    assert "nothing() in data.py returned None" in error.message
