"""A :class:`~volunteer.stats.SnapshotSource` over HTTP: how ``volunteer attach`` reads a headless session.

The status API: ``GET /status`` answers ``Snapshot.to_dict()``; ``GET /events?since=<seq>`` answers
``{"events": [...]}``; ``POST /control`` with ``{"command": "<Command value>"}`` and the session's token in
``Authorization: Bearer <token>`` answers 200 ``{"ok": true}``, 400 ``{"error": "..."}`` for a bad command,
or 401 without the right token. Network failures raise ``ConnectionError`` naming the URL.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any
from urllib.parse import urlsplit

import requests

from volunteer.constants import DEFAULT_STATUS_PORT
from volunteer.stats import Command, Event, Snapshot, event_from_dict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = DEFAULT_STATUS_PORT
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def is_loopback_host(host_header: str | None) -> bool:
    """Whether an HTTP ``Host`` header names this machine's loopback: localhost, 127.0.0.0/8 or [::1]."""
    if not host_header or any(c in host_header for c in "/?#@\\ \t"):
        return False
    try:
        parts = urlsplit("//" + host_header.strip())
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a port that is not one
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlRefused(ValueError):
    """The session refused a command for want of its control token (HTTP 401 or 403)."""


def normalize_url(url: str | None) -> str:
    """A base URL from what a person types: ``None``, ``host``, ``host:port`` or a full ``http://`` URL.

    Missing parts default to ``http``, 127.0.0.1 and port 8471; a trailing slash is dropped.

    Raises:
        ValueError: The URL has a scheme other than http or https, or is not a URL at all.
    """
    url = (url or "").strip()
    if not url:
        return DEFAULT_URL
    if "://" not in url:
        url = f"http://{url}"
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError as error:
        raise ValueError(f"status URL {url!r} is not a URL: {error}") from None
    if scheme not in ("http", "https"):
        raise ValueError(f"status URL {url!r} must start with http:// or https://")
    if parts.netloc and not host:
        raise ValueError(f"status URL {url!r} names no host")
    if any(ord(c) < 33 or c in '\\"<>^`{|}' for c in url):
        raise ValueError(f"status URL {url!r} contains characters a URL cannot")
    host = host or DEFAULT_HOST
    if ":" in host:
        host = f"[{host}]"
    port = port or (DEFAULT_PORT if scheme == "http" else 443)
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


class StatusClient:
    """Reads snapshots and events from a running volunteer's status endpoint and sends it commands.

    Safe to share between threads (the TUI polls from one and sends from another): requests go one at a
    time over one keep-alive session.

    Args:
        base_url: The endpoint, e.g. ``http://127.0.0.1:8471``; see :func:`normalize_url`.
        timeout: Seconds to wait for each answer.
        token: The session's control token (:mod:`volunteer.control_token`); without it, snapshots and events
            can be read but commands are refused.
    """

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 2.0, *, token: str | None = None) -> None:
        self.base_url = normalize_url(base_url)
        self.timeout = timeout
        self.token = token
        self._session = requests.Session()
        self._session.trust_env = False  # a proxy from the environment must never see a loopback request
        self._lock = threading.Lock()

    def latest(self) -> Snapshot:
        """The session's newest snapshot (``GET /status``).

        Raises:
            ConnectionError: The endpoint cannot be reached or answered with an error status.
            ValueError: The answer is not a snapshot.
        """
        data = self._request("GET", "/status")
        if not isinstance(data, dict):
            raise ValueError(f"{self.base_url}/status did not answer a snapshot object")
        try:
            return Snapshot.from_dict(data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.base_url}/status answered a snapshot this client cannot read: {error}") from error

    def events_since(self, seq: int) -> list[Event]:
        """Events with ``seq`` greater than ``seq``, oldest first (``GET /events?since=<seq>``).

        Raises:
            ConnectionError: The endpoint cannot be reached or answered with an error status.
            ValueError: The answer is not a list of events.
        """
        data = self._request("GET", "/events", params={"since": seq})
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise ValueError(f"{self.base_url}/events did not answer {{'events': [...]}}")
        try:
            return [event_from_dict(event) for event in events]
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{self.base_url}/events answered events this client cannot read: {error}") from error

    def send(self, command: Command) -> None:
        """Ask the session to pause, resume, stop, finish or trust (``POST /control``).

        Raises:
            ConnectionError: The endpoint cannot be reached or answered with a server error.
            ControlRefused: The session refused the command for want of its token (401, 403).
            ValueError: The session refused the command (400).
        """
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._request("POST", "/control", json={"command": Command(command).value}, headers=headers)

    def close(self) -> None:
        """Close the keep-alive connection."""
        self._session.close()

    def __enter__(self) -> StatusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StatusClient({self.base_url!r})"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            with self._lock:
                response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as error:
            raise ConnectionError(
                f"the volunteer status endpoint at {url} did not answer within {self.timeout:g}s"
            ) from error
        except requests.RequestException as error:
            raise ConnectionError(
                f"cannot reach the volunteer status endpoint at {url}: is volunteer running there? ({error})"
            ) from error
        if response.status_code == 400:
            raise ValueError(f"{url} refused the request: {_error_text(response)}")
        if response.status_code in (401, 403) and method == "POST":
            raise ControlRefused(
                f"the session refused the command: {_error_text(response)}"
                if self.token
                else "the session accepts commands only with its control token, and none was found: run this "
                "as the user that started the volunteer, with the same --data-dir"
            )
        if not response.ok:
            raise ConnectionError(
                f"the volunteer status endpoint at {url} answered {response.status_code}: {_error_text(response)}"
            )
        try:
            return response.json()
        except ValueError as error:
            raise ValueError(f"{url} did not answer JSON; is this a volunteer status endpoint?") from error


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason or "no details"
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return str(data)[:200]
