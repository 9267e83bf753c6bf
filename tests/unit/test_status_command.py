"""``volunteer status``: one snapshot over the real status endpoint, human or JSON, exit status = health."""

from __future__ import annotations

import json
import socket

import pytest

from tests.unit.test_status_server import FakeSource
from volunteer.cli import main
from volunteer.stats import ErrorInfo, State
from volunteer.status_server import StatusServer


@pytest.fixture
def served():
    source = FakeSource()
    server = StatusServer(source, "127.0.0.1", 0).start()
    yield source, server.url
    server.stop()


def test_human_report_of_a_live_session(served, capsys):
    _, url = served
    assert main(["status", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("state     training, 2 peers, step 3")
    assert "credited 512, local-only 128 of 640 computed (all time)" in out
    assert "100/256 samples" in out
    assert "ada (12D3KooWpeer)" in out
    assert "network" not in out  # not joined yet: nothing to say


def test_the_report_says_which_network_mode_and_why(served, capsys):
    source, url = served
    source.snapshot = source.snapshot.replace(network_mode="full peer", network_mode_reason="no peer to ask yet")
    assert main(["status", url]) == 0
    assert "network   full peer: no peer to ask yet\n" in capsys.readouterr().out


def test_json_is_the_whole_snapshot_and_strict(served, capsys):
    source, url = served
    source.snapshot = source.snapshot.replace(samples_per_second=float("nan"), loss_smoothed=float("inf"))
    assert main(["status", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))
    assert data["state"] == "training" and data["swarm_samples"] == 512
    # the endpoint writes null for what JSON cannot hold; a figure with a default reads back as that default
    assert data["samples_per_second"] == 0.0 and data["loss_smoothed"] is None


@pytest.mark.parametrize("state", [State.FAILED, State.STOPPED])
def test_a_failed_or_stopped_session_exits_1(served, capsys, state):
    source, url = served
    source.snapshot = source.snapshot.replace(state=state, last_error=ErrorInfo("out of memory", "use --batch-size 8"))
    assert main(["status", url]) == 1
    out = capsys.readouterr().out
    assert "error     out of memory" in out and "hint      use --batch-size 8" in out


def test_nothing_listening_is_one_error_line_and_exit_2(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["status", f"127.0.0.1:{port}", "--timeout", "2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: no volunteer answers at http://127.0.0.1:{port}"
    assert err[1].startswith("hint: ")


@pytest.mark.parametrize("url", ["ftp://x", "::::"])
def test_a_bad_url_is_an_error_with_a_hint(url, capsys):
    assert main(["status", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\nhint: " in err and "Traceback" not in err
