"""Headless volunteers as real processes on 127.0.0.1: a swarm that survives, restarts and leaves cleanly."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest

from tests.integration.procs import wait_for
from tests.integration.volunteers import Volunteer, free_port

pytestmark = pytest.mark.integration


def _stop_gracefully(volunteer: Volunteer) -> float:
    """SIGTERM, as docker stop sends; returns the seconds it took to exit (asserting status 0)."""
    start = time.monotonic()
    volunteer.proc.signal(signal.SIGTERM)
    code = wait_for(lambda: volunteer.proc.popen.poll() is not None, 15, f"{volunteer.name} to exit")
    elapsed = time.monotonic() - start
    assert code and volunteer.proc.popen.returncode == 0, volunteer.proc.output()[-3000:]
    return elapsed


def _leaderboard_names(status: dict) -> set[str]:
    return {entry["nickname"] for entry in status["leaderboard"]}


def test_swarm_survives_losing_its_bootstrap_peer_and_welcomes_a_newcomer(tmp_path):
    volunteers: list[Volunteer] = []
    try:
        a = Volunteer(tmp_path, "a")
        volunteers.append(a)
        a.wait_training()
        b = Volunteer(tmp_path, "b", peers=a.address())
        c = Volunteer(tmp_path, "c", peers=a.address())
        volunteers += [b, c]
        for v in (b, c):
            v.wait_training()
        # everyone sees everyone on the leaderboard (records are refreshed every few seconds)
        for v in (a, b, c):
            v.wait_status(lambda s: _leaderboard_names(s) >= {"a", "b", "c"}, 60, "a full leaderboard", volunteers)
        epoch = max(v.status()["global_epoch"] for v in (b, c))

        a.proc.kill()  # kill -9 of the bootstrap peer's whole process group
        for v in (b, c):
            v.wait_status(lambda s, e=epoch: s["global_epoch"] >= e + 2, 90, "new global steps without a", [b, c])

        d = Volunteer(tmp_path, "d", peers=b.address())  # joins through a survivor
        volunteers.append(d)
        d.wait_training()
        status = d.wait_status(
            lambda s: _leaderboard_names(s) >= {"b", "c", "d"}, 60, "survivors on its board", [b, c, d]
        )
        assert status["num_peers"] >= 2
        reached = b.status()["global_epoch"]
        d.wait_status(lambda s: s["local_epoch"] >= reached, 60, "catching up with the swarm", [b, c, d])

        for v in (b, c, d):
            before = v.status()
            assert _stop_gracefully(v) < 10
            ledger = v.ledger()
            # the ledger holds at least what the volunteer was last shown
            assert ledger["swarm_samples"] >= before["swarm_samples"]
            assert ledger["samples"] >= before["total_samples"] > 0
            assert ledger["samples"] == ledger["swarm_samples"] + ledger["local_only_samples"]
    finally:
        for v in volunteers:
            v.stop()


def test_restart_keeps_peer_id_and_totals_and_catches_up(tmp_path):
    volunteers: list[Volunteer] = []
    metrics_port = free_port()
    try:
        a = Volunteer(tmp_path, "a", extra=("--metrics-address", f"127.0.0.1:{metrics_port}"))
        volunteers.append(a)
        a.wait_training()
        # the read-only endpoint a Prometheus elsewhere scrapes: any Host, no commands
        scrape = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/metrics", headers={"Host": "10.1.2.3"})
        with urllib.request.urlopen(scrape, timeout=5) as response:
            assert b"volunteer_samples_total" in response.read()
        b = Volunteer(tmp_path, "b", peers=a.address())
        volunteers.append(b)
        b.wait_training()
        b.wait_status(lambda s: s["swarm_samples"] > 0, 90, "credit for a swarm step", volunteers)
        peer_id = b.status()["peer_id"]
        assert _stop_gracefully(b) < 10
        first = b.ledger()
        assert first["sessions"] == 1 and first["peer_id"] == peer_id and first["swarm_samples"] > 0

        alone_from = a.status()["global_epoch"]
        # b's goodbye may not reach a before b's DHT is gone; then a holds its steps for the partner that might
        # come back (volunteer.swarm.keeper, isolation_hold 60 s) before it moves on alone
        a.wait_status(lambda s: s["global_epoch"] >= alone_from + 1, 120, "a moving on alone")
        b = Volunteer(tmp_path, "b", peers=a.address(), data_dir=b.data_dir)
        volunteers.append(b)
        status = b.wait_training()
        assert status["peer_id"] == peer_id, "the identity survives a restart"
        assert status["total_samples"] >= first["samples"]
        assert status["swarm_samples"] >= first["swarm_samples"]
        target = a.status()["global_epoch"]
        # not `volunteers`: the first b is in it, stopped (exit 0) on purpose
        b.wait_status(lambda s: s["local_epoch"] >= target, 60, "loading the swarm's state", [a])
        assert _stop_gracefully(b) < 10
        second = b.ledger()
        assert second["sessions"] == 2 and second["samples"] > first["samples"]
    finally:
        for v in volunteers:
            v.stop()


def test_unreachable_peers_mean_reconnecting_then_recovery(tmp_path):
    from hivemind.p2p import P2P, PeerID

    data_a = tmp_path / "data-a"
    data_a.mkdir()
    identity = data_a / "identity.key"
    P2P.generate_identity(str(identity))
    peer_id = PeerID.from_identity(identity.read_bytes())
    port = free_port()
    address = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"

    # b contributed before: while it reconnects, before any training, it shows (and exports to Prometheus) its
    # all-time totals, not zeros that would read as a counter reset and count them all again on its return
    ledger = {"version": 1, "run_id": "volunteer-tests-tiny", "peer_id": "", "sessions": 1, "first_seen": 1.0,
              "updated": 1.0, "samples": 1000, "steps": 60, "swarm_samples": 700, "local_only_samples": 300,
              "compute_seconds": 10.0}  # fmt: skip
    (tmp_path / "data-b" / "ledger").mkdir(parents=True)
    (tmp_path / "data-b" / "ledger" / "volunteer-tests-tiny.json").write_text(json.dumps(ledger))
    volunteers: list[Volunteer] = []
    try:
        b = Volunteer(tmp_path, "b", peers=address)
        volunteers.append(b)
        totals = ("total_samples", "total_steps", "swarm_samples", "local_only_samples")
        status = b.wait_status(lambda s: s["state"] == "connecting", 60, "connecting", volunteers)
        assert {k: status[k] for k in totals} == dict(zip(totals, (1000, 60, 700, 300), strict=True)), status
        status = b.wait_status(
            lambda s: s["state"] == "reconnecting" and s["reconnects"] >= 1, 60, "reconnecting", volunteers
        )
        assert status["last_error"] and "hint" in status["last_error"]
        assert {k: status[k] for k in totals} == dict(zip(totals, (1000, 60, 700, 300), strict=True)), status
        assert b.proc.popen.poll() is None, "an unreachable swarm does not end the process"

        a = Volunteer(tmp_path, "a", data_dir=data_a, host_maddrs=f"/ip4/127.0.0.1/tcp/{port}")
        volunteers.append(a)
        a.wait_training()
        b.wait_status(lambda s: s["state"] == "training" and s["peer_id"], 120, "recovery", volunteers)
        assert any(e["kind"] == "recovered" for e in b.events())
        b.wait_status(lambda s: s["num_peers"] >= 2, 60, "seeing the peer", volunteers)
        assert _stop_gracefully(b) < 10
        assert _stop_gracefully(a) < 10
    finally:
        for v in volunteers:
            v.stop()


def test_second_signal_stops_at_once_with_the_ledger_intact(tmp_path):
    a = Volunteer(tmp_path, "a")
    try:
        a.wait_training()
        a.wait_status(lambda s: s["session_samples"] > 0, 60, "samples", [a])
        a.proc.signal(signal.SIGTERM)
        a.proc.signal(signal.SIGTERM)
        wait_for(lambda: a.proc.popen.poll() is not None, 10, "exit after two signals")
        assert a.proc.popen.returncode == 0
        ledger = a.ledger()
        assert ledger["samples"] > 0 and ledger["sessions"] == 1
    finally:
        a.stop()


def test_out_of_memory_restarts_with_a_smaller_batch(tmp_path):
    from tests.integration.volunteers import FIXTURES

    a = Volunteer(tmp_path, "a", project=str(FIXTURES / "oom_project"), extra=("--max-steps", "20"))
    try:
        wait_for(lambda: a.proc.popen.poll() is not None, 120, "the bounded contribution to end", [])
        assert a.proc.popen.returncode == 0, a.proc.output()[-3000:]
        output = a.proc.output()
        assert "out of GPU memory: restarting with batch size 8" in output
        assert "out of GPU memory: restarting with batch size 4" in output
        ledger = a.ledger("volunteer-tests-oom")
        assert ledger["steps"] == 20 and ledger["samples"] == 20 * 4
    finally:
        a.stop()
