"""The host's peers keeper: works out the peer list and keeps the project's peers file on the Hub fresh."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from volunteer.authoring.errors import HubWriteError
from volunteer.authoring.host_options import HostOptions
from volunteer.authoring.host_view import SwarmView
from volunteer.errors import VolunteerError

log = logging.getLogger(__name__)


class KeeperHost(Protocol):
    """What :class:`PeersKeeper` uses of the host (volunteer.authoring.host_supervisor.Host)."""

    options: HostOptions
    view: SwarmView
    prepared: Any
    peers: tuple[str, ...]
    peers_file: dict[str, Any]
    stopping: threading.Event

    def ping(self, addresses: Sequence[str]) -> dict[str, bool]: ...

    def event(self, kind: str, message: str) -> None: ...

    def fail(self, error: VolunteerError) -> None: ...


class PeersKeeper(threading.Thread):
    """Works out the peer list every ``refresh_every`` and rewrites the peers file on the Hub when it changes.

    Runs while the hivemind process is up (it needs the host's addresses and its pings).
    """

    def __init__(self, host: KeeperHost, hub_file: Any, planner: Any, baseline: Sequence[str]) -> None:
        super().__init__(name="volunteer-host-peers", daemon=True)
        self.host = host
        self.hub_file = hub_file
        self.planner = planner
        self.baseline = list(dict.fromkeys(baseline))
        """Candidates when the list is not read from the Hub: the project's peers and --extra-peers."""
        self.extra = list(host.options.extra_peers)
        self.candidates: list[str] = list(self.baseline)
        self._active = threading.Event()
        self._written = False
        self._warned: set[str] = set()

    def known_peers(self) -> list[str]:
        """Peers to bootstrap from (the host's own addresses are left out by the hivemind process)."""
        return [*self.host.peers, *self.candidates]

    def resume(self) -> None:
        self._active.set()
        if not self.is_alive():
            self.start()

    def pause(self) -> None:
        self._active.clear()

    def run(self) -> None:
        host = self.host
        while not host.stopping.is_set():
            if not self._active.wait(0.5):
                continue
            try:
                self.sync_once()
            except HubWriteError as e:
                if not self._written and e.status in (401, 403, 404):
                    host.fail(
                        HubWriteError(
                            e.message, f"{e.hint}; or start the host with --no-update-peers-file", status=e.status
                        )
                    )
                    return
                self._warn_once(e.message, f"{e.message}; trying again in {host.options.refresh_every:g} s")
            except Exception as e:  # never let the keeper die: the list is the swarm's way in
                log.exception("peer list update failed")
                self._warn_once(repr(e), f"peer list update failed: {type(e).__name__}: {e}")
            host.stopping.wait(host.options.refresh_every)

    def sync_once(self) -> None:
        host = self.host
        own = list(host.view.addresses)
        own_id = host.view.peer_id
        if not own_id:
            return
        remote = self.hub_file.read() if self.hub_file is not None else None
        if remote is not None:
            self.candidates = [*remote.addresses, *self.extra]
        others = self.planner.others(own_id, self.candidates)
        answered = host.ping([a for addresses in others.values() for a in addresses]) if others else {}
        desired = tuple(self.planner.plan(own, others, answered))
        for peer_id in self.planner.dropped(others):
            self._warn_once(
                f"drop {peer_id}", f"peer {peer_id} has not answered for a while: leaving it out of the list"
            )
        if desired != host.peers:
            host.peers = desired
        if remote is None:
            return
        manifest_run_id = host.prepared.project.manifest.run_id
        if remote.path is None:
            self._warn_once(
                "no path", f"the manifest on main names no peers file: not updating it (commit {remote.sha[:7]})"
            )
            return
        if remote.run_id is not None and remote.run_id != manifest_run_id:
            self._warn_once(
                f"run {remote.run_id}",
                f"main now trains run {remote.run_id}, this host serves run {manifest_run_id}: not rewriting its "
                "peers file (start a host for the new version)",
            )
            return
        host.peers_file = {"path": remote.path, "commit": remote.sha, "addresses": list(remote.addresses)}
        if set(remote.addresses) == set(desired) and remote.exists:
            self._written = True  # nothing to do: it is already right
            return
        from volunteer.authoring.peers_file import render_peers_file

        manifest = host.prepared.project.manifest
        text = render_peers_file(desired, name=manifest.name, run_id=manifest_run_id, host_peer_id=own_id)
        try:
            sha = self.hub_file.write(
                text,
                remote.path,
                remote.sha,
                f"volunteer host: {remote.path} lists {len(desired)} address{'es' if len(desired) != 1 else ''}",
                "\n".join(desired),
            )
        except HubWriteError as e:
            if e.status == 412:
                return  # the branch moved meanwhile: read it again at the next check
            raise
        self._written = True
        host.peers_file = {"path": remote.path, "commit": sha, "addresses": list(desired)}
        added = [a for a in desired if a not in remote.addresses]
        removed = [a for a in remote.addresses if a not in desired]
        change = "; ".join(
            part
            for part in (
                f"added {' '.join(added)}" if added else "",
                f"removed {' '.join(removed)}" if removed else "",
            )
            if part
        )
        host.event("peers_file", f"updated {remote.path} on the Hub at commit {sha} ({change or 'rewritten'})")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.host.event("warning", message)
