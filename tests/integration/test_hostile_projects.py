"""A project author who is not to be trusted: code that would run without being shown, and downloads without bound.

The real huggingface_hub client downloads from the Hub-compatible server in tests/support/hubserver.py.
"""

from __future__ import annotations

import importlib.machinery
import os
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hubserver import HubRepo, HubServer
from tests.support.projects import isolate_environment, project_files, write_project
from volunteer.datadir import DataDir
from volunteer.errors import ProjectError, TrustError
from volunteer.project import PreparedProject, ResolvedProject, prepare_project, resolve_project
from volunteer.project.files import MAX_CODE_FILE_BYTES, MAX_CODE_FILES, MAX_FILES
from volunteer.project.loader import build_project, import_file
from volunteer.settings import Settings

pytestmark = pytest.mark.timeout(120)

EVIL_MODEL = project_files()["model.py"].replace('VERSION = "model-v1"', 'VERSION = "evil"')


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.open(tmp_path / "data")


def unchecked_pyc(tmp_path: Path, source: str) -> bytes:
    """Bytecode Python imports without comparing it with any source: the attack on a remembered consent."""
    src = tmp_path / "evil_src.py"
    src.write_text(source)
    out = tmp_path / "evil.pyc"
    py_compile.compile(str(src), str(out), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return out.read_bytes()


def pyc_name(module: str) -> str:
    return f"__pycache__/{module}.{sys.implementation.cache_tag}.pyc"


def downloads(hub: HubServer) -> list[str]:
    return [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]


def _prepare(hub: HubServer, data_dir: DataDir, project: str = "lab/tiny", **options: object) -> PreparedProject:
    return prepare_project(Settings(project=project, endpoint=hub.url, **options), data_dir)  # type: ignore[arg-type]


def _version(prepared: PreparedProject) -> str:
    return sys.modules[type(build_project(prepared.project).module).__module__].VERSION


# compiled code next to the source


def test_a_later_commit_adding_bytecode_is_refused_before_download(
    hub: HubServer, data_dir: DataDir, tmp_path: Path
) -> None:
    repo = hub.add_repo("lab/tiny")
    repo.commit(project_files())
    first = _prepare(hub, data_dir, trust=True)
    assert first.consent == "--trust" and _version(first) == "model-v1"

    # the new commit keeps every .py file and the manifest: the old digest would call it "remembered"
    repo.commit({pyc_name("model"): unchecked_pyc(tmp_path, EVIL_MODEL)})
    hub.requests.clear()
    with pytest.raises(ProjectError) as caught:
        _prepare(hub, data_dir)
    assert f"{pyc_name('model')}: the project holds compiled Python in a __pycache__ folder" in caught.value.message
    assert "Python source only" in (caught.value.hint or "")
    assert not any(".pyc" in path for path in downloads(hub)), "refused from the listing, never downloaded"


@pytest.mark.parametrize(
    "name",
    ["model.abi3.so", f"model{importlib.machinery.EXTENSION_SUFFIXES[0]}", "model.pyd", "helpers.so.1", "evil.pth"],
)
def test_native_extension_stand_ins_are_refused(hub: HubServer, data_dir: DataDir, name: str) -> None:
    # not a real library: nothing of it may be downloaded or loaded, whatever it holds
    hub.add_repo("lab/native").commit(project_files(files={name: "\x7fELF not really"}))
    with pytest.raises(ProjectError, match=rf"{name}: the project holds (a native|a \.pth)"):
        _prepare(hub, data_dir, project="lab/native", trust=True)
    assert not any(name in path for path in downloads(hub))


def test_a_local_folder_with_a_native_extension_is_refused(tmp_path: Path, data_dir: DataDir) -> None:
    root = write_project(tmp_path / "proj", files={"model.abi3.so": "\x7fELF"})
    with pytest.raises(ProjectError, match=r"model\.abi3\.so: the project holds a native library"):
        resolve_project(Settings(project=str(root)), data_dir)


def test_the_loader_imports_source_only_and_writes_no_bytecode(
    tmp_path: Path, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    root = write_project(tmp_path / "proj")
    project = resolve_project(Settings(project=str(root)), data_dir)
    # planted after the checks: bytecode that Python would take over model.py, and a broken extension module
    (root / "__pycache__").mkdir()
    (root / pyc_name("model")).write_bytes(unchecked_pyc(tmp_path, EVIL_MODEL))
    (root / "helpers.abi3.so").write_bytes(b"\x7fELF not a library")
    model = import_file(project, "model.py")
    assert model.VERSION == "model-v1"
    import_file(project, "data.py")  # imports .helpers: from helpers.py, not the .so
    assert sorted(p.name for p in (root / "__pycache__").iterdir()) == [Path(pyc_name("model")).name]


def test_a_hub_snapshot_gets_no_bytecode_written_into_it(
    hub: HubServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as for a volunteer (tests may run with it set)
    hub.add_repo("lab/tiny").commit(project_files(files={"pkg/__init__.py": "", "pkg/extra.py": "X = 1\n"}))
    prepared = _prepare(hub, data_dir, trust=True)
    build_project(prepared.project)
    import_file(prepared.project, "pkg/extra.py")
    written = [p for p in prepared.project.root.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    assert written == []


# consent covers every Python file


@pytest.mark.parametrize("name", [".hidden/tool.py", "venv/site.py", "node_modules/x.py"])
def test_python_files_in_any_folder_are_code(hub: HubServer, data_dir: DataDir, name: str) -> None:
    repo = hub.add_repo("lab/tiny")
    repo.commit(project_files())
    _prepare(hub, data_dir, trust=True)
    repo.commit({name: "import os\n"})
    with pytest.raises(TrustError) as caught:
        _prepare(hub, data_dir)
    assert name in caught.value.message, "a new Python file anywhere asks again, and is listed"


def test_the_consent_prompt_lists_every_python_file(hub: HubServer, data_dir: DataDir) -> None:
    extra = {f"lib/mod{i:03d}.py": f"N = {i}\n" for i in range(40)}
    hub.add_repo("lab/tiny").commit(project_files(files=extra))
    asked: list[ResolvedProject] = []
    with pytest.raises(TrustError) as caught:
        _prepare(hub, data_dir, trust=False)
    with pytest.raises(TrustError):
        prepare_project(
            Settings(project="lab/tiny", endpoint=hub.url), data_dir, ask_consent=lambda p: asked.append(p) or False
        )
    expected = sorted(["data.py", "helpers.py", "model.py", *extra])
    assert list(asked[0].files) == expected and asked[0].info().files == tuple(expected)
    assert f"43 Python files: {', '.join(expected)})" in caught.value.message


# what is downloaded before consent


def test_only_the_manifest_and_code_come_before_consent(hub: HubServer, data_dir: DataDir) -> None:
    big = os.urandom(2_000_000)
    hub.add_repo("lab/tiny").commit(
        project_files({"peers.file": "peers.txt"}, {"peers.txt": "# none yet\n", "data/train.bin": big})  # type: ignore[dict-item]
    )
    with pytest.raises(TrustError) as caught:
        _prepare(hub, data_dir)
    fetched = downloads(hub)
    assert not any("train.bin" in p or "peers.txt" in p for p in fetched), fetched
    assert {p.rsplit("/", 1)[-1] for p in fetched} == {"volunteer.toml", "data.py", "helpers.py", "model.py"}
    assert "also 2 data files (2.0 MB) that the code may read" in caught.value.message

    prepared = _prepare(hub, data_dir, trust=True)
    assert (prepared.project.root / "data" / "train.bin").read_bytes() == big
    assert prepared.project.complete and prepared.project.data_files == 2


def _commit_many(repo: HubRepo, files: dict[str, str | bytes]) -> None:
    repo.commit({**project_files(), **files})


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({f"d/{i}.txt": "" for i in range(MAX_FILES)}, f"holds more than {MAX_FILES:,} files"),
        ({f"m{i}.py": "" for i in range(MAX_CODE_FILES)}, f"more than the {MAX_CODE_FILES} allowed"),
        ({"huge.py": "#" * (MAX_CODE_FILE_BYTES + 1)}, "huge.py: the Python file is 1,000,001 bytes"),
        ({"volunteer.toml": project_files()["volunteer.toml"] + "#" * 70_000}, "the manifest is"),
        ({"a\x1b]0;pwned\x07.py": ""}, "whose name cannot be shown safely"),
    ],
    ids=["too-many-files", "too-many-python-files", "python-file-too-large", "manifest-too-large", "escape-in-name"],
)
def test_limits_refuse_before_any_download(
    hub: HubServer, data_dir: DataDir, files: dict[str, str], error: str
) -> None:
    _commit_many(hub.add_repo("lab/big"), files)
    with pytest.raises(ProjectError, match=error.replace("(", r"\(").replace(".", r"\.")) as caught:
        _prepare(hub, data_dir, project="lab/big", trust=True)
    assert caught.value.hint
    assert downloads(hub) == [], "nothing is downloaded from a repository over the limits"


# the cached snapshot


def test_a_link_leaving_the_snapshot_is_refused(hub: HubServer, data_dir: DataDir, tmp_path: Path) -> None:
    sha = hub.add_repo("lab/tiny").commit(project_files())
    prepared = _prepare(hub, data_dir, project=f"lab/tiny@{sha}", trust=True)
    outside = tmp_path / "outside.py"
    outside.write_text(EVIL_MODEL)
    model = prepared.project.root / "model.py"
    model.unlink()
    model.symlink_to(outside)
    with pytest.raises(ProjectError, match=r"model\.py: is a link that leads out of the project.s snapshot"):
        _prepare(hub, data_dir, project=f"lab/tiny@{sha}")


def test_bytecode_an_older_client_wrote_into_a_snapshot_is_removed(hub: HubServer, data_dir: DataDir) -> None:
    sha = hub.add_repo("lab/tiny").commit(project_files())
    root = _prepare(hub, data_dir, project=f"lab/tiny@{sha}", trust=True).project.root
    (root / "__pycache__").mkdir()
    (root / pyc_name("model")).write_bytes(b"stale")
    again = _prepare(hub, data_dir, project=f"lab/tiny@{sha}")
    assert again.consent == "remembered" and not (root / "__pycache__").exists()
    assert again.project.files == ("data.py", "helpers.py", "model.py")


# the volunteer's Hub token


SEES_TOKEN = (
    "\nimport os as _os\nfrom pathlib import Path as _Path\n\n"
    "for _name in ('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'):\n"
    "    with (_Path(__file__).parent / 'seen.txt').open('a') as _f:\n"
    '        _f.write(f"{_name}={_os.environ.get(_name)}\\n")\n'
)


def test_check_runs_project_code_without_the_hub_token(
    hub: HubServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volunteer.authoring.check import check_project

    hub.add_repo("lab/secret", private=True, readers=("hf_reader",)).commit(
        project_files(files={"model.py": project_files()["model.py"] + SEES_TOKEN})
    )
    monkeypatch.setenv("HF_TOKEN", "hf_reader")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_reader")
    settings = Settings(project="lab/secret", endpoint=hub.url, trust=True)
    report = check_project(settings, data_dir, steps=0)
    seen = (data_dir.hub_cache / "models--lab--secret" / "snapshots" / report.revision / "seen.txt").read_text()
    assert seen == "HF_TOKEN=None\nHUGGING_FACE_HUB_TOKEN=None\n"
    assert os.environ["HF_TOKEN"] == "hf_reader", "put back for what follows (publish uploads with it)"


def test_the_training_process_runs_without_the_hub_token_and_writes_no_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tests.integration.volunteers import FIXTURES, Volunteer, wait_for

    root = tmp_path / "project"
    shutil.copytree(FIXTURES / "tiny_project", root)
    (root / "model.py").write_text((root / "model.py").read_text() + SEES_TOKEN)
    monkeypatch.setenv("HF_TOKEN", "hf_volunteer_secret")
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # a volunteer's Python writes bytecode
    volunteer = Volunteer(tmp_path, "a", project=str(root), extra=("--max-steps", "1"))
    try:
        wait_for(lambda: volunteer.proc.popen.poll() is not None, 120, "the one-step contribution to end", [])
        assert volunteer.proc.popen.returncode == 0, volunteer.proc.output()[-3000:]
    finally:
        volunteer.stop()
    assert (root / "seen.txt").read_text().splitlines()[:2] == ["HF_TOKEN=None", "HUGGING_FACE_HUB_TOKEN=None"]
    assert not (root / "__pycache__").exists(), "the training process wrote no bytecode into the project"
