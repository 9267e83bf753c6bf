"""``python -m volunteer.healthcheck``: the container's HEALTHCHECK, asking the local status endpoint for the state.

The endpoint is the one the running session recorded in its data directory (``status-endpoint.json``: the
dashboard mode serves its session on a port it picks), else ``VOLUNTEER_STATUS_PORT``, else 8471.

Docker runs this every half minute next to the client, so it uses the standard library only and answers within
its timeout. Exit status 0 means healthy: the endpoint answered with a state other than ``failed`` or
``stopped``. A client started with ``--status-port 0`` has no endpoint; the check then passes with a note, since
there is nothing it could ask. What it prints lands in ``docker inspect --format '{{json .State.Health}}'``.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from volunteer import endpoint_file
from volunteer.constants import ENV_PREFIX, env
from volunteer.settings import DEFAULT_STATUS_PORT, parse_port
from volunteer.stats import UNHEALTHY_STATES

STATUS_PORT_ENV = ENV_PREFIX + "STATUS_PORT"
DEFAULT_TIMEOUT = 5.0


class StatusUnavailable(Exception):
    """The status endpoint did not answer with a JSON object."""


def status_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/status"


def fetch_status(port_or_url: int | str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The JSON object served at ``/status`` on 127.0.0.1 (a port), or under a recorded base URL.

    Proxy variables are ignored: a container's ``HTTP_PROXY`` must never receive a loopback request.

    Raises:
        StatusUnavailable: nothing listens, the request timed out, or the answer is not a JSON object.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = status_url(port_or_url) if isinstance(port_or_url, int) else port_or_url.rstrip("/") + "/status"
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read(1_000_000)
    except urllib.error.HTTPError as e:
        raise StatusUnavailable(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StatusUnavailable(f"{url} did not answer: {reason}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise StatusUnavailable(f"{url} answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise StatusUnavailable(f"{url} answered JSON that is not an object")
    return data


def check(port_or_url: int | str, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """Whether the client on ``port_or_url`` is healthy, and one line saying why."""
    try:
        status = fetch_status(port_or_url, timeout)
    except StatusUnavailable as e:
        return False, f"unhealthy: {e}"
    state = status.get("state")
    if not isinstance(state, str):
        where = status_url(port_or_url) if isinstance(port_or_url, int) else port_or_url
        return False, f"unhealthy: {where} answered without a state"
    if state in UNHEALTHY_STATES:
        return False, f"unhealthy: state is {state}"
    return True, f"healthy: state is {state}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volunteer.healthcheck",
        description="Exit 0 when the local volunteer's status endpoint reports a live state, 1 otherwise.",
    )
    parser.add_argument(
        "--port",
        type=parse_port,
        default=None,
        help=f"status port (default: the one the session recorded in its data directory, else {STATUS_PORT_ENV} or "
        f"{DEFAULT_STATUS_PORT}; 0: the endpoint is off)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        recorded = endpoint_file.recorded_url()
        if recorded is not None:
            healthy, message = check(recorded, args.timeout)
            print(message)
            return 0 if healthy else 1
        raw = env(STATUS_PORT_ENV)
        try:
            port = DEFAULT_STATUS_PORT if raw is None else parse_port(raw)
        except ValueError as e:
            print(f"unhealthy: {STATUS_PORT_ENV}: {e}")
            return 1
    if port == 0:
        print("healthy: the status endpoint is off (status port 0), so there is no state to check")
        return 0
    healthy, message = check(port, args.timeout)
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
