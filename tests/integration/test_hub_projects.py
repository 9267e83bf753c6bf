"""Hub projects end to end: the real huggingface_hub client against a Hub-compatible server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hubserver import HubRepo, HubServer
from tests.support.projects import (
    PEER_A,
    PEER_B,
    StaticServer,
    assert_user_error,
    closed_port_url,
    isolate_environment,
    project_files,
)
from volunteer.cli import main
from volunteer.datadir import DataDir
from volunteer.errors import ProjectError, TrustError
from volunteer.project import PreparedProject, ResolvedProject, prepare_project
from volunteer.project.loader import build_project
from volunteer.settings import Settings

pytestmark = pytest.mark.timeout(60)

READER_TOKEN = "hf_reader_token"
V2_MODEL = project_files()["model.py"].replace('VERSION = "model-v1"', 'VERSION = "model-v2"')


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture
def tiny(hub: HubServer) -> HubRepo:
    """lab/tiny: commit 1, then commit 2 changes model.py's VERSION; tag v1 is commit 1."""
    repo = hub.add_repo("lab/tiny")
    first = repo.commit(project_files({"peers.file": "peers.txt"}, {"peers.txt": f"# bootstrap\n{PEER_A}\n"}))
    repo.commit({"model.py": V2_MODEL})
    repo.tag("v1", first)
    return repo


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.open(tmp_path / "data")


def _prepare(hub_url: str, project: str, data_dir: DataDir, **settings: object) -> PreparedProject:
    options: dict[str, object] = {"trust": True, **settings}
    return prepare_project(Settings(project=project, endpoint=hub_url, **options), data_dir)  # type: ignore[arg-type]


def _version(prepared: PreparedProject) -> str:
    return sys.modules[type(build_project(prepared.project).module).__module__].VERSION


