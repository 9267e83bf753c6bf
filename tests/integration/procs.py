"""Start real peers as separate processes, wait on them with bounds, and never leave one behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import kill_process_tree

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """A child process in its own session, so its whole group (p2pd, DHT, averagers) can be killed."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True, cwd=REPO
        )

    @classmethod
    def python(cls, module: str, *args: str, log: Path, env: dict[str, str] | None = None) -> Proc:
        return cls([sys.executable, "-m", module, *args], log, env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """kill -9 the whole process group at once, like a power cut."""
        kill_process_tree(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.kill()
        else:  # the main process is gone, its group may not be
            kill_process_tree(self.popen.pid, signal.SIGKILL)
        self._log.close()


def wait_for(predicate, timeout: float, what: str, procs: list[Proc] = (), interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail with the peers' logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.popen.poll() is not None:
                raise AssertionError(
                    f"peer exited with {proc.popen.returncode} while waiting for {what}:\n" + proc.output()[-4000:]
                )
        time.sleep(interval)
    logs = "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in procs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
