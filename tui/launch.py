"""Run a session headless in a child process and show the dashboard as a client of its status endpoint."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from volunteer.constants import CONTROL_TOKEN_ENV, INTERACTIVE_CHILD_ENV
from volunteer.control_token import new_token
from volunteer.datadir import DataDir
from volunteer.errors import VolunteerError
from volunteer.logfiles import open_append_fd
from volunteer.settings import Settings
from volunteer.stats import Command

START_TIMEOUT = 60.0
STOP_TIMEOUT = 12.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildSession:
    """A headless ``volunteer`` child with its own status endpoint; stopped (and reaped) on exit.

    The child's control token is chosen here and handed over in its environment, so the dashboard can
    send commands without waiting for the token file (which ``volunteer attach`` reads).
    """

    def __init__(self, argv: Sequence[str], log_path: str, *, interactive: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = new_token()
        self.log_path = log_path
        self._log = os.fdopen(open_append_fd(log_path), "ab")
        args = [sys.executable, "-m", "volunteer", *argv, "--headless", "--status-port", str(self.port)]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, INTERACTIVE_CHILD_ENV: "1" if interactive else "0", CONTROL_TOKEN_ENV: self.token},
            preexec_fn=_die_with_parent,
        )

    def client(self):
        """A status client for this child, with its control token."""
        from volunteer.status_client import StatusClient

        return StatusClient(self.url, token=self.token)

    def wait_ready(self, client, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VolunteerError(*self._failure())
            try:
                client.latest()
                return
            except ConnectionError:
                time.sleep(0.2)
        raise VolunteerError(f"the session did not start within {timeout:.0f} s", f"see its log: {self.log_path}")

    def _failure(self) -> tuple[str, str]:
        with open(self.log_path, errors="replace") as log:
            lines = [line for line in log.read().splitlines()[-40:] if line.startswith(("error:", "hint:"))]
        message = next((line[7:] for line in lines if line.startswith("error:")), "the session exited")
        hint = next((line[6:] for line in lines if line.startswith("hint:")), f"see its log: {self.log_path}")
        return message, hint

    def stop(self, client=None) -> int | None:
        if self.process.poll() is None and client is not None:
            with contextlib.suppress(ConnectionError, ValueError, OSError):
                client.send(Command.STOP)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode


def run_with_dashboard(argv: Sequence[str], settings: Settings) -> int:
    """``volunteer --project X`` on a terminal: headless child plus dashboard; quitting stops the child."""
    from tui import run_tui

    data_dir = DataDir.open(settings.data_dir)
    child = ChildSession(argv, str(data_dir.root / "logs" / "session.log"))
    client = child.client()
    try:
        child.wait_ready(client)
        code = run_tui(client)
    finally:
        child_code = child.stop(client)
    return code if code else (child_code or 0)


def attach_main(argv: Sequence[str]) -> int:
    """``volunteer attach [URL]``: the dashboard of a running headless volunteer; quitting leaves it running."""
    from tui import run_tui
    from volunteer.endpoint_file import recorded_url
    from volunteer.settings import DEFAULT_STATUS_PORT, ArgumentParser
    from volunteer.status_client import StatusClient, is_loopback_host, normalize_url

    parser = ArgumentParser(prog="volunteer attach", description=attach_main.__doc__)
    parser.add_argument(
        "url",
        nargs="?",
        default=None,
        help="the status endpoint (default: the one the session recorded in its data directory, "
        f"else http://127.0.0.1:{DEFAULT_STATUS_PORT})",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the running volunteer's data directory, where its control token is (default: VOLUNTEER_HOME, "
        "else ~/.local/share/volunteer)",
    )
    args = parser.parse_args(list(argv))
    if args.url is None:
        # the dashboard mode and --status-port move the endpoint; the session records where it listens
        root = Path(args.data_dir).expanduser() if args.data_dir else None
        args.url = recorded_url(root) or f"http://127.0.0.1:{DEFAULT_STATUS_PORT}"
    try:
        url = normalize_url(args.url)
    except ValueError as e:
        raise VolunteerError(
            f"cannot attach to {args.url!r}: {e}",
            f"pass the status endpoint as host:port or http://host:port, e.g. volunteer attach "
            f"127.0.0.1:{DEFAULT_STATUS_PORT}",
        ) from None
    # this machine's token goes only to this machine: a remote endpoint gets one from VOLUNTEER_CONTROL_TOKEN
    local = is_loopback_host(urlsplit(url).netloc)
    client = StatusClient(url, token=find_control_token(args.data_dir, from_file=local))
    try:
        client.latest()
    except ConnectionError:
        raise VolunteerError(
            f"no volunteer answers at {url}",
            "start one with 'volunteer --headless' (its status endpoint is on by default), pass its URL, or in "
            "Docker run: docker exec -it <container> volunteer attach",
        ) from None
    except ValueError as e:
        raise VolunteerError(
            f"{url} does not answer as a volunteer status endpoint: {e}",
            "pass the URL of a running volunteer's status endpoint (its --status-port on 127.0.0.1)",
        ) from None
    return run_tui(client, attach=True)


def find_control_token(data_dir: str | None, *, from_file: bool = True) -> str | None:
    """The control token for ``attach``: ``VOLUNTEER_CONTROL_TOKEN``, else (``from_file``) the data directory's
    token file.

    Without one the dashboard still shows the session, but the session refuses its commands.
    """
    from volunteer.constants import env
    from volunteer.control_token import read_token
    from volunteer.datadir import default_data_dir

    given = env(CONTROL_TOKEN_ENV)
    if given:
        return given.strip()
    if not from_file:
        return None
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    return read_token(root / "control.token")


def demo_main(argv: Sequence[str]) -> int:
    """``volunteer demo [--peers N]``: a whole swarm of the demo project on this machine, no network needed."""
    from tui import run_tui
    from volunteer.settings import ArgumentParser

    parser = ArgumentParser(prog="volunteer demo", description=demo_main.__doc__)
    parser.add_argument("--peers", type=int, default=3, help="volunteers in the swarm, this one included (1-8)")
    parser.add_argument("--data-dir", default=None, help="where the demo peers keep their data")
    args = parser.parse_args(list(argv))
    if not 1 <= args.peers <= 8:
        raise VolunteerError(f"--peers {args.peers} is out of range", "choose from 1 to 8 peers")
    root = DataDir.open(args.data_dir).root / "demo-swarm"
    common = ["--project", "demo", "--host-maddrs", "/ip4/127.0.0.1/tcp/0"]
    background: list[ChildSession] = []
    foreground: ChildSession | None = None
    client = None
    try:
        address = None
        for i in range(1, args.peers):
            peer_args = [*common, "--data-dir", str(root / f"peer-{i}"), "--name", f"demo-peer-{i}"]
            if address:
                peer_args += ["--initial-peers", address]
            child = ChildSession(peer_args, str(root / "logs" / f"peer-{i}.log"), interactive=False)
            background.append(child)
            if address is None:
                address = _first_address(child)
        you = [*common, "--data-dir", str(root / "you"), "--name", "you"]
        if address:
            you += ["--initial-peers", address]
        foreground = ChildSession(you, str(root / "logs" / "you.log"))
        client = foreground.client()
        foreground.wait_ready(client)
        return run_tui(client)
    finally:
        for child in [c for c in [foreground] if c is not None] + background:
            with contextlib.suppress(ConnectionError, ValueError, OSError):
                child.client().send(Command.STOP)
        if foreground is not None:
            foreground.stop(client)
        for child in background:
            child.stop()


def _first_address(child: ChildSession) -> str:
    client = child.client()
    child.wait_ready(client)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise VolunteerError(*child._failure())
        with contextlib.suppress(ConnectionError):
            addresses = client.latest().join_addresses
            if addresses:
                return addresses[0]
        time.sleep(0.3)
    raise VolunteerError("the first demo peer did not join in time", f"see its log: {child.log_path}")