def test_download_and_import(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    prepared = _prepare(hub.url, "lab/tiny", data_dir)
    project = prepared.project
    head = tiny.refs["main"]
    assert (project.repo, project.revision, project.kind) == ("lab/tiny", head, "hub")
    assert project.root == data_dir.hub_cache / "models--lab--tiny" / "snapshots" / head
    assert project.files == ("data.py", "helpers.py", "model.py")
    assert not project.from_cache and project.warnings == ()
    assert project.info().revision == head and project.info().run_id == "tiny-test"
    assert prepared.peers.addresses == (PEER_A,)

    path_before = list(sys.path)
    built = build_project(prepared.project)
    assert sys.path == path_before
    module_name = type(built.module).__module__
    assert module_name == f"volunteer_project_lab_tiny_{head[:12]}.model"
    assert sys.modules[module_name].VERSION == "model-v2"
    assert type(built.datamodule).__name__ == "TinyData" and built.datamodule.batch_size == 8
    assert build_project(prepared.project, 3).datamodule.batch_size == 3


def test_every_file_comes_from_one_commit(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    _prepare(hub.url, "lab/tiny", data_dir)
    head = tiny.refs["main"]
    file_requests = [path for method, path, _ in hub.requests if "/resolve/" in path or "/tree/" in path]
    assert file_requests and all(f"/{head}" in path for path in file_requests)


def test_revision_pinning(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    first = tiny.refs["v1"]
    pinned = _prepare(hub.url, f"lab/tiny@{first}", data_dir)
    assert pinned.project.revision == first
    assert _version(pinned) == "model-v1"

    tiny.commit({"model.py": V2_MODEL.replace("model-v2", "model-v3")})
    again = _prepare(hub.url, f"lab/tiny@{first}", data_dir)
    assert again.project.revision == first and _version(again) == "model-v1"
    by_tag = _prepare(hub.url, "lab/tiny@v1", data_dir)
    assert by_tag.project.revision == first
    latest = _prepare(hub.url, "lab/tiny", data_dir)
    assert latest.project.revision == tiny.refs["main"] and _version(latest) == "model-v3"


def test_two_commits_in_one_process_do_not_clash(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    old = build_project(_prepare(hub.url, "lab/tiny@v1", data_dir).project)
    new = build_project(_prepare(hub.url, "lab/tiny@main", data_dir).project)
    assert type(old.module) is not type(new.module)
    assert sys.modules[type(old.module).__module__].VERSION == "model-v1"
    assert sys.modules[type(new.module).__module__].VERSION == "model-v2"
    assert "model" not in sys.modules and "helpers" not in sys.modules


def test_hf_endpoint_environment_variable(
    hub: HubServer, tiny: HubRepo, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    prepared = prepare_project(Settings(project="lab/tiny", trust=True), data_dir)
    assert prepared.project.revision == tiny.refs["main"]
    assert prepared.project.endpoint == hub.url


def test_offline_start_from_cache(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    online = _prepare(hub.url, "lab/tiny", data_dir)
    with closed_port_url() as dead:
        offline = _prepare(dead, "lab/tiny", data_dir)
    sha = tiny.refs["main"]
    assert offline.project.from_cache
    assert offline.project.revision == sha and offline.project.root == online.project.root
    (warning,) = offline.project.warnings
    assert "cannot be reached" in warning and f"cached snapshot at commit {sha}" in warning
    assert _version(offline) == "model-v2"


def test_offline_start_when_the_hub_fails(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    _prepare(hub.url, "lab/tiny@v1", data_dir)
    hub.fail_with = 503
    offline = _prepare(hub.url, "lab/tiny@v1", data_dir)
    assert offline.project.from_cache and offline.project.revision == tiny.refs["v1"]
    assert "answered HTTP 503" in offline.project.warnings[0]


def test_pinned_commit_in_cache_needs_no_network(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    first = tiny.refs["v1"]
    _prepare(hub.url, f"lab/tiny@{first}", data_dir)
    with closed_port_url() as dead:
        again = _prepare(dead, f"lab/tiny@{first}", data_dir)
    assert again.project.revision == first and _version(again) == "model-v1"


def test_private_project_with_token(hub: HubServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = hub.add_repo("lab/secret", private=True, readers=(READER_TOKEN,))
    sha = secret.commit(project_files())
    monkeypatch.setenv("HF_TOKEN", READER_TOKEN)
    prepared = _prepare(hub.url, "lab/secret", data_dir)
    assert prepared.project.revision == sha
    assert all(auth == f"Bearer {READER_TOKEN}" for _, _, auth in hub.requests)
    assert type(build_project(prepared.project).module).__name__ == "TinyModel"


def test_prepare_imports_nothing_heavy(hub: HubServer, tiny: HubRepo, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from volunteer.datadir import DataDir\n"
        "from volunteer.project import prepare_project\n"
        "from volunteer.settings import Settings\n"
        f"settings = Settings(project='lab/tiny', endpoint={hub.url!r}, trust=True)\n"
        f"prepared = prepare_project(settings, DataDir.open({str(tmp_path / 'data')!r}))\n"
        "print(prepared.project.revision, [m for m in ('torch', 'lightning', 'hivemind') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [tiny.refs["main"], "[]"], result.stdout + result.stderr


# consent


def test_consent_is_required_headless(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    with pytest.raises(TrustError) as caught:
        _prepare(hub.url, "lab/tiny", data_dir, trust=False)
    assert tiny.refs["main"][:12] in caught.value.message
    assert "data.py, helpers.py, model.py" in caught.value.message
    assert "--trust" in (caught.value.hint or "") and "VOLUNTEER_TRUST=1" in (caught.value.hint or "")


def test_consent_asked_remembered_and_asked_again_for_a_new_commit(
    hub: HubServer, tiny: HubRepo, data_dir: DataDir
) -> None:
    asked: list[ResolvedProject] = []

    def ask(project: ResolvedProject) -> bool:
        asked.append(project)
        return True

    settings = Settings(project="lab/tiny", endpoint=hub.url)
    first = prepare_project(settings, data_dir, ask_consent=ask)
    assert first.consent == "asked" and len(asked) == 1
    assert asked[0].revision == tiny.refs["main"] and asked[0].files == ("data.py", "helpers.py", "model.py")
    assert asked[0].manifest.name == "Tiny test project"

    again = prepare_project(settings, data_dir, ask_consent=ask)
    assert again.consent == "remembered" and len(asked) == 1
    assert prepare_project(settings, data_dir).consent == "remembered"

    # a commit that leaves the code and manifest alone (a host refreshing the peer list) asks nothing
    tiny.commit({"peers.txt": "# refreshed by the host\n"})
    refreshed = prepare_project(settings, data_dir)
    assert (
        refreshed.consent == "remembered" and refreshed.project.revision == tiny.refs["main"] != first.project.revision
    )

    tiny.commit({"helpers.py": project_files()["helpers.py"] + "\n# changed\n"})
    with pytest.raises(TrustError):
        prepare_project(settings, data_dir)
    third = prepare_project(settings, data_dir, ask_consent=ask)
    assert third.consent == "asked" and len(asked) == 2 and asked[1].revision == tiny.refs["main"]


def test_consent_declined(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    settings = Settings(project="lab/tiny", endpoint=hub.url)
    with pytest.raises(TrustError, match="was declined"):
        prepare_project(settings, data_dir, ask_consent=lambda project: False)
    with pytest.raises(TrustError, match="has not been given"):
        prepare_project(settings, data_dir)


def test_trust_flag_is_remembered(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    assert _prepare(hub.url, "lab/tiny", data_dir, trust=True).consent == "--trust"
    assert _prepare(hub.url, "lab/tiny", data_dir, trust=False).consent == "remembered"


def test_trust_from_environment(
    hub: HubServer, tiny: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--project", "lab/tiny", "--endpoint", hub.url, "--data-dir", str(tmp_path / "data"), "--status-port", "0"]
    assert_user_error(capsys, main(argv), "consent to run project 'Tiny test project'", "VOLUNTEER_TRUST=1")
    monkeypatch.setenv("VOLUNTEER_TRUST", "1")
    from volunteer.settings import parse_run_args

    settings = parse_run_args(argv)
    assert settings.trust
    assert prepare_project(settings, DataDir.open(tmp_path / "data")).consent == "--trust"


# peers


def test_peers_from_flag_file_and_url_are_merged(hub: HubServer, tiny: HubRepo, data_dir: DataDir) -> None:
    with StaticServer() as web:
        web.routes["/peers.json"] = (200, "application/json", f'["{PEER_B}", "{PEER_A}"]')
        repo = hub.add_repo("lab/peers")
        repo.commit(
            project_files(
                {"peers.file": "peers.txt", "peers.url": f"{web.url}/peers.json"}, {"peers.txt": f"{PEER_A}\n"}
            )
        )
        prepared = _prepare(hub.url, "lab/peers", data_dir, initial_peers=PEER_B)
    assert prepared.peers.addresses == (PEER_B, PEER_A)
    assert prepared.peers.sources == (
        "--initial-peers/INITIAL_PEERS: 1",
        "peers.txt: 1",
        f"{web.url}/peers.json: 2",
    )


# errors, through the CLI


def _cli(hub_url: str, project: str, tmp_path: Path, *extra: str) -> int:
    argv = ["--project", project, "--endpoint", hub_url, "--data-dir", str(tmp_path / "data"), "--status-port", "0"]
    return main([*argv, "--trust", *extra])


def test_error_repository_not_found(hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _cli(hub.url, "lab/missing", tmp_path)
    assert_user_error(capsys, code, f"project repository lab/missing was not found on {hub.url}", "spelling")


def test_error_revision_not_found(
    hub: HubServer, tiny: HubRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli(hub.url, "lab/tiny@v9", tmp_path)
    assert_user_error(capsys, code, "revision 'v9' was not found in project repository lab/tiny", "lab/tiny@main")
    code = _cli(hub.url, "lab/tiny@" + "0" * 40, tmp_path)
    assert_user_error(capsys, code, f"revision '{'0' * 40}' was not found", "drop '@")


def test_error_auth_required(hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add_repo("lab/secret", private=True, readers=(READER_TOKEN,)).commit(project_files())
    code = _cli(hub.url, "lab/secret", tmp_path)
    error, _ = assert_user_error(capsys, code, "project repository lab/secret on", "set HF_TOKEN to an access token")
    assert error.endswith("needs authentication (it is private, or does not exist)")


def test_error_token_rejected(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo("lab/secret", private=True, readers=(READER_TOKEN,)).commit(project_files())
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    code = _cli(hub.url, "lab/secret", tmp_path)
    assert_user_error(capsys, code, "rejected the access token in HF_TOKEN (HTTP 401)", "new read token")


def test_error_token_without_access(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo("lab/secret", private=True, readers=(READER_TOKEN,)).commit(project_files())
    hub.tokens.add("hf_someone_else")
    monkeypatch.setenv("HF_TOKEN", "hf_someone_else")
    code = _cli(hub.url, "lab/secret", tmp_path)
    assert_user_error(capsys, code, "or the HF_TOKEN given cannot read it", "has been given access")


def test_error_no_network_and_no_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port_url() as dead:
        code = _cli(dead, "lab/tiny", tmp_path)
        assert_user_error(
            capsys, code, f"cannot download lab/tiny@main from the Hub at {dead} (ConnectError", "check the network"
        )


def test_error_in_downloaded_manifest_names_repo_and_commit(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = hub.add_repo("lab/broken").commit(project_files({"target_batch_size": -1}))
    code = _cli(hub.url, "lab/broken", tmp_path)
    assert_user_error(
        capsys, code, f"lab/broken@{sha[:7]}:volunteer.toml: key 'target_batch_size' must be greater than 0", "4096"
    )


def test_manifest_checked_before_consent(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("lab/broken").commit(project_files({"model.class_path": "model.py:Missing"}))
    with pytest.raises(ProjectError, match=r"Missing is not defined in model\.py"):
        prepare_project(Settings(project="lab/broken", endpoint=hub.url), DataDir.open(tmp_path / "data"))


def test_hf_hub_offline(
    hub: HubServer, tiny: HubRepo, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    _prepare(hub.url, "lab/tiny", data_dir)
    hub.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub reads HF_HUB_OFFLINE at import
    offline = _prepare(hub.url, "lab/tiny", data_dir)
    assert offline.project.from_cache and hub.requests == []
    assert offline.project.warnings[0].startswith("HF_HUB_OFFLINE is set; starting lab/tiny@main from the cached")
    with pytest.raises(ProjectError, match="HF_HUB_OFFLINE is set, and no copy of lab/tiny@v1 is cached") as caught:
        _prepare(hub.url, "lab/tiny@v1", DataDir.open(tmp_path / "other"))
    assert "unset HF_HUB_OFFLINE" in (caught.value.hint or "")
