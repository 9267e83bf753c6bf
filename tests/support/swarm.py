"""Headless volunteers on separate hosts (see :mod:`tests.support.netns`), observed through their /status.

One :class:`HostVolunteer` is ``python -m volunteer --headless`` run inside one host's namespace, listening on
every interface of that host (its bridge address and its loopback, as a real volunteer does). The test
process reads its status endpoint on the host's loopback. :class:`Swarm` starts a bootstrap and joiners,
and answers the questions the fault scenarios ask: are the live peers one swarm, and when did they last
take a *joint* global step (one that every live peer counted as averaged with others)?
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.support.netns import Host, Network, kill_tree
from tests.support.projects import TINY_PROJECT, headless_args

REPO = Path(__file__).resolve().parents[2]
STATUS_PORT = 8471


class HostVolunteer:
    """A headless ``volunteer`` in ``host``'s namespace with its own data directory."""

    def __init__(
        self,
        host: Host,
        tmp: Path,
        *,
        peers: str | None = None,
        project: str = TINY_PROJECT,
        data_dir: Path | None = None,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        listen: str = "/ip4/0.0.0.0/tcp/0",
    ) -> None:
        import os
        import subprocess

        self.host = host
        self.name = host.name
        self.data_dir = data_dir or tmp / f"data-{host.name}"
        args = headless_args(
            name=host.name,
            data_dir=self.data_dir,
            status_port=STATUS_PORT,
            host_maddrs=listen,
            project=project,
            peers=peers,
            extra=extra,
        )
        self.log_path = tmp / f"{host.name}.log"
        if self.log_path.exists():
            n = len(list(tmp.glob(f"{host.name}.*log")))
            self.log_path.rename(tmp / f"{host.name}.{n}.log")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            host.command(args), stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        self.started = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def status(self) -> dict | None:
        try:
            return self.host.http_json(STATUS_PORT, "/status")  # type: ignore[return-value]
        except (OSError, ValueError):
            return None

    def events(self) -> list[dict]:
        try:
            return self.host.http_json(STATUS_PORT, "/events?since=0")["events"]  # type: ignore[index]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def address(self) -> str:
        """This peer's multiaddress on the bridge (not its loopback)."""
        status = self.status() or {}
        for address in status.get("join_addresses", ()):
            if f"/ip4/{self.host.address}/" in address:
                return address
        raise AssertionError(f"{self.name} announces no address on the bridge: {status.get('join_addresses')}")

    def ledger(self, run_id: str = "volunteer-tests-tiny") -> dict:
        import json

        return json.loads((self.data_dir / "ledger" / f"{run_id}.json").read_text())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def training_log(self) -> str:
        path = self.data_dir / "logs" / "training.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """Power cut: SIGKILL to the client and every process under it (worker, DHT, averagers, p2pd)."""
        kill_tree(self.popen.pid)
        with contextlib.suppress(Exception):
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        self._log.close()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, vols: Iterable[HostVolunteer] = ()):
    """Poll ``predicate`` until truthy; on timeout fail with the peers' logs."""
    vols = list(vols)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for v in vols:
            if not v.alive:
                raise AssertionError(f"{v.name} exited with {v.popen.returncode} while waiting for {what}:\n{tail(v)}")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n" + "\n".join(tail(v) for v in vols))


def tail(v: HostVolunteer, chars: int = 2500) -> str:
    return f"--- {v.name} (client)\n{v.output()[-chars:]}\n--- {v.name} (training)\n{v.training_log()[-chars:]}"


