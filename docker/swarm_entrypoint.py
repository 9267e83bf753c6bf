#!/usr/bin/env python3
"""``volunteer-swarm``: entrypoint of a compose-scaled volunteer service; each replica gets its own slot.

Replicas of one compose service share one volume and cannot learn their index, so each claims the lowest free
slot n: it locks ``/data/slots/<n>.lock`` (``/data`` being ``VOLUNTEER_HOME``) and keeps that file open through
``exec``, so the lock lives exactly as long as the client does, and a crashed replica's slot is free at once.
Slot n keeps its identity, consent and ledger in ``/data/peer-<n>`` across restarts, while the Hub cache
(``HF_HOME``) stays shared.

Each replica writes its full address to ``/data/slots/<n>.maddr`` before it starts. Slot 0 never waits: it joins
the replicas that answer right now, or, when none does, starts the swarm as its bootstrap peer. The other slots
wait until a live replica answers, then join every one that does. The client's own flags and environment win:
with ``--initial-peers`` or ``VOLUNTEER_INITIAL_PEERS`` set, the replica joins those instead.

Usage (compose.yaml): entrypoint ["/usr/bin/tini", "--", "volunteer-swarm"], command: the volunteer flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from volunteer.constants import ENV_PREFIX, env, initial_peers_from_env
from volunteer.datadir import atomic_write_text
from volunteer.swarm.multiaddrs import split_addresses

MAX_SLOTS = 256
WAIT_ENV = ENV_PREFIX + "SWARM_WAIT"
DEFAULT_WAIT = 300.0
"""Seconds a joining replica waits for a live one (the first start of slot 0 imports torch and hivemind)."""


def log(message: str) -> None:
    print(f"volunteer-swarm: {message}", file=sys.stderr, flush=True)


def slot_lock(root: Path, n: int) -> Path:
    return root / "slots" / f"{n}.lock"


def slot_maddr(root: Path, n: int) -> Path:
    return root / "slots" / f"{n}.maddr"


def claim_slot(root: Path, max_slots: int = MAX_SLOTS) -> tuple[int, int]:
    """Lock the lowest free slot; its number and the open, inheritable descriptor that holds the lock."""
    (root / "slots").mkdir(parents=True, exist_ok=True)
    for n in range(max_slots):
        fd = os.open(slot_lock(root, n), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        return n, fd
    raise SystemExit(f"volunteer-swarm: all {max_slots} slots in {root / 'slots'} are taken")


def slot_alive(root: Path, n: int) -> bool:
    """Whether another process holds slot n's lock."""
    path = slot_lock(root, n)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def tcp_port(host_maddrs: str | None) -> int:
    """The fixed TCP port in the listening addresses (the image sets 31337)."""
    for address in split_addresses(host_maddrs):
        parts = address.strip("/").split("/")
        if len(parts) >= 4 and parts[2] == "tcp" and parts[3].isdigit() and int(parts[3]) > 0:
            return int(parts[3])
    raise SystemExit(
        f"volunteer-swarm: {ENV_PREFIX}HOST_MADDRS must name a fixed TCP port, e.g. /ip4/0.0.0.0/tcp/31337 "
        f"(it is {host_maddrs!r})"
    )


def own_ip() -> str:
    """This container's address on the compose network (Docker maps the hostname to it)."""
    ip = socket.gethostbyname(socket.gethostname())
    if ip.startswith("127."):
        raise SystemExit("volunteer-swarm: the hostname resolves to a loopback address; run this under compose")
    return ip


def ensure_identity(path: Path) -> str:
    """The peer id of the hivemind identity at ``path``, created first when missing."""
    from hivemind.p2p import P2P, PeerID

    if not path.exists():
        P2P.generate_identity(str(path))
    return PeerID.from_identity(path.read_bytes()).to_base58()


def answers(maddr: str, timeout: float = 1.0) -> bool:
    """Whether the TCP port in an /ip4/<ip>/tcp/<port>/p2p/<id> address accepts a connection."""
    parts = maddr.strip("/").split("/")
    try:
        with socket.create_connection((parts[1], int(parts[3])), timeout=timeout):
            return True
    except (OSError, IndexError, ValueError):
        return False


def live_peers(root: Path, me: int, max_slots: int = MAX_SLOTS) -> list[str]:
    """The addresses of the other replicas that hold their slot and accept connections."""
    peers = []
    for n in range(max_slots):
        if n == me or not slot_lock(root, n).exists():
            continue
        with contextlib.suppress(FileNotFoundError):
            maddr = slot_maddr(root, n).read_text().strip()
            if maddr and slot_alive(root, n) and answers(maddr):
                peers.append(maddr)
    return peers


def choose_peers(
    root: Path,
    me: int,
    wait: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Slot 0: the live peers now (none: be the bootstrap). Others: wait until at least one answers."""
    peers = live_peers(root, me)
    if me == 0 or peers:
        return peers
    deadline = clock() + wait
    log("waiting for a live replica to join")
    while clock() < deadline:
        sleep(2.0)
        peers = live_peers(root, me)
        if peers:
            return peers
    raise SystemExit(f"volunteer-swarm: no live replica answered within {wait:g} s; compose will restart this one")


def has_initial_peers(args: Sequence[str]) -> bool:
    return initial_peers_from_env() is not None or any(a.split("=", 1)[0] == "--initial-peers" for a in args)


def prepare(args: Sequence[str], root: Path, ip: str | None = None) -> tuple[dict[str, str], int]:
    """Claim a slot and publish this replica's address; the environment for the client and the lock's fd."""
    n, fd = claim_slot(root)
    data_dir = root / f"peer-{n}"
    data_dir.mkdir(parents=True, exist_ok=True)
    maddr_file = slot_maddr(root, n)
    maddr_file.unlink(missing_ok=True)
    port = tcp_port(env(ENV_PREFIX + "HOST_MADDRS"))
    peer_id = ensure_identity(data_dir / "identity.key")
    maddr = f"/ip4/{ip or own_ip()}/tcp/{port}/p2p/{peer_id}"
    atomic_write_text(maddr_file, maddr + "\n")
    environ = dict(os.environ, **{ENV_PREFIX + "HOME": str(data_dir)})
    if has_initial_peers(args):
        log(f"slot {n} ({maddr}): joining the peers given to it")
    else:
        wait = float(env(WAIT_ENV) or DEFAULT_WAIT)
        peers = choose_peers(root, n, wait)
        if peers:
            environ[ENV_PREFIX + "INITIAL_PEERS"] = " ".join(peers)
            log(f"slot {n} ({maddr}): joining {len(peers)} live replica(s)")
        else:
            log(f"slot {n} ({maddr}): no live replica, starting the swarm as its bootstrap peer")
    return environ, fd


def main(argv: Sequence[str] | None = None, execute: Callable[..., object] = os.execvpe) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(env(ENV_PREFIX + "HOME") or "/data")
    environ, _lock_fd = prepare(args, root)
    # the lock's descriptor stays open in the client: the slot is held for as long as it runs
    execute("volunteer", ["volunteer", *args], environ)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
