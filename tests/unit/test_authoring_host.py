"""``volunteer host`` without hivemind: its flags, the peer list it keeps, the Hub copy, checkpoints, its HTTP API.

The hivemind side (an auxiliary peer in a real swarm) is tested end to end in
``tests/integration/test_authors_swarm.py``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.hubserver import HubRepo, HubServer
from tests.support.projects import PEER_A, PEER_B, PEER_C, assert_user_error, isolate_environment
from volunteer.authoring.checkpoints import checkpoint_name, list_checkpoints, load_checkpoint, save_checkpoint
from volunteer.authoring.errors import HubWriteError
from volunteer.authoring.host_options import parse_host_args
from volunteer.authoring.host_peers import PeersKeeper
from volunteer.authoring.host_server import HostServer
from volunteer.authoring.host_supervisor import Host
from volunteer.authoring.host_view import SwarmView
from volunteer.authoring.hubwrite import hub_api
from volunteer.authoring.init import create_project
from volunteer.authoring.peers_file import (
    HubPeersFile,
    PeerListPlanner,
    all_private,
    own_addresses,
    render_peers_file,
)
from volunteer.cli import main
from volunteer.datadir import DataDir
from volunteer.project.peersources import parse_peer_lines
from volunteer.protocol import CheckpointSaved, HostSwarm
from volunteer.stats import LeaderboardEntry
from volunteer.swarm.multiaddrs import peer_id_of

pytestmark = pytest.mark.timeout(60)

TOKEN = "hf_lab_writer"
HOST_ID = "QmTPAgyFyHNAhtTpB2yj7PbSgD8YUojZSW6e3QZzA5RKMh"
HOST = f"/ip4/93.184.216.34/tcp/31337/p2p/{HOST_ID}"
HOST_LOOPBACK = f"/ip4/127.0.0.1/tcp/31337/p2p/{HOST_ID}"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


# -- the list ------------------------------------------------------------------------------------------------


def test_own_addresses_leave_loopback_out_unless_there_is_nothing_else() -> None:
    assert own_addresses([HOST_LOOPBACK, HOST, "/ip4/0.0.0.0/tcp/1/p2p/" + HOST_ID]) == [HOST]
    assert own_addresses([HOST_LOOPBACK]) == [HOST_LOOPBACK]
    assert all_private([f"/ip4/192.168.1.5/tcp/1/p2p/{HOST_ID}", HOST_LOOPBACK])
    assert not all_private([HOST]) and not all_private([PEER_C])  # a public IP; a DNS name


def test_planner_keeps_the_host_first_and_drops_a_silent_peer_after_a_few_checks() -> None:
    planner = PeerListPlanner(drop_after=2)
    others = planner.others(HOST_ID, [HOST, PEER_A, PEER_B])
    assert list(others) == [peer_id_of(PEER_A), peer_id_of(PEER_B)]  # the host's own (old) address is not an "other"
    a, b = peer_id_of(PEER_A), peer_id_of(PEER_B)
    assert planner.plan([HOST], others, {a: True, b: False}) == [HOST, PEER_A, PEER_B]  # one miss: may be restarting
    assert planner.plan([HOST], others, {a: True}) == [HOST, PEER_A, PEER_B]  # unknown: no change
    assert planner.plan([HOST], others, {a: True, b: False}) == [HOST, PEER_A]  # two in a row: dropped
    assert planner.dropped(others) == [b]
    assert planner.plan([HOST], others, {a: True, b: True}) == [HOST, PEER_A, PEER_B]  # back


def test_planner_keeps_the_list_small() -> None:
    planner = PeerListPlanner(max_others=1)
    others = planner.others(HOST_ID, [PEER_A, PEER_B])
    assert planner.plan([HOST], others, {}) == [HOST, PEER_A]


def test_the_file_written_is_a_valid_peers_file() -> None:
    text = render_peers_file([HOST, PEER_A], name="Spirals", run_id="spirals-v1", host_peer_id=HOST_ID)
    assert text.startswith("# Bootstrap peers of 'Spirals' (run spirals-v1)")
    assert parse_peer_lines(text, "peers.txt", strict=True) == ([HOST, PEER_A], [])


# -- the copy on the Hub ---------------------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_writer(TOKEN, "lab")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


@pytest.fixture
def published(hub: HubServer, tmp_path: Path) -> HubRepo:
    root = create_project(tmp_path / "spirals", run_id="spirals-v1").root
    repo = hub.add_repo("lab/spirals")
    repo.commit({p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}, message="publish")
    return repo


def _hub_file(hub: HubServer, tmp_path: Path) -> HubPeersFile:
    api, endpoint = hub_api(hub.url)
    return HubPeersFile(api, endpoint, "lab/spirals", tmp_path / "cache")


def test_read_and_write_the_peers_file(hub: HubServer, published: HubRepo, tmp_path: Path) -> None:
    file = _hub_file(hub, tmp_path)
    remote = file.read()
    assert (remote.sha, remote.path, remote.addresses, remote.run_id, remote.exists) == (
        published.refs["main"],
        "peers.txt",
        (),
        "spirals-v1",
        True,
    )
    sha = file.write(f"{HOST}\n", "peers.txt", remote.sha, "volunteer host: peers")
    assert published.refs["main"] == sha and published.messages[sha] == "volunteer host: peers"
    assert file.read().addresses == (HOST,)
    with pytest.raises(HubWriteError) as caught:
        file.write(f"{PEER_A}\n", "peers.txt", remote.sha, "stale parent")
    assert caught.value.status == 412 and published.refs["main"] == sha


def test_a_missing_peers_file_reads_as_absent(hub: HubServer, published: HubRepo, tmp_path: Path) -> None:
    published.commit({"peers.txt": None})
    remote = _hub_file(hub, tmp_path).read()
    assert remote.path == "peers.txt" and not remote.exists and remote.addresses == ()


class _FakeHost:
    """What PeersKeeper uses of a Host, with pings answered from a table."""

    def __init__(self, prepared: Any, answers: dict[str, bool]) -> None:
        self.view = SwarmView(peer_id=HOST_ID, addresses=(HOST,))
        self.prepared = prepared
        self.options = SimpleNamespace(extra_peers=(), refresh_every=60.0)
        self.peers: tuple[str, ...] = ()
        self.peers_file: dict[str, Any] = {}
        self.events: list[str] = []
        self.answers = answers
        self.pinged: list[list[str]] = []
        self.stopping = threading.Event()

    def ping(self, addresses: list[str]) -> dict[str, bool]:
        self.pinged.append(list(addresses))
        return {pid: ok for pid, ok in self.answers.items() if any(a.endswith(pid) for a in addresses)}

    def event(self, kind: str, message: str) -> None:
        self.events.append(f"[{kind}] {message}")


def _keeper(hub: HubServer, tmp_path: Path, answers: dict[str, bool]) -> tuple[PeersKeeper, _FakeHost]:
    from volunteer.project import prepare_project
    from volunteer.settings import Settings

    prepared = prepare_project(
        Settings(project="lab/spirals", endpoint=hub.url, trust=True), DataDir.open(tmp_path / "d")
    )
    host = _FakeHost(prepared, answers)
    return PeersKeeper(host, _hub_file(hub, tmp_path), PeerListPlanner(drop_after=2), []), host  # type: ignore[arg-type]


def test_keeper_writes_only_when_the_set_changes(hub: HubServer, published: HubRepo, tmp_path: Path) -> None:
    published.commit({"peers.txt": f"# by hand\n{PEER_A}\n"}, message="hand edit")
    keeper, host = _keeper(hub, tmp_path, {peer_id_of(PEER_A): True})
    keeper.sync_once()
    assert host.peers == (HOST, PEER_A) and host.pinged == [[PEER_A]]
    text = published.files()["peers.txt"].decode()
    assert parse_peer_lines(text, "peers.txt", strict=True)[0] == [HOST, PEER_A]
    assert "Kept fresh by 'volunteer host'" in text
    assert host.events == [
        f"[peers_file] updated peers.txt on the Hub at commit {published.refs['main']} (added {HOST})"
    ]
    history = list(published.history)
    keeper.sync_once()  # same set: no commit
    assert published.history == history

    host.answers = {peer_id_of(PEER_A): False}
    keeper.sync_once()
    assert published.history == history  # one miss: kept
    keeper.sync_once()
    assert parse_peer_lines(published.files()["peers.txt"].decode(), "p", strict=True)[0] == [HOST]
    assert any("has not answered for a while" in e for e in host.events)
    assert host.peers_file["addresses"] == [HOST]


def test_keeper_leaves_a_new_run_alone(hub: HubServer, published: HubRepo, tmp_path: Path) -> None:
    keeper, host = _keeper(hub, tmp_path, {})
    manifest = published.files()["volunteer.toml"].decode().replace('"spirals-v1"', '"spirals-v2"')
    published.commit({"volunteer.toml": manifest}, message="v2")
    history = list(published.history)
    keeper.sync_once()
    assert published.history == history
    assert any("main now trains run spirals-v2, this host serves run spirals-v1" in e for e in host.events)


def test_keeper_retries_when_the_branch_moved(
    hub: HubServer, published: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeper, _ = _keeper(hub, tmp_path, {})
    original = keeper.hub_file.write

    def racing_write(*args: Any, **kwargs: Any) -> str:
        published.commit({"README.md": "changed meanwhile\n"}, message="someone else")
        return original(*args, **kwargs)

    monkeypatch.setattr(keeper.hub_file, "write", racing_write)
    keeper.sync_once()  # 412: nothing raised, nothing overwritten
    assert published.messages[published.refs["main"]] == "someone else"
    monkeypatch.setattr(keeper.hub_file, "write", original)
    keeper.sync_once()
    assert published.files()["README.md"] == b"changed meanwhile\n"
    assert HOST in published.files()["peers.txt"].decode()


# -- checkpoints -----------------------------------------------------------------------------------------------


def test_checkpoints_are_atomic_and_only_the_last_few_are_kept(tmp_path: Path) -> None:
    import torch

    for step in (3, 7, 12, 20):
        state = {"model": {"w": torch.full((2,), float(step))}, "optimizer": {"state": {"local_epoch": step}}}
        save_checkpoint(tmp_path / "ckpt", "spirals-v1", step, state, keep=2)
    found = list_checkpoints(tmp_path / "ckpt", "spirals-v1")
    assert [step for step, _ in found] == [12, 20]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        checkpoint_name("spirals-v1", 12),
        checkpoint_name("spirals-v1", 20),
    ]
    data = load_checkpoint(found[-1][1])
    assert data["global_step"] == 20 and data["run_id"] == "spirals-v1" and data["model"]["w"].tolist() == [20.0, 20.0]
    assert list_checkpoints(tmp_path / "ckpt", "other-run") == []
    (tmp_path / "not-one.pt").write_bytes(b"junk")
    with pytest.raises(Exception):  # noqa: B017 - torch's own unpickling error
        load_checkpoint(tmp_path / "not-one.pt")


# -- metrics ---------------------------------------------------------------------------------------------------


def test_swarm_view_aggregates_the_leaderboard() -> None:
    now = time.time()
    view = SwarmView()
    entry = LeaderboardEntry(peer_id="a", nickname="alice", samples=100, samples_per_second=50.0, last_seen=now)
    stale = LeaderboardEntry(peer_id="b", nickname="bob", samples=40, samples_per_second=9.0, last_seen=now - 45)
    view.update(HostSwarm(global_epoch=3, leaderboard=(entry, stale)))
    view.update(
        HostSwarm(global_epoch=4, leaderboard=(dataclasses.replace(entry, samples=80),))
    )  # records only ever grow
    summary = view.summary()
    assert summary["global_epoch"] == 4 and summary["volunteers_training"] == 1
    assert summary["swarm_samples_per_second"] == 50.0
    assert summary["volunteers_seen"] == 2 and summary["samples_seen"] == 140


# -- the HTTP API ----------------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_peers_and_swarm_endpoints() -> None:
    fake = SimpleNamespace(peers=(), view=SwarmView(), swarm_json=lambda: {"peers": list(fake.peers)})
    server = HostServer(fake, "127.0.0.1", 0).start()  # type: ignore[arg-type]
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(base + "/peers")[0] == 503 and _get(base + "/healthz")[0] == 503
        fake.peers = (HOST, PEER_A)
        fake.view.peer_id = HOST_ID
        assert _get(base + "/peers") == (200, "text/plain; charset=utf-8", f"{HOST}\n{PEER_A}\n")
        status, content_type, body = _get(base + "/swarm")
        assert status == 200 and content_type == "application/json" and json.loads(body) == {"peers": [HOST, PEER_A]}
        assert _get(base + "/healthz")[0] == 200 and _get(base + "/nope")[0] == 404
    finally:
        server.stop()


# -- flags and refusals ----------------------------------------------------------------------------------------


def test_flags() -> None:
    options = parse_host_args(
        [
            "--project",
            "lab/spirals",
            "--peers-port",
            "8472",
            "--extra-peers",
            PEER_A,
            "--refresh-every",
            "2m",
            "--checkpoint-dir",
            "ckpt",
            "--checkpoint-every",
            "1h",
            "--checkpoint-repo",
            "lab/spirals-checkpoints",
            "--no-update-peers-file",
        ]
    )
    assert options.peers_port == 8472 and options.extra_peers == (PEER_A,) and options.refresh_every == 120
    assert options.checkpoint_every == 3600 and options.checkpoint_repo == "lab/spirals-checkpoints"
    assert options.update_peers_file is False and options.peers_bind == "0.0.0.0"
    defaults = parse_host_args(["--project", "lab/spirals"])
    assert defaults.update_peers_file is None and defaults.peers_port == 0 and defaults.checkpoint_dir is None


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (["host"], "volunteer host needs --project", "--project org/name"),
        (["host", "--project", "lab/x", "--peers-port", "http"], "--peers-port: 'http' is not a port", "--peers-port"),
        (["host", "--project", "lab/x", "--refresh-every", "soon"], "--refresh-every: 'soon' is not a duration", ""),
        (["host", "--project", "lab/x", "--extra-peers", "1.2.3.4"], "invalid peer address '1.2.3.4'", "/p2p/"),
        (
            ["host", "--project", "lab/x", "--checkpoint-dir", "c", "--checkpoint-repo", "lab/x"],
            "--checkpoint-repo is the project's own repository",
            "--checkpoint-repo lab/x-checkpoints",
        ),
        (
            ["host", "--project", "lab/x", "--checkpoint-repo", "lab/y"],
            "--checkpoint-repo needs --checkpoint-dir",
            "add --checkpoint-dir DIR",
        ),
        (
            ["host", "--project", "lab/x", "--checkpoint-dir", "c", "--checkpoint-repo", "y"],
            "--checkpoint-repo 'y' is not a Hub repository id",
            "my-lab/spirals-checkpoints",
        ),
        (["host", "--project", "./nowhere"], "project folder './nowhere' does not exist", "check the path"),
    ],
)
def test_bad_flags(capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str) -> None:
    assert_user_error(capsys, main(argv), error, hint)


def test_a_local_project_cannot_update_a_peers_file_on_the_hub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_project(tmp_path / "spirals")
    code = main(["host", "--project", "./spirals", "--update-peers-file", "--data-dir", str(tmp_path / "host")])
    assert_user_error(capsys, code, "--update-peers-file needs a project on the Hub", "--peers-port")


def test_a_hub_project_needs_consent(hub: HubServer, published: HubRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["host", "--project", "lab/spirals", "--endpoint", hub.url, "--data-dir", "host"])
    assert_user_error(capsys, code, "consent to run project 'spirals'", "--trust")


def test_a_local_project_keeps_no_file_on_the_hub(tmp_path: Path) -> None:
    from volunteer.project import prepare_project

    create_project(tmp_path / "spirals")
    options = parse_host_args(["--project", "./spirals", "--extra-peers", PEER_A])
    host = Host(options, DataDir.open(tmp_path / "host"))
    host.prepared = prepare_project(options.settings, host.data_dir)
    keeper = host._make_keeper()
    assert keeper.hub_file is None and keeper.candidates == [PEER_A]


def test_checkpoints_are_uploaded_to_their_own_repository(hub: HubServer, tmp_path: Path) -> None:
    checkpoint = tmp_path / "spirals-v1-step00000007.pt"
    checkpoint.write_bytes(b"weights")
    options = parse_host_args(
        ["--project", "lab/spirals", "--checkpoint-dir", str(tmp_path), "--checkpoint-repo", "lab/spirals-ckpt"]
    )
    host = Host(dataclasses.replace(options, settings=options.settings.replace(endpoint=hub.url)), None)  # type: ignore[arg-type]
    host.prepared = SimpleNamespace(project=SimpleNamespace(manifest=SimpleNamespace(run_id="spirals-v1")))
    events: list[str] = []
    host.event = lambda kind, message: events.append(f"[{kind}] {message}")  # type: ignore[method-assign]
    worker = threading.Thread(target=host._upload_loop, daemon=True)
    worker.start()
    host._uploads.put(CheckpointSaved(str(tmp_path / "gone.pt"), 6))
    deadline = time.monotonic() + 20
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    host._uploads.put(CheckpointSaved(str(checkpoint), 7))
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    host.stopping.set()
    worker.join(timeout=5)
    repo = hub.repos["lab/spirals-ckpt"]
    assert repo.files()["checkpoint.pt"] == b"weights"
    assert repo.messages[repo.refs["main"]] == "checkpoint of run spirals-v1 at global step 7"
    assert events[0].startswith("[warning] could not upload") and "gone.pt" in events[0]
    assert events[1] == f"[checkpoint] uploaded global step 7 to lab/spirals-ckpt at commit {repo.refs['main']}"


def test_a_project_training_in_another_mode_than_sync_gets_no_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "spirals"
    create_project(project)
    manifest = project / "volunteer.toml"
    manifest.write_text(manifest.read_text() + '\n[training]\nmode = "diloco"\n')
    code = main(["host", "--project", "./spirals", "--data-dir", str(tmp_path / "host")])
    assert_user_error(capsys, code, "this project's training mode is 'diloco'", "without a host")
