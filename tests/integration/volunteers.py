"""Real headless ``volunteer`` clients in separate processes on 127.0.0.1, observed through /status."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.procs import Proc, wait_for
from tests.support.projects import TINY_PROJECT, headless_args

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_swarm(url: str) -> dict:
    """``volunteer host``'s report of the swarm (its peers-file server's ``/swarm``), or {} while it does not answer."""
    try:
        with urllib.request.urlopen(url + "/swarm", timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return {}


class Volunteer:
    """``python -m volunteer --headless`` with its own data directory and status port."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        *,
        project: str = TINY_PROJECT,
        peers: str | None = None,
        data_dir: Path | None = None,
        host_maddrs: str = "/ip4/127.0.0.1/tcp/0",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir or tmp / f"data-{name}"
        args = headless_args(
            name=name,
            data_dir=self.data_dir,
            status_port=self.port,
            host_maddrs=host_maddrs,
            project=project,
            peers=peers,
            extra=extra,
        )
        log = tmp / f"{name}.log"
        if log.exists():
            log.rename(log.with_suffix(f".{len(list(tmp.glob(name + '.*')))}.log"))
        self.proc = Proc(args, log=log)

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.url + "/status", timeout=2) as response:
                return json.loads(response.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def events(self) -> list[dict]:
        try:
            with urllib.request.urlopen(self.url + "/events?since=0", timeout=2) as response:
                return json.loads(response.read())["events"]
        except (OSError, urllib.error.URLError, ValueError):
            return []

    def wait_status(self, predicate, timeout: float, what: str, others: list[Volunteer] = ()) -> dict:
        def check():
            status = self.status()
            return status if status is not None and predicate(status) else None

        return wait_for(check, timeout, f"{self.name}: {what}", [self.proc, *(o.proc for o in others)])

    def wait_training(self, timeout: float = 90) -> dict:
        return self.wait_status(lambda s: s["state"] == "training" and s["join_addresses"], timeout, "training")

    def address(self) -> str:
        return self.status()["join_addresses"][0]

    def ledger(self, run_id: str = "volunteer-tests-tiny") -> dict:
        return json.loads((self.data_dir / "ledger" / f"{run_id}.json").read_text())

    def stop(self) -> None:
        self.proc.stop()
