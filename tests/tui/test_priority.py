"""The dashboard yields the CPU to training: run_tui lowers its own priority, never the session's."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
import tui
from tui.app import VolunteerApp

seen = {}

def run(self, *args, **kwargs):
    seen["during"] = os.nice(0)

VolunteerApp.run = run
before = os.nice(0)
code = tui.run_tui(source=None)
print(before, seen["during"], code)
"""


def test_run_tui_lowers_its_own_priority_by_ten():
    # in a child process: a niceness once raised cannot be lowered again without privileges
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, during, code = (int(value) for value in done.stdout.split())
    assert during == min(19, before + 10)
    assert code == 0
