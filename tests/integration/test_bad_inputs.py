"""Every bad input a volunteer or a project can give: one ``error:`` line, one ``hint:`` line, exit 2, no traceback.

Each case builds its input (flags, environment, a project folder, a Hub repository on the local Hub server, a
damaged data directory), runs the real CLI (``volunteer.cli.main``, in this process with its output captured; a
few in a subprocess), and checks the two lines. The count of cases is itself asserted: the suite must try at
least :data:`MIN_CASES` bad inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.hubserver import HubServer
from tests.support.projects import isolate_environment, manifest, project_files, to_toml, write_project
from volunteer.cli import main

pytestmark = pytest.mark.timeout(120)

MIN_CASES = 100
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` for ``volunteer``, after ``prepare`` has built what it names."""

    id: str
    argv: list[str]
    expect: str
    """A piece of the error line (the problem is the one meant, not some other)."""
    prepare: Callable[[Path, HubServer], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False


def run(*flags: str) -> list[str]:
    """A headless run with this case's data directory and no status endpoint (one step, should it ever train)."""
    return ["--headless", "--status-port", "0", "--data-dir", "{data}", "--max-steps", "1", *flags]


def folder(name: str = "proj") -> str:
    return "{tmp}/" + name


def project(changes: dict | None = None, files: dict | None = None, name: str = "proj") -> Callable:
    def make(tmp: Path, hub: HubServer) -> None:
        write_project(tmp / name, changes, files)

    return make


def raw_manifest(text: str | bytes) -> Callable:
    def make(tmp: Path, hub: HubServer) -> None:
        root = write_project(tmp / "proj")
        path = root / "volunteer.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return make


def with_files(files: dict[str, str | bytes], remove: str | None = None) -> Callable:
    def make(tmp: Path, hub: HubServer) -> None:
        root = write_project(tmp / "proj")
        if remove:
            (root / remove).unlink()
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def data_dir(action: Callable[[Path], None]) -> Callable:
    def make(tmp: Path, hub: HubServer) -> None:
        data = tmp / "data"
        data.mkdir(exist_ok=True)
        action(data)

    return make


MODEL = project_files()["model.py"]
DATA = project_files()["data.py"]
TOML = to_toml(manifest())


def model_with(extra: str) -> dict:
    return {"model.py": MODEL + "\n" + extra}


def hub_args(repo: str, *flags: str) -> list[str]:
    return ["--project", repo, "--endpoint", "{hub}", *run(*flags)]


# Hub repositories the cases name, created once
HUB_REPOS: dict[str, dict[str, str | bytes]] = {
    "lab/ok": project_files(),
    "lab/pyc": {**project_files(), "__pycache__/model.cpython-311.pyc": b"\x00" * 16},
    "lab/pyc-root": {**project_files(), "model.pyc": b"\x00" * 16},
    "lab/so": {**project_files(), "model.abi3.so": b"\x7fELF"},
    "lab/cpython-so": {**project_files(), "helpers.cpython-311-x86_64-linux-gnu.so": b"\x7fELF"},
    "lab/pyd": {**project_files(), "model.pyd": b"MZ"},
    "lab/dylib": {**project_files(), "lib/libx.dylib": b"\xcf\xfa"},
    "lab/pth": {**project_files(), "evil.pth": "import os\n"},
    "lab/big-py": {**project_files(), "big.py": "#" * 1_000_001},
    "lab/big-toml": {**project_files(), "volunteer.toml": TOML + "#" * 70_000},
    "lab/many-py": {**project_files(), **{f"m/{i}.py": "" for i in range(501)}},
    "lab/escape": {**project_files(), "a\x1b[2Jb.py": ""},
    "lab/bad-toml": {**project_files(), "volunteer.toml": "name = \n"},
    "lab/missing-class": {**project_files(), "model.py": "X = 1\n"},
    "lab/deep": {**project_files(), "model.py": MODEL + "\nX = " + "+".join(["1"] * 300_000) + "\n"},
}

CASES: list[Case] = [
    # --project ids
    Case("id-empty", ["--project", "", *run()], "--project is empty"),
    Case("id-blank", ["--project", "   ", *run()], "--project is empty"),
    Case("id-unknown-word", ["--project", "nosuchthing", *run()], "unknown project 'nosuchthing'"),
    Case("id-three-parts", ["--project", "a/b/c", *run()], "is not a Hugging Face Hub repository id"),
    Case("id-at-nothing", ["--project", "org/name@", *run()], "names no revision"),
    Case("id-space", ["--project", "org/na me", *run()], "is not a Hugging Face Hub repository id"),
    Case("id-double-slash", ["--project", "org//name", *run()], "is not a Hugging Face Hub repository id"),
    Case("id-dashes", ["--project", "org/a--b", *run()], "is not a Hugging Face Hub repository id"),
    Case("id-dots", ["--project", "org/a..b", *run()], "is not a Hugging Face Hub repository id"),
    Case("id-too-long", ["--project", "org/" + "a" * 100, *run()], "is not a Hugging Face Hub repository id"),
    Case("id-revision-space", ["--project", "org/name@v 1", *run()], "contains spaces"),
    Case("id-missing-folder", ["--project", "./no/such/folder", *run()], "does not exist"),
    Case("id-file-not-folder", ["--project", "{tmp}/proj/model.py", *run()], "is a file, not a folder", project()),
    # flags and their environment twins
    Case("flag-unknown", ["--frobnicate", *run()], "unrecognized arguments: --frobnicate"),
    Case("flag-missing-value", [*run(), "--project"], "expected one argument"),
    Case("batch-zero", ["--batch-size", "0", *run()], "--batch-size: '0' must be greater than 0"),
    Case("batch-negative", ["--batch-size=-4", *run()], "must be greater than 0"),
    Case("batch-word", ["--batch-size", "lots", *run()], "is not a whole number"),
    Case("device-word", ["--device", "gpu", *run()], "is not a device"),
    Case("device-index", ["--device", "cuda:x", *run()], "is not a device"),
    Case("max-steps-zero", run("--max-steps", "0"), "must be greater than 0"),
    Case("max-steps-float", run("--max-steps", "1.5"), "is not a whole number"),
    Case("duration-zero", ["--duration", "0", *run()], "is not a duration"),
    Case("duration-word", ["--duration", "forever", *run()], "is not a duration"),
    Case("duration-unit", ["--duration", "5y", *run()], "is not a duration"),
    Case("log-format", ["--log-format", "xml", *run()], "is not a log format"),
    Case("port-high", ["--status-port", "70000", "--headless", "--data-dir", "{data}"], "is not a port number"),
    Case("port-word", ["--status-port", "http", "--headless", "--data-dir", "{data}"], "is not a port number"),
    Case("peers-garbage", ["--initial-peers", "not-an-address", *run()], "invalid peer address"),
    Case("peers-no-id", ["--initial-peers", "/ip4/1.2.3.4/tcp/1", *run()], "invalid peer address"),
    Case("host-maddrs", ["--host-maddrs", "tcp://0.0.0.0:1", *run()], "--host-maddrs"),
    Case("announce-maddrs", ["--announce-maddrs", "1.2.3.4", *run()], "--announce-maddrs"),
    Case("env-trust", run(), "VOLUNTEER_TRUST", env={"VOLUNTEER_TRUST": "maybe"}),
    Case("env-headless", ["--status-port", "0"], "VOLUNTEER_HEADLESS", env={"VOLUNTEER_HEADLESS": "perhaps"}),
    Case("env-batch", run(), "VOLUNTEER_BATCH_SIZE", env={"VOLUNTEER_BATCH_SIZE": "x"}),
    Case("env-port", ["--headless"], "VOLUNTEER_STATUS_PORT", env={"VOLUNTEER_STATUS_PORT": "-1"}),
    Case("env-device", run(), "VOLUNTEER_DEVICE", env={"VOLUNTEER_DEVICE": "tpu"}),
    Case("env-peers", run(), "invalid peer address", env={"INITIAL_PEERS": "garbage"}),
    Case("env-duration", run(), "VOLUNTEER_DURATION", env={"VOLUNTEER_DURATION": "soon"}),
    # the manifest of a local project
    Case("toml-syntax", ["--project", folder(), *run()], "not valid TOML", raw_manifest("name = \n")),
    Case("toml-not-utf8", ["--project", folder(), *run()], "cannot be read", raw_manifest(b"name = '\xff'\n")),
    Case("toml-null", ["--project", folder(), *run()], "not valid TOML", raw_manifest(TOML + "x = '\x00'\n")),
    Case(
        "toml-5000-arrays",
        ["--project", folder(), *run()],
        "nested too deeply",
        raw_manifest(TOML.replace("[model]", "z = " + "[" * 5000 + "]" * 5000 + "\n[model]", 1)),
    ),
    Case(
        "toml-deep-tables",
        ["--project", folder(), *run()],
        "nested too deeply",
        raw_manifest(TOML.replace("[model]", "z = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n[model]", 1)),
    ),
    Case("toml-too-large", ["--project", folder(), *run()], "the manifest is", raw_manifest(TOML + "#" * 70_000)),
    Case(
        "toml-missing",
        ["--project", folder(), *run()],
        "has no volunteer.toml",
        with_files({}, remove="volunteer.toml"),
    ),
    Case("name-missing", ["--project", folder(), *run()], "missing key 'name'", project({"name": None})),
    Case("name-number", ["--project", folder(), *run()], "key 'name' must be", project({"name": 5})),
    Case("name-empty", ["--project", folder(), *run()], "is not a usable project name", project({"name": " "})),
    Case("name-long", ["--project", folder(), *run()], "is not a usable project name", project({"name": "n" * 101})),
    Case("run-id-missing", ["--project", folder(), *run()], "missing key 'run_id'", project({"run_id": None})),
    Case("run-id-bad", ["--project", folder(), *run()], "is not a run id", project({"run_id": "a b!"})),
    Case("target-negative", ["--project", folder(), *run()], "greater than 0", project({"target_batch_size": -1})),
    Case("target-string", ["--project", folder(), *run()], "whole number", project({"target_batch_size": "x"})),
    Case("batch-zero-toml", ["--project", folder(), *run()], "greater than 0", project({"batch_size": 0})),
    Case("batch-bool", ["--project", folder(), *run()], "whole number", project({"batch_size": True})),
    Case("batch-over-target", ["--project", folder(), *run()], "is larger than", project({"batch_size": 512})),
    Case("precision", ["--project", folder(), *run()], "key 'precision' must be", project({"precision": "fp8"})),
    Case("model-missing", ["--project", folder(), *run()], "missing section [model]", project({"model": None})),
    Case("data-missing", ["--project", folder(), *run()], "missing section [data]", project({"data": None})),
    Case(
        "data-both",
        ["--project", folder(), *run()],
        "give exactly one of datamodule or dataloader",
        project({"data.dataloader": "data.py:make_loader"}),
    ),
    Case(
        "data-neither",
        ["--project", folder(), *run()],
        "give exactly one of datamodule or dataloader",
        project({"data.datamodule": None}),
    ),
    Case("class-no-colon", ["--project", folder(), *run()], "is not of the form", project({"model.class_path": "m"})),
    Case(
        "class-two-colons",
        ["--project", folder(), *run()],
        "is not of the form",
        project({"model.class_path": "a:b:c"}),
    ),
    Case(
        "class-dotdot",
        ["--project", folder(), *run()],
        "leaves the project folder",
        project({"model.class_path": "../x.py:A"}),
    ),
    Case(
        "class-absolute",
        ["--project", folder(), *run()],
        "leaves the project folder",
        project({"model.class_path": "/etc/x.py:A"}),
    ),
    Case(
        "class-not-py", ["--project", folder(), *run()], "not a Python file", project({"model.class_path": "m.txt:A"})
    ),
    Case(
        "class-dash", ["--project", folder(), *run()], "cannot be imported", project({"model.class_path": "my-m.py:A"})
    ),
    Case(
        "class-backslash",
        ["--project", folder(), *run()],
        "uses backslashes",
        project({"model.class_path": "src\\m.py:A"}),
    ),
    Case(
        "class-name-bad",
        ["--project", folder(), *run()],
        "is not a Python name",
        project({"model.class_path": "m.py:1"}),
    ),
    Case("init-args-type", ["--project", folder(), *run()], "must be a table", project({"model.init_args": "width=4"})),
    Case(
        "batch-arg-in-init",
        ["--project", folder(), *run()],
        "which volunteer passes itself",
        project({"data.init_args": {"batch_size": 3}}),
    ),
    Case(
        "batch-arg-name",
        ["--project", folder(), *run()],
        "is not a Python argument name",
        project({"data.batch_size_arg": "batch-size"}),
    ),
    Case(
        "matchmaking-negative",
        ["--project", folder(), *run()],
        "greater than 0",
        project({"hivemind.matchmaking_time": -1.0}),
    ),
    Case(
        "averaging-short",
        ["--project", folder(), *run()],
        "must be longer than matchmaking_time",
        project({"hivemind.averaging_timeout": 2.0}),
    ),
    Case(
        "compression", ["--project", folder(), *run()], "must be one of", project({"hivemind.grad_compression": "zip"})
    ),
    Case("unknown-top-key", ["--project", folder(), *run()], "unknown key 'nmae'", project({"nmae": "x"})),
    Case(
        "unknown-section-key",
        ["--project", folder(), *run()],
        "unknown key 'hivemind.matchmaking'",
        project({"hivemind.matchmaking": 5.0}),
    ),
    Case("peers-url-ftp", ["--project", folder(), *run()], "is not an http(s) URL", project({"peers.url": "ftp://x"})),
    Case(
        "peers-file-escapes",
        ["--project", folder(), *run()],
        "leaves the project folder",
        project({"peers.file": "../peers.txt"}),
    ),
    Case(
        "peers-file-missing",
        ["--project", folder(), *run()],
        "peers.txt does not exist in the project",
        project({"peers.file": "peers.txt"}),
    ),
    Case(
        "peers-file-bad-line",
        ["--project", folder(), *run()],
        "invalid peer address",
        project({"peers.file": "peers.txt"}, {"peers.txt": "not an address\n"}),
    ),
    Case("gpu-policy", ["--project", folder(), *run()], "must be one of", project({"requirements.gpu": "maybe"})),
    Case(
        "client-version-format",
        ["--project", folder(), *run()],
        "is not a version number",
        project({"requirements.min_client_version": "x.y"}),
    ),
    Case(
        "client-version-newer",
        ["--project", folder(), *run()],
        "needs volunteer 99.0 or newer",
        project({"requirements.min_client_version": "99.0"}),
    ),
    # the code of a local project, read before anything of it runs
    Case(
        "code-missing",
        ["--project", folder(), *run()],
        "file model.py does not exist",
        project(files={"model.py": None}),
    ),
    Case("code-syntax", ["--project", folder(), *run()], "syntax error", project(files={"model.py": "def (:\n"})),
    Case(
        "code-300k-terms",
        ["--project", folder(), *run()],
        "nested too deeply",
        project(files=model_with("X = " + "+".join(["1"] * 300_000))),
    ),
    Case(
        "code-nested-parens",
        ["--project", folder(), *run()],
        "model.py",
        project(files=model_with("X = " + "(" * 300 + "1" + ")" * 300)),
    ),
    Case("code-null-byte", ["--project", folder(), *run()], "model.py", project(files=model_with("X = 1\x00"))),
    Case("code-not-utf8", ["--project", folder(), *run()], "cannot be read", with_files({"model.py": b"X = '\xff'\n"})),
    Case(
        "class-undefined",
        ["--project", folder(), *run()],
        "Missing is not defined in model.py",
        project({"model.class_path": "model.py:Missing"}),
    ),
    Case(
        "class-is-function",
        ["--project", folder(), *run()],
        "is a function, not a LightningModule class",
        project({"model.class_path": "data.py:make_loader"}),
    ),
    Case(
        "datamodule-is-function",
        ["--project", folder(), *run()],
        "is a function, not a LightningDataModule class",
        project({"data.datamodule": "data.py:make_loader"}),
    ),
    Case(
        "dataloader-is-class",
        ["--project", folder(), *run()],
        "is a class, not a function",
        project({"data.datamodule": None, "data.dataloader": "data.py:TinyData"}),
    ),
    Case(
        "model-not-lightning",
        ["--project", folder(), *run()],
        "is not a LightningModule",
        project(
            {"model.class_path": "model.py:Plain", "model.init_args": {}},
            model_with("from torch import nn\n\n\nclass Plain(nn.Module):\n    pass\n"),
        ),
    ),
    Case(
        "init-arg-unknown",
        ["--project", folder(), *run()],
        "takes no argument 'depth'",
        project({"model.init_args": {"depth": 3}}),
    ),
    Case(
        "init-arg-required",
        ["--project", folder(), *run()],
        "needs argument 'size'",
        project(files={"model.py": MODEL.replace("width: int = 4", "width: int = 4, *, size")}),
    ),
    # what a project may contain
    Case("local-so", ["--project", folder(), *run()], "native library", with_files({"model.abi3.so": b"\x7fELF"})),
    Case("local-pyd", ["--project", folder(), *run()], "native library", with_files({"sub/x.pyd": b"MZ"})),
    Case("local-pth", ["--project", folder(), *run()], "a .pth file", with_files({"x.pth": "import os\n"})),
    Case("local-so-1", ["--project", folder(), *run()], "native library", with_files({"libx.so.1": b"\x7fELF"})),
    Case(
        "local-escape-name",
        ["--project", folder(), *run()],
        "cannot be shown safely",
        with_files({"a\x1b]0;x\x07.py": ""}),
    ),
    Case(
        "local-big-py",
        ["--project", folder(), *run()],
        "more than the 1,000,000",
        with_files({"big.py": "#" * 1_000_001}),
    ),
    Case(
        "local-many-py",
        ["--project", folder(), *run()],
        "more than the 500 allowed",
        with_files({f"pkg/m{i}.py": "" for i in range(501)}),
    ),
    # Hub projects, through the real huggingface_hub client
    Case("hub-not-found", hub_args("lab/missing", "--trust"), "was not found"),
    Case("hub-revision", hub_args("lab/ok@v9", "--trust"), "revision 'v9' was not found"),
    Case("hub-sha", hub_args("lab/ok@" + "0" * 40, "--trust"), "was not found"),
    Case("hub-no-consent", hub_args("lab/ok"), "has not been given"),
    Case("hub-pycache", hub_args("lab/pyc", "--trust"), "compiled Python in a __pycache__ folder"),
    Case("hub-pyc", hub_args("lab/pyc-root", "--trust"), "compiled Python bytecode"),
    Case("hub-abi3-so", hub_args("lab/so", "--trust"), "native library"),
    Case("hub-cpython-so", hub_args("lab/cpython-so", "--trust"), "native library"),
    Case("hub-pyd", hub_args("lab/pyd", "--trust"), "native library"),
    Case("hub-dylib", hub_args("lab/dylib", "--trust"), "native library"),
    Case("hub-pth", hub_args("lab/pth", "--trust"), "a .pth file"),
    Case("hub-big-py", hub_args("lab/big-py", "--trust"), "more than the 1,000,000"),
    Case("hub-big-toml", hub_args("lab/big-toml", "--trust"), "the manifest is"),
    Case("hub-many-py", hub_args("lab/many-py", "--trust"), "more than the 500 allowed"),
    Case("hub-escape-name", hub_args("lab/escape", "--trust"), "cannot be shown safely"),
    Case("hub-bad-toml", hub_args("lab/bad-toml", "--trust"), "not valid TOML"),
    Case("hub-missing-class", hub_args("lab/missing-class", "--trust"), "TinyModel is not defined"),
    Case("hub-300k-terms", hub_args("lab/deep", "--trust"), "nested too deeply"),
    # a damaged data directory
    Case("data-dir-is-file", run(), "is not writable", lambda tmp, hub: (tmp / "data").write_text("a file")),
    Case("lock-is-folder", run(), "lock file", data_dir(lambda d: (d / "volunteer.lock").mkdir())),
    Case("identity-short", run(), "identity file", data_dir(lambda d: (d / "identity.key").write_bytes(b"x"))),
    Case("identity-folder", run(), "identity file", data_dir(lambda d: (d / "identity.key").mkdir())),
    Case(
        "consent-not-json",
        hub_args("lab/ok"),
        "consent file",
        data_dir(lambda d: (d / "consent.json").write_text("{not json")),
    ),
    Case(
        "consent-not-utf8",
        hub_args("lab/ok"),
        "not UTF-8 text",
        data_dir(lambda d: (d / "consent.json").write_bytes(b"\xff\xfe{}")),
    ),
    Case(
        "consent-list",
        hub_args("lab/ok"),
        "has no 'projects' table",
        data_dir(lambda d: (d / "consent.json").write_text("[1]")),
    ),
    Case(
        "consent-folder",
        hub_args("lab/ok"),
        "is unreadable: Is a directory",
        data_dir(lambda d: (d / "consent.json").mkdir()),
    ),
    Case(
        "consent-deep",
        hub_args("lab/ok"),
        "consent file",
        data_dir(lambda d: (d / "consent.json").write_text("[" * 100_000)),
    ),
    # the other commands
    Case("check-steps", ["check", folder(), "--steps", "-1"], "--steps", project()),
    Case("check-batch", ["check", folder(), "--batch-size", "0"], "--batch-size", project()),
    Case("check-device", ["check", folder(), "--device", "tpu"], "--device", project()),
    Case("check-no-folder", ["check", "./nowhere", "--data-dir", "{data}"], "does not exist"),
    Case(
        "check-hub-no-consent", ["check", "lab/ok", "--endpoint", "{hub}", "--data-dir", "{data}"], "has not been given"
    ),
    Case("check-toml", ["check", folder(), "--data-dir", "{data}"], "not valid TOML", raw_manifest("[model\n")),
    Case("publish-no-repo", ["publish", folder()], "the following arguments are required: --repo", project()),
    Case("publish-bad-repo", ["publish", folder(), "--repo", "not a repo"], "--repo", project()),
    Case("publish-hub-id", ["publish", "org/name", "--repo", "org/name"], "is not one"),
    Case("publish-dotfile", ["publish", folder(), "--repo", "lab/x"], "dotfiles", with_files({".env": "K=v\n"})),
    Case(
        "publish-secret",
        ["publish", folder(), "--repo", "lab/x"],
        "look like credentials",
        with_files({"conf.py": "TOKEN = 'hf_" + "x" * 34 + "'\n"}),
    ),
    Case("publish-native", ["publish", folder(), "--repo", "lab/x"], "native library", with_files({"a.so": b"\x7f"})),
    Case(
        "publish-check-steps",
        ["publish", folder(), "--repo", "lab/x", "--check-steps", "x"],
        "--check-steps",
        project(),
    ),
    Case("doctor-flag", ["doctor", "--frobnicate"], "unrecognized arguments"),
    # in a subprocess, as a volunteer's shell runs it
    Case(
        "subprocess-300k-terms",
        ["check", folder(), "--steps", "0", "--data-dir", "{data}"],
        "nested too deeply",
        project(files=model_with("X = " + "+".join(["1"] * 300_000))),
        subprocess=True,
    ),
    Case(
        "subprocess-5000-arrays",
        ["--project", folder(), *run()],
        "nested too deeply",
        raw_manifest(TOML.replace("[model]", "z = " + "[" * 5000 + "]" * 5000 + "\n[model]", 1)),
        subprocess=True,
    ),
    Case(
        "subprocess-lock-folder",
        run(),
        "lock file",
        data_dir(lambda d: (d / "volunteer.lock").mkdir()),
        subprocess=True,
    ),
]


def test_the_suite_tries_enough_bad_inputs() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} bad inputs"
    assert len({case.id for case in CASES}) == len(CASES), "case ids are unique"


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        for repo_id, files in HUB_REPOS.items():
            server.add_repo(repo_id).commit(files)
        yield server


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_error_and_one_hint(
    case: Case,
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.prepare is not None:
        case.prepare(tmp_path, hub)
    values = {"tmp": str(tmp_path), "data": str(tmp_path / "data"), "hub": hub.url}
    argv = list(case.argv)
    for name, value in values.items():
        argv = [arg.replace("{" + name + "}", value) for arg in argv]
    if case.subprocess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, "-m", "volunteer", *argv], capture_output=True, text=True, timeout=90, env=env
        )
        code, err, out = result.returncode, result.stderr, result.stdout
    else:
        code = main(argv)
        captured = capsys.readouterr()
        err, out = captured.err, captured.out
    lines = err.splitlines()
    assert "Traceback" not in err + out, err
    assert code == 2, err
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    assert case.expect in lines[0], lines[0]
    assert len(lines[1]) > len("hint: ") + 10, lines[1]
