"""The peer list: flag and environment, project file, URL, merging, and the cache of peers that worked."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.projects import (
    PEER_A,
    PEER_B,
    PEER_C,
    StaticServer,
    closed_port_url,
    isolate_environment,
    write_project,
)
from volunteer.datadir import DataDir
from volunteer.errors import PeerAddressError, ProjectError
from volunteer.project import collect_peers, prepare_project, remember_working_peers
from volunteer.settings import parse_run_args

RUN = "tiny-test"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir.open(tmp_path / "data")


@pytest.fixture
def web() -> Iterator[StaticServer]:
    with StaticServer() as server:
        yield server


def test_nothing_configured_means_a_new_swarm(data_dir: DataDir) -> None:
    peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir)
    assert peers.addresses == () and peers.new_swarm and peers.sources == () and not peers.from_cache


def test_initial_peers_from_flag_and_environment(
    tmp_path: Path, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_project(tmp_path / "proj")
    settings = parse_run_args(["--project", str(root), "--initial-peers", f"{PEER_A}, {PEER_B} {PEER_A}"])
    assert prepare_project(settings, data_dir).peers.addresses == (PEER_A, PEER_B)

    monkeypatch.setenv("INITIAL_PEERS", PEER_C)
    from_env = prepare_project(parse_run_args(["--project", str(root)]), data_dir).peers
    assert from_env.addresses == (PEER_C,)
    assert from_env.sources == ("--initial-peers/INITIAL_PEERS: 1",)


def test_project_file_with_comments(tmp_path: Path, data_dir: DataDir) -> None:
    (tmp_path / "peers.txt").write_text(f"# bootstrap peers\n\n{PEER_A}  # the lab's server\n  {PEER_B}\n{PEER_A}\n")
    peers = collect_peers(initial_peers=PEER_C, run_id=RUN, data_dir=data_dir, root=tmp_path, peers_file="peers.txt")
    assert peers.addresses == (PEER_C, PEER_A, PEER_B)
    assert peers.sources == ("--initial-peers/INITIAL_PEERS: 1", "peers.txt: 2")


def test_invalid_line_in_project_file(tmp_path: Path, data_dir: DataDir) -> None:
    (tmp_path / "peers.txt").write_text(f"{PEER_A}\n/ip4/0.0.0.0/tcp/1/p2p/{PEER_A.rsplit('/', 1)[1]}\n")
    with pytest.raises(ProjectError, match=r"\(from lab/x@1234567:peers.txt line 2\): 0.0.0.0 is a listening") as e:
        collect_peers(
            initial_peers=None,
            run_id=RUN,
            data_dir=data_dir,
            root=tmp_path,
            peers_file="peers.txt",
            shown_file="lab/x@1234567:peers.txt",
        )
    assert "one full multiaddress a line" in (e.value.hint or "")


def test_invalid_initial_peer(data_dir: DataDir) -> None:
    with pytest.raises(PeerAddressError):
        collect_peers(initial_peers="/ip4/1.2.3.4/tcp/5", run_id=RUN, data_dir=data_dir)


def test_url_json(web: StaticServer, data_dir: DataDir) -> None:
    web.routes["/peers.json"] = (200, "application/json", json.dumps([PEER_A, PEER_B, PEER_A]))
    peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=f"{web.url}/peers.json")
    assert peers.addresses == (PEER_A, PEER_B)
    assert peers.sources == (f"{web.url}/peers.json: 2",) and peers.warnings == ()


def test_url_plain_text_skips_bad_entries(web: StaticServer, data_dir: DataDir) -> None:
    web.routes["/peers"] = (200, "text/plain", f"# live peers\n{PEER_B}\nnot-an-address\n{PEER_C}\n")
    peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=f"{web.url}/peers")
    assert peers.addresses == (PEER_B, PEER_C)
    (warning,) = peers.warnings
    assert "invalid peer address 'not-an-address'" in warning and "line 3" in warning


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ((404, "text/plain", "gone"), "HTTP 404"),
        ((200, "application/json", "[1, 2"), "invalid JSON"),
        ((200, "application/json", '{"peers": []}'), "not a list of multiaddress strings"),
        ((200, "text/plain", b"\xff\xfe"), "not UTF-8"),
    ],
)
def test_url_failures_are_warnings(
    route: tuple[int, str, str | bytes], reason: str, web: StaticServer, data_dir: DataDir
) -> None:
    web.routes["/peers"] = route
    peers = collect_peers(initial_peers=PEER_A, run_id=RUN, data_dir=data_dir, peers_url=f"{web.url}/peers")
    assert peers.addresses == (PEER_A,) and not peers.from_cache
    (warning,) = peers.warnings
    assert f"peers URL {web.url}/peers failed" in warning and reason in warning


def test_url_timeout(data_dir: DataDir) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/peers"
        started = time.monotonic()
        peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=url, url_timeout=0.3)
        assert time.monotonic() - started < 5
    assert peers.addresses == () and "timed out" in peers.warnings[0]


def test_cache_used_when_every_source_fails(data_dir: DataDir) -> None:
    remember_working_peers(data_dir, RUN, [PEER_B, PEER_C, PEER_B])
    assert data_dir.peers_cache(RUN).read_text().startswith("# peers that worked for run tiny-test")
    with closed_port_url() as dead:
        peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=f"{dead}/peers")
    assert peers.addresses == (PEER_B, PEER_C) and peers.from_cache
    assert peers.sources == (f"cache {data_dir.peers_cache(RUN)}: 2",)
    assert any("ConnectionError" in w for w in peers.warnings)
    assert any("worked last time" in w for w in peers.warnings)


def test_cache_not_used_while_a_source_answers(web: StaticServer, data_dir: DataDir) -> None:
    remember_working_peers(data_dir, RUN, [PEER_B])
    web.routes["/peers"] = (200, "application/json", "[]")
    peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=f"{web.url}/peers")
    assert peers.addresses == () and not peers.from_cache
    with closed_port_url() as dead:
        peers = collect_peers(initial_peers=PEER_A, run_id=RUN, data_dir=data_dir, peers_url=f"{dead}/peers")
    assert peers.addresses == (PEER_A,) and not peers.from_cache


def test_cache_is_per_run_and_skips_bad_lines(data_dir: DataDir) -> None:
    remember_working_peers(data_dir, RUN, [PEER_A])
    remember_working_peers(data_dir, "other-run", [PEER_C])
    remember_working_peers(data_dir, RUN, [])  # keeps the previous list
    remember_working_peers(data_dir, RUN, ["garbage", PEER_B])
    assert data_dir.peers_cache(RUN).read_text().splitlines()[1:] == [PEER_B]
    data_dir.peers_cache(RUN).write_text(f"junk\n{PEER_A}\n")
    with closed_port_url() as dead:
        peers = collect_peers(initial_peers=None, run_id=RUN, data_dir=data_dir, peers_url=dead)
    assert peers.addresses == (PEER_A,)
