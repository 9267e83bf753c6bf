"""``volunteer publish``: a checked folder becomes one commit on the local Hub server, which the client downloads.

Every refusal (not logged in, no write access, a broken project, the Hub down) is one error line and a hint,
and a project that fails its check is never uploaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hubserver import HubServer
from tests.support.projects import PEER_A, assert_user_error, closed_port_url, isolate_environment
from volunteer.authoring.init import create_project
from volunteer.authoring.publish import project_files
from volunteer.cli import main
from volunteer.datadir import DataDir
from volunteer.project import prepare_project
from volunteer.project.loader import build_project
from volunteer.settings import Settings

pytestmark = pytest.mark.timeout(120)

TOKEN = "hf_lab_writer"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_writer(TOKEN, "lab")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = create_project(tmp_path / "spirals", repo="lab/spirals").root
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (root / "lightning_logs").mkdir()
    (root / "lightning_logs" / "events").write_text("x")
    return root


def _publish(hub: HubServer, *extra: str) -> int:
    return main(["publish", "spirals", "--repo", "lab/spirals", "--endpoint", hub.url, "--check-steps", "1", *extra])


def test_publish_creates_the_repository_and_prints_the_pinned_command(
    hub: HubServer, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _publish(hub) == 0
    out = capsys.readouterr().out
    repo = hub.repos["lab/spirals"]
    sha = repo.refs["main"]
    assert repo.messages[sha] == "volunteer publish: spirals (run spirals-v1)"
    assert sorted(repo.files()) == [
        ".gitattributes",
        ".gitignore",
        "README.md",
        "data.py",
        "model.py",
        "peers.txt",
        "volunteer.toml",
    ]
    assert repo.files()["model.py"] == (project / "model.py").read_bytes()
    assert "ok  'spirals' (run id spirals-v1): 1 training step on cpu, 4,547 parameters" in out
    assert f"created the repository lab/spirals on {hub.url}" in out
    assert f"published lab/spirals at commit {sha} (6 files)" in out
    assert (
        f"docker run --gpus all --shm-size=1g -it -v volunteer-data:/data volunteer --project lab/spirals@{sha}" in out
    )
    assert "  volunteer --project lab/spirals\n" in out
    # a volunteer's client downloads exactly that commit
    prepared = prepare_project(
        Settings(project=f"lab/spirals@{sha}", endpoint=hub.url, trust=True), DataDir.open(tmp_path / "volunteer")
    )
    assert prepared.project.revision == sha and prepared.project.files == ("data.py", "model.py")
    assert type(build_project(prepared.project).module).__name__ == "Model"


def test_publishing_again_without_changes_makes_no_commit(
    hub: HubServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _publish(hub) == 0
    history = list(hub.repos["lab/spirals"].history)
    assert _publish(hub) == 0
    out = capsys.readouterr().out
    assert hub.repos["lab/spirals"].history == history
    assert f"nothing changed: lab/spirals is already at commit {history[-1]}" in out
    assert "No files have been modified" not in out


def test_the_peers_file_on_the_hub_is_kept_unless_replaced(
    hub: HubServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _publish(hub) == 0
    repo = hub.repos["lab/spirals"]
    repo.commit({"peers.txt": f"{PEER_A}\n", "old_model.py": "x = 1\n"}, message="volunteer host: peers")
    (project / "model.py").write_text((project / "model.py").read_text() + "\n# v2\n")
    assert _publish(hub) == 0
    out = capsys.readouterr().out
    assert repo.files()["peers.txt"] == f"{PEER_A}\n".encode()
    assert repo.files()["model.py"].endswith(b"# v2\n")
    assert "kept peers.txt as it is on the Hub ('volunteer host' maintains it); --replace-peers uploads yours" in out
    assert "note: the Hub also has old_model.py, which this folder does not (--delete-missing removes them)" in out

    assert _publish(hub, "--replace-peers", "--delete-missing") == 0
    out = capsys.readouterr().out
    assert repo.files()["peers.txt"] == (project / "peers.txt").read_bytes()
    assert "old_model.py" not in repo.files() and "removed from the Hub: old_model.py" in out


def test_skipped_files(project: Path) -> None:
    assert project_files(project) == [
        ".gitignore",
        "README.md",
        "data.py",
        "model.py",
        "peers.txt",
        "volunteer.toml",
    ]


def test_private_repository(hub: HubServer, project: Path) -> None:
    assert _publish(hub, "--private", "--check-steps", "0") == 0
    assert hub.repos["lab/spirals"].private


def test_a_project_that_fails_its_check_is_never_uploaded(
    hub: HubServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = project / "model.py"
    model.write_text(model.read_text().replace("return loss", "return loss * float('nan')"))
    code = _publish(hub)
    assert_user_error(capsys, code, "spirals/model.py: the loss is nan at training step 1", "check the data")
    assert "lab/spirals" not in hub.repos and not [r for r in hub.requests if r[0] == "POST"]


def test_not_logged_in(
    hub: HubServer, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    code = _publish(hub, "--check-steps", "0")
    assert_user_error(
        capsys,
        code,
        f"cannot create the repository lab/spirals: not logged in to the Hub at {hub.url} (HTTP 401)",
        "set HF_TOKEN to an access token with write access",
    )


def test_token_rejected(
    hub: HubServer, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_typo")
    code = _publish(hub, "--check-steps", "0")
    assert_user_error(capsys, code, "rejected the access token (HTTP 401)", "create a token with write access")


def test_no_write_access(
    hub: HubServer, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_writer("hf_someone", "someone")
    monkeypatch.setenv("HF_TOKEN", "hf_someone")
    code = _publish(hub, "--check-steps", "0")
    assert_user_error(
        capsys,
        code,
        "the access token may not create the repository lab/spirals (HTTP 403)",
        "--repo <your user name>/spirals",
    )


def test_hub_unreachable(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port_url() as dead:
        code = main(["publish", "spirals", "--repo", "lab/spirals", "--endpoint", dead, "--check-steps", "0"])
    error, _ = assert_user_error(capsys, code, f"cannot reach the Hub at {dead}", "HF_ENDPOINT / --endpoint")
    assert re.search(r"\(ConnectError", error)


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (["publish", "lab/spirals", "--repo", "lab/spirals"], "publish uploads a project folder", "(./lab/spirals)"),
        (["publish", "spirals", "--repo", "spirals"], "--repo 'spirals' is not a Hub repository id", "my-lab/"),
        (["publish", "spirals", "--repo", "lab/x@v1"], "--repo 'lab/x@v1' is not a Hub repository id", "org/name"),
        (["publish", "spirals"], "the following arguments are required: --repo", "volunteer publish --help"),
        (["publish", "spirals", "--repo", "lab/x", "--check-steps", "x"], "--check-steps: 'x'", "--check-steps"),
    ],
)
def test_bad_arguments(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str
) -> None:
    assert_user_error(capsys, main(argv), error, hint)


# what is never uploaded unless told


def test_gitignore_is_honoured(hub: HubServer, project: Path) -> None:
    (project / ".gitignore").write_text("__pycache__/\n*.log\nsecrets/\n!keep.log\n")
    (project / "run.log").write_text("noise\n")
    (project / "keep.log").write_text("kept\n")
    (project / "secrets").mkdir()
    (project / "secrets" / "notes.txt").write_text("private\n")
    (project / "sub").mkdir()
    (project / "sub" / ".gitignore").write_text("local.txt\n")
    (project / "sub" / "local.txt").write_text("mine\n")
    (project / "sub" / "shared.txt").write_text("ours\n")
    files = project_files(project)
    assert "run.log" not in files and "secrets/notes.txt" not in files and "sub/local.txt" not in files
    assert {"keep.log", "sub/shared.txt", "sub/.gitignore"} <= set(files)
    assert _publish(hub, "--check-steps", "0") == 0
    assert "secrets/notes.txt" not in hub.repos["lab/spirals"].files()


@pytest.mark.parametrize(
    ("name", "content", "error", "flag"),
    [
        (".env", "HF_TOKEN=x\n", "dotfiles, which often hold secrets: .env", "--include-dotfiles"),
        (".netrc", "machine x login y\n", "dotfiles, which often hold secrets: .netrc", "--include-dotfiles"),
        (".github/ci.yml", "on: push\n", "dotfiles, which often hold secrets: .github/ci.yml", "--include-dotfiles"),
        ("id_rsa", "key\n", "look like credentials (a token or key): id_rsa", "--include-credentials"),
        ("keys/server.pem", "x\n", "look like credentials (a token or key): keys/server.pem", "--include-credentials"),
        ("credentials.json", "{}\n", "credentials (a token or key): credentials.json", "--include-credentials"),
        (
            "settings.py",
            'TOKEN = "hf_' + "a1B2" * 9 + '"\n',
            "look like credentials (a token or key): settings.py",
            "--include-credentials",
        ),
        (
            "notes.txt",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            "look like credentials (a token or key): notes.txt",
            "--include-credentials",
        ),
    ],
)
def test_secrets_are_refused_unless_told(
    hub: HubServer,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    error: str,
    flag: str,
) -> None:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    assert_user_error(capsys, _publish(hub, "--check-steps", "0"), error, flag)
    assert "lab/spirals" not in hub.repos, "refused before anything reached the Hub"
    assert _publish(hub, "--check-steps", "0", "--include-dotfiles", "--include-credentials") == 0
    assert name in hub.repos["lab/spirals"].files()


def test_compiled_and_native_files_are_never_published(
    hub: HubServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "fast.abi3.so").write_bytes(b"\x7fELF")
    code = _publish(hub, "--check-steps", "0")
    assert_user_error(capsys, code, "fast.abi3.so is a native library or extension module", "Python source only")
    assert "lab/spirals" not in hub.repos


def test_a_gitignore_that_leaves_out_a_needed_file_is_refused(
    hub: HubServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ".gitignore").write_text("model.py\n")
    code = _publish(hub, "--check-steps", "0")
    assert_user_error(capsys, code, "model.py would not be uploaded, but the manifest names it", "git check-ignore")
    assert "lab/spirals" not in hub.repos