class Swarm:
    """Volunteers of one project on hosts of one :class:`Network`."""

    def __init__(self, net: Network, tmp: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.net = net
        self.tmp = tmp
        self.extra = extra
        self.vols: dict[str, HostVolunteer] = {}
        self.others: list[subprocess.Popen] = []

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, name: str, peers: str | None = None, extra: tuple[str, ...] = (), **kwargs) -> HostVolunteer:
        host = self.net.hosts.get(name) or self.net.add_host(name)
        v = HostVolunteer(host, self.tmp, peers=peers, extra=(*self.extra, *extra), **kwargs)
        self.vols[name] = v
        return v

    def start_swarm(self, names: Iterable[str], timeout: float = 180) -> list[HostVolunteer]:
        """The first name bootstraps, the others join through it; wait until they are one swarm."""
        first, *rest = list(names)
        a = self.start(first)
        wait_until(lambda: _training(a.status()), timeout, f"{first} training", [a])
        joiners = [self.start(name, peers=a.address()) for name in rest]
        vols = [a, *joiners]
        self.wait_one_swarm(vols, timeout)
        return vols

    def start_bootstrap_dht(self, name: str = "boot", port: int = 31400) -> tuple[subprocess.Popen, str]:
        """A standalone bootstrap peer, as hivemind's examples run one (``hivemind-dht``): no training, only a
        DHT that volunteers join through. Returns its process (kill it with :func:`kill_tree`) and its address."""
        from hivemind.p2p import P2P, PeerID

        host = self.net.hosts.get(name) or self.net.add_host(name)
        identity = self.tmp / f"{name}.identity"
        P2P.generate_identity(str(identity))
        peer_id = PeerID.from_identity(identity.read_bytes()).to_base58()
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it; closed with the test's tmp
        command = [str(Path(sys.executable).parent / "hivemind-dht"), "--host_maddrs", f"/ip4/0.0.0.0/tcp/{port}"]
        process = subprocess.Popen(
            host.command([*command, "--identity_path", str(identity)]),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.others.append(process)
        address = f"/ip4/{host.address}/tcp/{port}/p2p/{peer_id}"
        wait_until(lambda: host.can_reach(host, port), 60, f"the bootstrap DHT on {name}")
        return process, address

    def live(self) -> list[HostVolunteer]:
        return [v for v in self.vols.values() if v.alive]

    def statuses(self, vols: Iterable[HostVolunteer]) -> dict[str, dict | None]:
        return {v.name: v.status() for v in vols}

    def wait_one_swarm(self, vols: list[HostVolunteer], timeout: float) -> dict[str, dict]:
        """Wait until every peer in ``vols`` takes a joint global step: all see each other, all gain swarm credit."""
        before = {v.name: (v.status() or {}).get("swarm_samples", 0) for v in vols}

        def check():
            statuses = self.statuses(vols)
            if not all(_training(s) for s in statuses.values()):
                return None
            if not all(s["num_peers"] >= len(vols) for s in statuses.values()):
                return None
            if not all(s["swarm_samples"] > before[name] for name, s in statuses.items()):
                return None
            epochs = [s["local_epoch"] for s in statuses.values()]
            return statuses if max(epochs) - min(epochs) <= 1 else None

        return wait_until(check, timeout, f"{[v.name for v in vols]} as one swarm", vols)

    def wait_joint_step(self, vols: list[HostVolunteer], since: dict[str, dict], timeout: float) -> float:
        """Seconds until every peer in ``vols`` has gained swarm credit beyond ``since`` (their earlier
        statuses) at global steps within one of each other: a global step they took together."""
        start = time.monotonic()

        def check():
            statuses = self.statuses(vols)
            if not all(_training(s) for s in statuses.values()):
                return None
            grew = all(s["swarm_samples"] > (since[name] or {}).get("swarm_samples", 0) for name, s in statuses.items())
            epochs = [s["local_epoch"] for s in statuses.values()]
            return grew and max(epochs) - min(epochs) <= 1

        wait_until(check, timeout, f"a joint global step of {[v.name for v in vols]}", vols)
        return time.monotonic() - start

    def stop(self) -> None:
        for v in self.vols.values():
            v.stop()
        for process in self.others:
            kill_tree(process.pid)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)


def _training(status: dict | None) -> bool:
    return bool(status) and status["state"] == "training" and bool(status["join_addresses"])
