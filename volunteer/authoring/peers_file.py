"""The published peer list that ``volunteer host`` keeps fresh: what goes in it, and the copy on the Hub.

The list is small and stable: the host's own addresses first, then the other long-lived peers it knows of
(those already in the list, and ``--extra-peers``) for as long as they answer. A peer that stops answering
stays listed for a few checks (it may be restarting) and is then dropped. The list is compared with the
peers file on the Hub as a set of addresses, so the file is rewritten only when that set changes, and a
commit that reset it (a new ``publish --replace-peers``, an edit by hand) is repaired at the next check.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from volunteer.errors import PeerAddressError, ProjectError
from volunteer.project.peersources import parse_peer_lines
from volunteer.swarm.multiaddrs import dedupe, peer_id_of, validate_peer_address

MAX_OTHER_PEERS = 8
"""At most this many other peers are listed besides the host: the list is for bootstrapping, not a directory."""


def own_addresses(visible: Iterable[str]) -> list[str]:
    """The host's dialable addresses: loopback ones only when there is nothing else (as the client prints them)."""
    valid = []
    for address in visible:
        try:
            valid.append(validate_peer_address(address))
        except PeerAddressError:
            continue
    outside = [a for a in valid if not _is_loopback(a)]
    return dedupe(outside or valid)


def all_private(addresses: Sequence[str]) -> bool:
    """Whether every address is loopback or in a private range (volunteers elsewhere cannot dial it)."""
    if not addresses:
        return False
    for address in addresses:
        parts = address.split("/")
        if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
            return False  # a DNS name: assume it resolves publicly
        try:
            ip = ipaddress.ip_address(parts[2])
        except ValueError:
            return False
        if not (ip.is_private or ip.is_loopback or ip.is_link_local):
            return False
    return True


def _is_loopback(address: str) -> bool:
    parts = address.split("/")
    return len(parts) > 2 and (parts[2].startswith("127.") or parts[2] == "::1")


def group_by_peer(addresses: Iterable[str]) -> dict[str, list[str]]:
    """Addresses by the peer id they end with, in order."""
    peers: dict[str, list[str]] = {}
    for address in addresses:
        peers.setdefault(peer_id_of(address), []).append(address)
    return peers


class PeerListPlanner:
    """Decides the published list from the host's addresses, the candidates, and whether they answer.

    Args:
        drop_after: Checks in a row a peer may fail to answer before it leaves the list.
        max_others: The most peers listed besides the host.
    """

    def __init__(self, drop_after: int = 3, max_others: int = MAX_OTHER_PEERS) -> None:
        self.drop_after = drop_after
        self.max_others = max_others
        self.strikes: dict[str, int] = {}
        """Failed checks in a row, by peer id."""

    def others(self, own_peer_id: str, candidates: Iterable[str]) -> dict[str, list[str]]:
        """The candidates that are not the host itself, by peer id."""
        return {pid: addrs for pid, addrs in group_by_peer(dedupe(candidates)).items() if pid != own_peer_id}

    def plan(self, own: Sequence[str], others: dict[str, list[str]], answered: dict[str, bool]) -> list[str]:
        """The list to publish; ``answered`` says which of ``others`` answered this check (missing: unknown)."""
        for peer_id in others:
            if peer_id in answered:
                self.strikes[peer_id] = 0 if answered[peer_id] else self.strikes.get(peer_id, 0) + 1
        kept = [pid for pid in others if self.strikes.get(pid, 0) < self.drop_after][: self.max_others]
        for peer_id in list(self.strikes):
            if peer_id not in others:
                del self.strikes[peer_id]
        return dedupe([*own, *(address for pid in kept for address in others[pid])])

    def dropped(self, others: dict[str, list[str]]) -> list[str]:
        return [pid for pid in others if self.strikes.get(pid, 0) >= self.drop_after]


def render_peers_file(addresses: Sequence[str], *, name: str, run_id: str, host_peer_id: str) -> str:
    """The peers file the host writes: a header saying who keeps it, then one address a line."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    header = [
        f"# Bootstrap peers of {name!r} (run {run_id}): one multiaddress a line; '#' starts a comment.",
        f"# Kept fresh by 'volunteer host' (peer {host_peer_id}); last written {now}.",
    ]
    return "\n".join([*header, *addresses]) + "\n"


@dataclass(frozen=True)
class RemotePeers:
    """The peers file on the Hub at the head of a branch."""

    sha: str
    """The branch's commit."""
    path: str | None
    """The peers file the manifest at that commit names (None: it names none)."""
    addresses: tuple[str, ...]
    run_id: str | None
    """The run id of the manifest at that commit (None: unreadable)."""
    exists: bool = True


class HubPeersFile:
    """Reads and rewrites a project's peers file on the Hub, on one branch.

    Args:
        api: An ``huggingface_hub.HfApi``.
        endpoint: The Hub's URL, for messages.
        repo: The project's repository.
        cache_dir: Where downloads are cached (the data directory's ``hub/``).
        branch: The branch volunteers follow (``main``).
    """

    def __init__(self, api: Any, endpoint: str, repo: str, cache_dir: Any, branch: str = "main") -> None:
        self.api, self.endpoint, self.repo, self.cache_dir, self.branch = api, endpoint, repo, cache_dir, branch
        self._last: RemotePeers | None = None

    def read(self) -> RemotePeers:
        """The branch's peers file now (cached while the branch does not move).

        Raises:
            HubWriteError: the Hub cannot be reached or refuses.
        """
        from volunteer.authoring.hubwrite import hub_errors

        with hub_errors(self.api, self.endpoint, self.repo, "read the peers file of"):
            sha = self.api.repo_info(self.repo, revision=self.branch, timeout=30).sha
            if self._last is not None and self._last.sha == sha:
                return self._last
            manifest = self._manifest(sha)
            path = manifest.peers.file if manifest is not None else None
            run_id = manifest.run_id if manifest is not None else None
            text = self._download(path, sha) if path else None
        addresses = tuple(parse_peer_lines(text, path or "", strict=False)[0]) if text is not None else ()
        self._last = RemotePeers(sha=sha, path=path, addresses=addresses, run_id=run_id, exists=text is not None)
        return self._last

    def write(self, text: str, path: str, parent: str, summary: str, description: str = "") -> str:
        """Commit ``text`` as ``path`` on top of ``parent``; returns the new commit's sha.

        Raises:
            HubWriteError: status 412 when the branch moved since ``parent`` (read again, then retry).
        """
        from volunteer.authoring.hubwrite import hub_errors

        with hub_errors(self.api, self.endpoint, self.repo, "update the peers file of"):
            commit = self.api.upload_file(
                path_or_fileobj=text.encode("utf-8"),
                path_in_repo=path,
                repo_id=self.repo,
                revision=self.branch,
                commit_message=summary,
                commit_description=description,
                parent_commit=parent,
            )
        self._last = None
        return commit.oid

    def _download(self, path: str, sha: str) -> str | None:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        try:
            local = self.api.hf_hub_download(self.repo, path, revision=sha, cache_dir=self.cache_dir)
        except RemoteEntryNotFoundError:
            return None
        with open(local, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _manifest(self, sha: str) -> Any:
        from volunteer.project.manifest import MANIFEST_NAME, parse_manifest

        text = self._download(MANIFEST_NAME, sha)
        if text is None:
            return None
        try:
            return parse_manifest(text, f"{self.repo}@{sha[:7]}:{MANIFEST_NAME}")
        except ProjectError:
            return None
