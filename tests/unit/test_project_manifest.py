"""The manifest model: the documented example, the demo, defaults, and what each mistake says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.projects import DOCS, doc_examples, manifest, to_toml
from volunteer.errors import ProjectError
from volunteer.project import Manifest, parse_manifest, read_manifest
from volunteer.project.prepare import DEMO_ROOT


def _error(changes: dict[str, object]) -> ProjectError:
    with pytest.raises(ProjectError) as caught:
        parse_manifest(to_toml(manifest(changes)), "proj/volunteer.toml")
    return caught.value


def test_documented_example_is_complete_and_valid() -> None:
    examples = doc_examples()
    assert set(examples) == {"volunteer.toml", "model.py", "data.py", "peers.txt"}
    parsed = parse_manifest(examples["volunteer.toml"], "docs example")
    assert parsed.model.class_path == "model.py:SpiralNet"
    assert parsed.data.kind == "datamodule" and parsed.peers.file == "peers.txt"


def test_documented_keys_match_the_model() -> None:
    """Every key of the model appears in the reference tables of docs/projects.md, and no other."""
    from pydantic import BaseModel

    text = DOCS.read_text(encoding="utf-8")
    reference = text[text.index("## The manifest, key by key") : text.index("### Paths")]
    documented = set(re.findall(r"^\| `([a-z_]+)`", reference, flags=re.M))
    keys: set[str] = set()
    for name, field in Manifest.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys |= set(section.model_fields)
        else:
            keys.add(name)
    assert keys == documented


def test_demo_manifest() -> None:
    demo = read_manifest(DEMO_ROOT / "volunteer.toml", "demo:volunteer.toml")
    assert demo.model.class_path == "model.py:DemoClassifier"
    assert demo.data.datamodule == "model.py:TeacherData"
    assert demo.hivemind.matchmaking_time > 3  # above hivemind's request timeout: no deadlock warning
    assert demo.target_batch_size >= 1000 * demo.batch_size


def test_defaults() -> None:
    minimal = manifest({"hivemind": None, "requirements": None, "precision": None})
    parsed = parse_manifest(to_toml(minimal), "x")
    assert parsed.precision is None and parsed.description == ""
    assert (parsed.hivemind.matchmaking_time, parsed.hivemind.averaging_timeout) == (5.0, 30.0)
    assert parsed.hivemind.grad_compression == "none"
    assert parsed.data.batch_size_arg == "batch_size"
    assert (parsed.peers.file, parsed.peers.url) == (None, None)
    assert parsed.requirements.gpu == "optional" and parsed.requirements.min_client_version is None


def test_dataloader_function_instead_of_datamodule() -> None:
    parsed = parse_manifest(
        to_toml(manifest({"data": {"dataloader": "data.py:make_loader", "batch_size_arg": "bs"}})), "x"
    )
    assert parsed.data.kind == "dataloader" and parsed.data.ref.file == "data.py"
    assert parsed.data.ref.name == "make_loader"


def test_strategy_kwargs() -> None:
    from hivemind.compression import Float16Compression, NoCompression

    parsed = parse_manifest(to_toml(manifest()), "x")
    kwargs = parsed.strategy_kwargs()
    assert kwargs["run_id"] == "tiny-test" and kwargs["target_batch_size"] == 256
    assert (kwargs["matchmaking_time"], kwargs["averaging_timeout"]) == (4.0, 20.0)
    assert isinstance(kwargs["grad_compression"], Float16Compression)
    assert isinstance(kwargs["state_averaging_compression"], NoCompression)


@pytest.mark.parametrize(
    ("changes", "message", "hint"),
    [
        ({"batch_size": True}, "key 'batch_size' must be a whole number, got true", "batch_size = 32"),
        ({"batch_size": "32"}, "key 'batch_size' must be a whole number, got the string '32'", "batch_size = 32"),
        ({"hivemind.matchmaking_time": "5"}, "must be a number", "under [hivemind]"),
        ({"model": "model.py:TinyModel"}, "key 'model' must be a table", "class_path"),
        ({"model.init_args": 3}, "key 'model.init_args' must be a table", "init_args = { hidden_dim = 128 }"),
        ({"modle": {}}, "unknown key 'modle'", "did you mean 'model'?"),
        (
            {"hivemind.averaging_timeout": 2.0},
            "key 'hivemind.averaging_timeout': averaging_timeout (2) must be longer than matchmaking_time (4)",
            "averaging_timeout = 30.0",
        ),
        (
            {"data.init_args": {"batch_size": 4}},
            "key 'data.init_args': init_args sets 'batch_size'",
            "--batch-size",
        ),
        ({"data.datamodule": None}, "give exactly one of datamodule or dataloader", "either"),
        ({"model.class_path": "my-model.py:Net"}, "'my-model' is not a Python module name", "my_model"),
        ({"model.class_path": "model.txt:Net"}, "'model.txt' is not a Python file", "a .py file"),
        ({"model.class_path": "model.py:1Net"}, "'1Net' in 'model.py:1Net' is not a Python name", "class_path ="),
        ({"model.class_path": "src\\model.py:Net"}, "uses backslashes", "separate folders with '/'"),
        ({"run_id": ""}, "key 'run_id': '' is not a run id", "letters, digits"),
        ({"name": "  "}, "key 'name': '  ' is not a usable project name", "write one line"),
        ({"requirements.min_client_version": "latest"}, "'latest' is not a version number", '"0.1.0"'),
        ({"requirements.min_gpu_memory_gb": -1}, "must be at least 0", "min_gpu_memory_gb = 8"),
        ({"precision": "16"}, "key 'precision' must be one of '32-true', '16-mixed' or 'bf16-mixed'", "16-mixed"),
        ({"peers.url_timeout": 0}, "key 'peers.url_timeout' must be greater than 0", "url_timeout = 5.0"),
    ],
)
def test_mistakes(changes: dict[str, object], message: str, hint: str) -> None:
    error = _error(changes)
    assert error.message.startswith("proj/volunteer.toml: ")
    assert message in error.message
    assert hint in (error.hint or "")
    assert "\n" not in error.message and "\n" not in (error.hint or "")


def test_several_mistakes_are_counted() -> None:
    error = _error({"run_id": 3, "batch_size": "x", "extra": 1})
    assert error.message.endswith("(and 2 more problems)")


def test_unreadable_manifest(tmp_path: Path) -> None:
    path = tmp_path / "volunteer.toml"
    path.write_bytes(b"name = \xff\n")
    with pytest.raises(ProjectError, match="cannot be read"):
        read_manifest(path, "x")
