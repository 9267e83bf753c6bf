"""The peer list: ``--initial-peers``/``INITIAL_PEERS``, the project's peers file and URL, and the cache.

Addresses from every source are validated and merged in that order, without duplicates. The session records
the list that let it join (:func:`remember_working_peers`); when every configured source fails, that cached
list is used instead. An empty list means this peer starts a new swarm.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from volunteer.datadir import DataDir, atomic_write_text
from volunteer.errors import DataDirError, PeerAddressError, ProjectError
from volunteer.swarm.multiaddrs import dedupe, split_addresses, validate_peer_address

log = logging.getLogger(__name__)

MAX_URL_BYTES = 1 << 20
CONNECT_TIMEOUT = 3.0
MAX_URL_SECONDS = 30.0
"""The longest a peers URL may take, whatever the manifest's ``peers.url_timeout`` says."""
_FILE_HINT = (
    "write one full multiaddress a line, like /ip4/203.0.113.5/tcp/31337/p2p/QmXyz... ('#' starts a comment); "
    "a peer prints its address when it starts"
)


@dataclass(frozen=True)
class PeerList:
    """The peers to join, and where they came from."""

    addresses: tuple[str, ...] = ()
    """Validated multiaddresses, without duplicates. Empty: this peer starts a new swarm."""
    sources: tuple[str, ...] = ()
    """One line per source that gave addresses, e.g. ``"--initial-peers/INITIAL_PEERS: 2"``."""
    warnings: tuple[str, ...] = ()
    """Sources that failed, and addresses that were skipped."""
    from_cache: bool = False
    """True when every source failed and the list that worked last time is used."""

    @property
    def new_swarm(self) -> bool:
        return not self.addresses


class SourceFailed(Exception):
    """A peer source that could not be read (network, HTTP status, format)."""


def collect_peers(
    *,
    initial_peers: str | Sequence[str] | None,
    run_id: str,
    data_dir: DataDir,
    root: Path | None = None,
    peers_file: str | None = None,
    peers_url: str | None = None,
    url_timeout: float = 5.0,
    shown_file: str | None = None,
) -> PeerList:
    """Merge the peer sources of a run (see the module docstring).

    Args:
        initial_peers: ``--initial-peers`` / ``INITIAL_PEERS``, as resolved by the settings.
        run_id: The swarm's run id: the cache is kept per run.
        data_dir: Where the cache lives.
        root: The project folder, for ``peers_file``.
        peers_file: The manifest's ``peers.file``, relative to ``root``.
        peers_url: The manifest's ``peers.url``.
        url_timeout: Seconds to wait for ``peers_url``.
        shown_file: How messages name the peers file (``org/name@1a2b3c4:peers.txt``); ``peers_file`` if None.

    Raises:
        PeerAddressError: an invalid address in ``initial_peers``.
        ProjectError: an invalid line in the project's peers file.
    """
    addresses: list[str] = []
    sources: list[str] = []
    warnings: list[str] = []
    failed = False

    given = [validate_peer_address(a, "--initial-peers/INITIAL_PEERS") for a in split_addresses(initial_peers)]
    if given:
        addresses += given
        sources.append(f"--initial-peers/INITIAL_PEERS: {len(given)}")

    if peers_file is not None and root is not None:
        from_file = read_peers_file(root / peers_file, shown_file or peers_file)
        if from_file:
            addresses += from_file
            sources.append(f"{peers_file}: {len(from_file)}")

    if peers_url is not None:
        try:
            from_url, skipped = fetch_peers_url(peers_url, url_timeout)
        except SourceFailed as e:
            failed = True
            warnings.append(f"peers URL {peers_url} failed: {e}")
        else:
            warnings += skipped
            if from_url:
                addresses += from_url
                sources.append(f"{peers_url}: {len(from_url)}")

    merged = dedupe(addresses)
    from_cache = False
    if not merged and failed:
        cached = cached_peers(data_dir, run_id)
        if cached:
            merged = cached
            from_cache = True
            path = data_dir.peers_cache(run_id)
            sources.append(f"cache {path}: {len(cached)}")
            warnings.append(f"every peer source failed; joining through the {len(cached)} peers that worked last time")
    for warning in warnings:
        log.info(warning)  # the caller shows PeerList.warnings
    return PeerList(tuple(merged), tuple(sources), tuple(warnings), from_cache)


def parse_peer_lines(text: str, source: str, *, strict: bool) -> tuple[list[str], list[str]]:
    """Addresses in text with one multiaddress a line and ``#`` comments; also the problems with skipped lines.

    Raises:
        ProjectError: when ``strict``, at the first invalid address, naming ``source`` and the line.
    """
    good: list[str] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for address in split_addresses(line.split("#", 1)[0]):
            try:
                good.append(validate_peer_address(address, f"{source} line {number}"))
            except PeerAddressError as e:
                if strict:
                    raise ProjectError(e.message, _FILE_HINT) from None
                skipped.append(e.message)
    return dedupe(good), skipped


