"""The status endpoint serves whatever SnapshotSource it is given, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from volunteer.errors import ConfigError
from volunteer.stats import Command, Event, LeaderboardEntry, ProjectInfo, Snapshot, State
from volunteer.status_server import StatusServer


class FakeSource:
    def __init__(self) -> None:
        self.snapshot = Snapshot(
            state=State.TRAINING,
            time=1.0,
            peer_id="12D3KooWpeer",
            nickname="ada",
            project=ProjectInfo(name="Demo", repo="demo", run_id="run"),
            session_samples=640,
            swarm_samples=512,
            local_only_samples=128,
            total_samples=640,
            samples_per_second=100.5,
            loss=0.25,
            global_epoch=3,
            num_peers=2,
            samples_accumulated=100,
            target_batch_size=256,
            leaderboard=(LeaderboardEntry("12D3KooWpeer", "ada", 512, 100.5, 1.0, True),),
        )
        self.commands: list[Command] = []
        self.events = [Event(1, 1.0, "joined", "hello"), Event(2, 2.0, "paused", "paused")]

    def latest(self) -> Snapshot:
        return self.snapshot

    def events_since(self, seq: int) -> list[Event]:
        return [e for e in self.events if e.seq > seq]

    def send(self, command: Command) -> None:
        self.commands.append(command)


@pytest.fixture
def served():
    source = FakeSource()
    server = StatusServer(source, "127.0.0.1", 0).start()
    yield source, server.url
    server.stop()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_status_round_trips_the_snapshot(served):
    source, url = served
    status, body = _get(url + "/status")
    assert status == 200
    assert Snapshot.from_dict(json.loads(body)) == source.snapshot


def test_events_since(served):
    _, url = served
    _, body = _get(url + "/events?since=1")
    assert [e["kind"] for e in json.loads(body)["events"]] == ["paused"]


def test_metrics_in_prometheus_text_format(served):
    _, url = served
    status, body = _get(url + "/metrics")
    text = body.decode()
    assert status == 200
    assert "volunteer_swarm_samples_total 512.0" in text
    assert "volunteer_local_only_samples_total 128.0" in text
    assert 'volunteer_state{state="training"} 1.0' in text
    assert "volunteer_peers 2.0" in text
    assert 'nickname="ada"' in text


def test_control_passes_commands_and_rejects_unknown_ones(served):
    source, url = served
    assert _post(url + "/control", {"command": "pause"}) == (200, {"ok": True})
    assert _post(url + "/control", {"command": "finish"})[0] == 200
    code, body = _post(url + "/control", {"command": "explode"})
    assert code == 400 and "pause" in body["error"]
    assert source.commands == [Command.PAUSE, Command.FINISH]


def test_a_busy_port_is_a_clear_error(served):
    _, url = served
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError) as info:
        StatusServer(FakeSource(), "127.0.0.1", port)
    assert "--status-port" in info.value.hint
