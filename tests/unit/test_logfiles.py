"""The client's log files stay bounded while their writers keep them open, for weeks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from volunteer.logfiles import rotate, trim


def test_rotate_on_open_keeps_a_bounded_number_of_backups(tmp_path: Path) -> None:
    log = tmp_path / "training.log"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" + "x" * 100)
        rotate(log, max_bytes=50, backups=3)
    assert not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.log.1", "training.log.2", "training.log.3"]
    assert (tmp_path / "training.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "training.log.3").read_text().startswith("generation 2")


def test_small_logs_are_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "session.log"
    log.write_text("short\n")
    rotate(log, max_bytes=50)
    assert not trim(log, max_bytes=50)
    assert log.read_text() == "short\n"


def test_trim_while_another_process_keeps_writing(tmp_path: Path) -> None:
    """A writer holding the file with O_APPEND (as the training process does) goes on at the new end."""
    log = tmp_path / "training.log"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            f"fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
            "for i in range(400):\n"
            "    os.write(fd, f'line {i:04d}\\n'.encode())\n"
            "    time.sleep(0.002)\n",
        ]
    )
    trims = 0
    deadline = time.monotonic() + 30
    while writer.poll() is None and time.monotonic() < deadline:
        trims += trim(log, max_bytes=400, backups=2)
        time.sleep(0.01)
    writer.wait(timeout=30)
    assert trims >= 2
    # no hole of NUL bytes where the writer's old offset was: it appends at the new end
    assert b"\0" not in log.read_bytes()
    assert log.read_text().endswith("line 0399\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.log", "training.log.1", "training.log.2"]
    assert os.path.getsize(tmp_path / "training.log.1") > 400