def read_peers_file(path: Path, shown: str) -> list[str]:
    """The project's peers file: every line must be a valid address (the project's authors can fix it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{shown} cannot be read: {e}", f"{_FILE_HINT}; save it as UTF-8 text") from None
    return parse_peer_lines(text, shown, strict=True)[0]


def fetch_peers_url(url: str, timeout: float) -> tuple[list[str], list[str]]:
    """Addresses served at ``url`` (a JSON list of strings, or text like a peers file); bad entries are skipped.

    ``timeout`` bounds the whole fetch, not each read: a server that drips its answer a byte at a time cannot
    hold start-up (or a reconnect) for longer; it is capped at :data:`MAX_URL_SECONDS`.

    Raises:
        SourceFailed: no complete answer within the timeout, a network or HTTP error of any kind, or a body of
            neither form. Nothing else: a peers URL never kills a client.
    """
    limit = max(0.01, min(float(timeout), MAX_URL_SECONDS))
    outcome: dict[str, object] = {}  # "answer" (_download's) or "error"
    done = threading.Event()

    def fetch() -> None:
        try:
            outcome["answer"] = _download(url, limit, time.monotonic() + limit)
        except BaseException as e:  # handed to the caller's thread, which turns it into a warning
            outcome["error"] = e
        finally:
            done.set()

    # the request runs in a daemon thread: requests has no total timeout, and headers may drip in too
    threading.Thread(target=fetch, name="volunteer-peers-url", daemon=True).start()
    if not done.wait(limit):
        raise SourceFailed(f"timed out: no complete answer within {limit:g} s")
    error = outcome.get("error")
    if isinstance(error, SourceFailed):
        raise error
    if isinstance(error, BaseException):
        raise SourceFailed(f"{type(error).__name__}: {_first_line(error)}")
    answer = outcome["answer"]
    assert isinstance(answer, tuple)  # what _download returns
    body, content_type = answer
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceFailed("the answer is not UTF-8 text") from None
    if "json" in content_type or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            reason = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise SourceFailed(f"invalid JSON: {reason}") from None
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise SourceFailed("the JSON is not a list of multiaddress strings")
        text = "\n".join(data)
    return parse_peer_lines(text, url, strict=False)


def _download(url: str, timeout: float, deadline: float) -> tuple[bytes, str]:
    """The body and content type at ``url``, read before ``deadline`` (monotonic) and at most MAX_URL_BYTES."""
    import requests

    with requests.get(
        url,
        timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
        headers={"Accept": "application/json, text/plain;q=0.9"},
        stream=True,
    ) as response:
        if response.status_code != 200:
            raise SourceFailed(f"HTTP {response.status_code}")
        content_type = response.headers.get("Content-Type", "")
        chunks: list[bytes] = []
        size = 0
        # iter_content (not raw.read) turns urllib3's errors, a truncated or badly encoded body, into requests'
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_URL_BYTES:
                raise SourceFailed(f"the answer is larger than {MAX_URL_BYTES} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise SourceFailed(f"timed out: no complete answer within {timeout:g} s")
    return b"".join(chunks), content_type


def cached_peers(data_dir: DataDir, run_id: str) -> list[str]:
    """The addresses that worked last time for ``run_id`` (invalid lines are ignored)."""
    path = data_dir.peers_cache(run_id)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        log.warning("ignoring the peer cache %s: %s", path, e)
        return []
    return parse_peer_lines(text, str(path), strict=False)[0]


def remember_working_peers(data_dir: DataDir, run_id: str, addresses: Sequence[str]) -> None:
    """Cache ``addresses`` as the peers that worked for ``run_id`` (the session calls this once it has joined).

    Invalid addresses are left out; an empty list keeps the previous cache.

    Raises:
        DataDirError: when the cache cannot be written.
    """
    valid: list[str] = []
    for address in addresses:
        try:
            valid.append(validate_peer_address(address))
        except PeerAddressError as e:
            log.warning("not caching %s", e.message)
    valid = dedupe(valid)
    if not valid:
        return
    path = data_dir.peers_cache(run_id)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    text = f"# peers that worked for run {run_id}, written by volunteer at {now}\n" + "\n".join(valid) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise DataDirError(
            f"cannot write the peer cache {str(path)!r}: {e.strerror or e}",
            "fix the data directory's permissions (--data-dir / VOLUNTEER_HOME)",
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:160] if lines else ""
