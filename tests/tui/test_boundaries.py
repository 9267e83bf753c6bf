"""The TUI's boundaries: what it imports, what the core never imports, the docs, run_tui's exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tui.fakes import FakeSource, failed, snapshot
from tui import run_tui
from tui.app import VolunteerApp
from tui.figures import help_markdown
from volunteer.stats import State

ROOT = Path(__file__).resolve().parents[2]


def modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    return set(result.stdout.split())


def test_the_tui_loads_nothing_heavy_from_the_core() -> None:
    loaded = modules_after("import tui, tui.app")
    assert not {"torch", "lightning", "hivemind", "pytorch_lightning"} & loaded
    core = {name for name in loaded if name == "volunteer" or name.startswith("volunteer.")}
    assert core <= {"volunteer", "volunteer.stats", "volunteer.errors", "volunteer.status_client"}


def test_the_core_contract_never_loads_textual_or_the_tui() -> None:
    loaded = modules_after("import volunteer.stats, volunteer.status_client")
    assert not {"textual", "tui"} & loaded


def test_the_tui_sources_import_only_the_allowed_core_modules() -> None:
    allowed = ("volunteer.stats", "volunteer.errors", "volunteer.status_client")
    # tui/launch.py starts headless sessions for the dashboard to watch: it reads settings and the data
    # directory (and the control token the sessions it starts are driven with), but still never reaches
    # training internals
    launcher_allowed = (
        *allowed,
        "volunteer.constants",
        "volunteer.control_token",
        "volunteer.datadir",
        "volunteer.endpoint_file",
        "volunteer.logfiles",
        "volunteer.settings",
    )
    for path in (ROOT / "tui").rglob("*.py"):
        permitted = launcher_allowed if path.name == "launch.py" else allowed
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and words[1].startswith("volunteer"):
                assert words[1] in permitted, f"{path.relative_to(ROOT)} imports {words[1]}"


def test_docs_carry_the_help_screen_text() -> None:
    docs = (ROOT / "docs" / "tui.md").read_text()
    assert help_markdown() in docs, "docs/tui.md is out of date: paste tui.figures.help_markdown() into it"


def run_headless(monkeypatch: pytest.MonkeyPatch, keys: tuple[str, ...]) -> None:
    """Make run_tui's app.run() headless and press ``keys`` once the first snapshot arrived."""
    original = VolunteerApp.run

    async def auto_pilot(pilot) -> None:  # type: ignore[no-untyped-def]
        for _ in range(500):
            if pilot.app.snapshot is not None:
                break
            await pilot.pause(0.01)
        await pilot.pause(0.1)
        await pilot.press(*keys)

    def run(self: VolunteerApp, **kwargs: object) -> None:
        return original(self, headless=True, size=(80, 24), auto_pilot=auto_pilot)

    monkeypatch.setattr(VolunteerApp, "run", run)


def test_run_tui_returns_0_on_a_normal_quit(monkeypatch: pytest.MonkeyPatch) -> None:
    run_headless(monkeypatch, ("q",))
    source = FakeSource([snapshot(state=State.STOPPED)])
    assert run_tui(source) == 0
    assert source.commands == []


def test_run_tui_returns_1_after_a_failed_session(monkeypatch: pytest.MonkeyPatch) -> None:
    run_headless(monkeypatch, ("q",))
    assert run_tui(FakeSource([failed()]), attach=True) == 1
