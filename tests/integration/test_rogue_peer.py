"""A real rogue peer in the swarm of a real headless volunteer with a dashboard attached, and hostile local requests.

The rogue (``tests.integration.rogue_peer``) writes an impersonation of the victim, non-finite numbers and a
forgery under the victim's own sub-key. Before the fix the dashboard died on the first non-finite time and
the impersonation showed with the victim's peer id as the victim's own entry. Now the dashboard and training
go on, the victim's ``/status`` is strict JSON without any of the rogue's records, and the drop is counted.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.procs import Proc
from tests.integration.volunteers import Volunteer
from tests.tui.helpers import screen_text
from tui.app import VolunteerApp
from tui.widgets import Leaderboard
from volunteer.control_token import read_token
from volunteer.stats import State
from volunteer.status_client import StatusClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

RUN = "volunteer-tests-tiny"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(pilot, condition, what: str, timeout: float = 90.0, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.log_path.name} exited while waiting for {what}:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{screen_text(pilot.app)}")
        await pilot.pause(0.25)


def _strict_status(url: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"/status carried {constant}")

    with urllib.request.urlopen(url + "/status", timeout=5) as response:
        return json.loads(response.read(), parse_constant=refuse)


def _check_board(status: dict, victim_id: str) -> None:
    board = status["leaderboard"]
    mine = [e for e in board if e["is_self"]]
    assert [e["peer_id"] for e in mine] == [victim_id], board
    assert [e for e in board if e["peer_id"] == victim_id] == mine, f"another entry claims the victim's id: {board}"
    for entry in board:
        assert entry["samples"] < 10**12, f"a forged count reached /status: {entry}"
        assert math.isfinite(entry["samples_per_second"]) and math.isfinite(entry["last_seen"]), entry
        assert "pwned" not in entry["nickname"] and not any(ord(c) < 32 for c in entry["nickname"]), entry
        assert entry["nickname"] not in ("forged", "inf", "nan"), entry


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url + "/control",
        data=b'{"command": "stop"}',
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


async def test_a_rogue_peer_neither_crashes_the_dashboard_nor_reaches_the_board(tmp_path) -> None:
    victim = Volunteer(tmp_path, "victim")
    rogue: Proc | None = None
    try:
        victim_id = victim.wait_training(timeout=120)["peer_id"]
        token = read_token(victim.data_dir / "control.token")
        assert token, "the session wrote no control token"
        client = StatusClient(victim.url, token=token)
        app = VolunteerApp(client, attach=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None and app.snapshot.state == State.TRAINING, "training")
            # the victim signs with its identity: its own record is recognised as its own
            await _until(
                pilot,
                lambda: any(e.is_self and e.peer_id == victim_id for e in app.snapshot.leaderboard),
                "the victim's own entry",
                procs=[victim.proc],
            )
            rogue = Proc.python(
                "tests.integration.rogue_peer", victim.address(), victim_id, RUN, "240", log=tmp_path / "rogue.log"
            )
            await _until(pilot, lambda: "ROGUE READY" in rogue.output(), "the rogue to write", 120, [rogue])
            await _until(
                pilot,
                lambda: app.snapshot.leaderboard_dropped >= 1,
                "the victim to read the rogue's records and drop them",
                90,
                [rogue, victim.proc],
            )
            samples = victim.status()["session_samples"]
            end = time.monotonic() + 20  # four more rounds of the leaderboard with the rogue writing
            while time.monotonic() < end:
                _check_board(_strict_status(victim.url), victim_id)
                assert app.is_running and app._exception is None
                await pilot.pause(1.0)
            text = screen_text(app)
            assert "pwned" not in text and "\x1b" not in text
            assert "records dropped" in str(app.query_one(Leaderboard).border_subtitle)
            status = _strict_status(victim.url)
            assert status["state"] == "training" and status["session_samples"] > samples, "training stopped"

            # other local users and web pages cannot drive the session
            assert _post(victim.url, {}) == 401
            assert _post(victim.url, {"Authorization": "Bearer guessed"}) == 401
            assert _post(victim.url, {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}) == 403
            assert _post(victim.url, {"Authorization": f"Bearer {token}", "Host": "evil.example"}) == 403
            await pilot.pause(1.0)
            assert victim.status()["state"] == "training"

            await pilot.press("q")
            await pilot.pause(0.5)
            if app.is_running:
                await pilot.press("d")
            await _until(pilot, lambda: not app.is_running, "the dashboard to close", timeout=10)
        client.close()
    finally:
        if rogue is not None:
            rogue.stop()
        victim.stop()
