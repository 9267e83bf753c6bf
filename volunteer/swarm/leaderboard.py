"""The swarm's leaderboard: every client publishes a signed record of its contribution into the DHT.

As in hivemind's ALBERT example, records live under ``<run_id>_volunteers``, one sub-key per peer's
public key. ``RSASignatureValidator`` makes sure a peer can only write its own record and
``SchemaValidator`` rejects malformed ones, so a buggy or hostile peer cannot rewrite anyone's credit.

Any peer can still write a record under a key of its own making, so nothing in a record is believed before
:func:`parse_entries` has checked it. A client signs with the RSA key of its libp2p identity
(:func:`use_identity_for_signing`), so the sub-key a record is stored under determines the peer id that
wrote it: a record that claims another peer id is an impersonation. Numbers must be finite and within
:data:`MAX_SAMPLES` and :data:`MAX_SAMPLES_PER_SECOND`, the record's time within :data:`CLOCK_WINDOW` of
ours, and the nickname is cleaned of control characters and cut to :data:`NICKNAME_CHARS`. A record that
fails is dropped and counted (``Snapshot.leaderboard_dropped``), never shown.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import pydantic.v1 as pydantic
from hivemind.dht import DHT
from hivemind.dht.crypto import RSASignatureValidator
from hivemind.dht.schema import BytesWithPublicKey, SchemaValidator
from hivemind.utils.crypto import RSAPrivateKey
from hivemind.utils.timed_storage import get_dht_time

from volunteer.errors import DataDirError
from volunteer.stats import LeaderboardEntry, clean_text

log = logging.getLogger(__name__)

RECORD_TTL = 60.0
"""Seconds a record stays in the DHT without being refreshed: a peer that leaves drops off after this."""
MAX_SAMPLES = 10**15
"""The most samples a record may claim: a million GPUs at a thousand samples a second for thirty years."""
MAX_SAMPLES_PER_SECOND = 1e9
"""The most samples per second a record may claim."""
CLOCK_WINDOW = 300.0
"""Seconds a record's time may differ from ours (clock skew plus the record's age) before it is dropped."""
NICKNAME_CHARS = 32
"""Nicknames are cut to this many characters, after control characters are removed."""
MAX_RECORDS = 1000
"""Records read from one answer of the DHT; the rest are dropped unread."""
MAX_ENTRIES = 100
"""Entries kept for the views: the best contributors, and this peer always."""


class VolunteerRecord(pydantic.BaseModel):
    # pydantic's constr/conint/confloat are functions returning types: mypy (without pydantic's plugin) cannot
    # read a call as a type, hence the ignores below
    peer_id: pydantic.constr(min_length=1, max_length=128, strict=True)  # type: ignore[valid-type]
    nickname: pydantic.constr(max_length=64, strict=True)  # type: ignore[valid-type]
    samples: pydantic.conint(ge=0, le=MAX_SAMPLES, strict=True)  # type: ignore[valid-type]
    samples_per_second: pydantic.confloat(  # type: ignore[valid-type]
        ge=0.0, le=MAX_SAMPLES_PER_SECOND, strict=True, allow_inf_nan=False
    )
    time: pydantic.confloat(ge=0.0, strict=True, allow_inf_nan=False)  # type: ignore[valid-type]


class LeaderboardSchema(pydantic.BaseModel):
    volunteers: dict[BytesWithPublicKey, Optional[VolunteerRecord]]  # noqa: UP045 - pydantic v1 needs Optional


def leaderboard_key(run_id: str) -> str:
    return f"{run_id}_volunteers"


def record_validators(run_id: str, private_key: RSAPrivateKey | None = None) -> tuple[list[Any], bytes]:
    """Validators to pass to ``hivemind.DHT(record_validators=...)``, and the public key records are signed with.

    Args:
        run_id: The swarm's run id.
        private_key: The key to sign with; hivemind's process-wide key when None (see
            :func:`use_identity_for_signing`).
    """
    signature = RSASignatureValidator(private_key)
    return [SchemaValidator(LeaderboardSchema, prefix=run_id), signature], signature.local_public_key


def load_identity_key(identity_path: str) -> RSAPrivateKey:
    """The RSA key of a libp2p identity file (hivemind's ``identity_path``), created like hivemind does if absent.

    Raises:
        DataDirError: The file exists but does not hold an RSA identity.
    """
    from hivemind.p2p import P2P
    from hivemind.proto import crypto_pb2

    if not os.path.exists(identity_path):
        P2P.generate_identity(identity_path)
    try:
        with open(identity_path, "rb") as f:
            proto = crypto_pb2.PrivateKey.FromString(f.read())
        if proto.key_type != crypto_pb2.KeyType.RSA:
            raise ValueError(f"a {crypto_pb2.KeyType.Name(proto.key_type)} key, not RSA")
        key = RSAPrivateKey.__new__(RSAPrivateKey)
        key.__setstate__({"_private_key": proto.data})
    except Exception as e:
        raise DataDirError(
            f"identity file {identity_path!r} cannot be used: {e}",
            f"delete it to get a new peer id: rm {identity_path}",
        ) from None
    return key


def use_identity_for_signing(identity_path: str) -> RSAPrivateKey:
    """Sign every DHT record of this process with the key of its libp2p identity; returns that key.

    hivemind signs with one process-wide RSA key (its progress tracker makes its own validator with it), and
    a DHT keeps only the first signature validator it is given: setting the process-wide key is the one way
    all of them agree. Call it before the DHT or anything that signs is created.

    Raises:
        DataDirError: The identity file cannot be used.
        RuntimeError: This hivemind keeps its process-wide key elsewhere (not 1.1.x).
    """
    key = load_identity_key(identity_path)
    if "_process_wide_key" not in vars(RSAPrivateKey) or "_process_wide_key_lock" not in vars(RSAPrivateKey):
        raise RuntimeError("this hivemind has no RSAPrivateKey._process_wide_key: volunteer needs hivemind 1.1.x")
    with RSAPrivateKey._process_wide_key_lock:
        RSAPrivateKey._process_wide_key = key
    return key


@functools.lru_cache(maxsize=4096)
def peer_id_of_subkey(subkey: bytes) -> str:
    """The libp2p peer id of the RSA key a leaderboard sub-key names (``[owner:ssh-rsa ...]``).

    libp2p derives an RSA peer id from the key itself (a sha2-256 multihash of the protobuf-encoded
    public key), so the id is bound to the key that signed the record.

    Raises:
        ValueError: The sub-key names no RSA key, or several.
    """
    import base58
    import multihash
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from hivemind.proto import crypto_pb2

    if not isinstance(subkey, bytes):
        raise ValueError("the sub-key is not bytes")
    keys = set(RSASignatureValidator._PUBLIC_KEY_RE.findall(subkey))
    if len(keys) != 1:
        raise ValueError("the sub-key does not name exactly one public key")
    try:
        public_key = serialization.load_ssh_public_key(keys.pop())
    except Exception as e:  # cryptography raises ValueError, or UnsupportedAlgorithm for an unknown key type
        raise ValueError(f"the sub-key's public key cannot be read: {type(e).__name__}") from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the sub-key's public key is not RSA")
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = crypto_pb2.PublicKey(key_type=crypto_pb2.RSA, data=spki).SerializeToString()
    digest = multihash.encode(hashlib.sha256(encoded).digest(), multihash.coerce_code("sha2-256"))
    return base58.b58encode(digest).decode()


@dataclass(frozen=True)
class Leaderboard:
    """What :func:`parse_entries` made of the DHT's answer."""

    entries: tuple[LeaderboardEntry, ...] = ()
    """Validated entries, best contributor first."""
    dropped: int = 0
    """Records that failed validation, or did not fit in :data:`MAX_ENTRIES`."""


class LeaderboardPublisher(threading.Thread):
    """Publishes this peer's record and reads everyone's, every ``interval`` seconds, off the training thread."""

    def __init__(
        self,
        dht: DHT,
        run_id: str,
        public_key: bytes,
        own_record: Callable[[], VolunteerRecord],
        interval: float = 5.0,
    ) -> None:
        super().__init__(name="volunteer-leaderboard", daemon=True)
        self.dht, self.key, self.public_key = dht, leaderboard_key(run_id), public_key
        self.own_record = own_record
        self.interval = interval
        self._stop_event = threading.Event()
        self._board = Leaderboard()

    @property
    def entries(self) -> tuple[LeaderboardEntry, ...]:
        return self._board.entries

    @property
    def dropped(self) -> int:
        """Records dropped from the latest read of the leaderboard."""
        return self._board.dropped

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.publish_once()
            except Exception as e:  # the swarm may be unreachable for a while: keep trying
                log.debug("leaderboard update failed: %s", e)
            self._stop_event.wait(self.interval)

    def publish_once(self) -> Leaderboard:
        record = self.own_record()
        self.dht.store(
            self.key,
            subkey=self.public_key,
            value=record.dict(),
            expiration_time=get_dht_time() + RECORD_TTL,
            return_future=True,
        ).result(timeout=self.interval * 2)
        found = self.dht.get(self.key, latest=True)
        self._board = parse_entries(found.value if found is not None else None, record.peer_id)
        return self._board

    def stop(self) -> None:
        self._stop_event.set()


def parse_entries(value: Any, own_peer_id: str, now: float | None = None) -> Leaderboard:
    """Validated leaderboard entries from a DHT dictionary value, best contributor first (see the module doc).

    Args:
        value: ``dht.get(key, latest=True).value``: sub-key -> ``ValueWithExpiration`` of a record dict.
        own_peer_id: This peer's id, to mark its entry; "" for none.
        now: The time to check records' times against; the clock when None.
    """
    if not isinstance(value, dict):
        return Leaderboard()
    now = time.time() if now is None else now
    entries: list[LeaderboardEntry] = []
    dropped = 0
    for index, (subkey, item) in enumerate(value.items()):
        if index >= MAX_RECORDS:
            dropped += len(value) - MAX_RECORDS
            break
        try:
            entries.append(_entry(subkey, getattr(item, "value", None), own_peer_id, now))
        except Exception as e:  # whatever is wrong with a record, it is dropped, never shown
            dropped += 1
            log.debug("dropped a leaderboard record: %s: %s", type(e).__name__, e)
    entries.sort(key=lambda e: (-e.samples, e.peer_id))
    if len(entries) > MAX_ENTRIES:
        kept = entries[:MAX_ENTRIES]
        own = [e for e in entries[MAX_ENTRIES:] if e.is_self]
        if own:
            kept[-1:] = own
        dropped += len(entries) - len(kept)
        entries = kept
    return Leaderboard(tuple(entries), dropped)


def _entry(subkey: Any, data: Any, own_peer_id: str, now: float) -> LeaderboardEntry:
    try:
        record = VolunteerRecord.parse_obj(data)
    except (pydantic.ValidationError, TypeError) as e:
        raise ValueError(f"malformed: {str(e).splitlines()[0]}") from None
    signer = peer_id_of_subkey(subkey)
    if record.peer_id != signer:
        raise ValueError(f"claims peer id {record.peer_id[:64]!r} but was signed by {signer}")
    if not abs(record.time - now) <= CLOCK_WINDOW:
        raise ValueError(f"its time is {record.time - now:+.0f} s from ours")
    return LeaderboardEntry(
        peer_id=signer,
        nickname=_nickname(record.nickname),
        samples=record.samples,
        samples_per_second=record.samples_per_second,
        last_seen=record.time,
        is_self=bool(own_peer_id) and signer == own_peer_id,
    )


def _nickname(text: str) -> str:
    return " ".join(clean_text(text).split())[:NICKNAME_CHARS]


def make_record(peer_id: str, nickname: str, samples: int, samples_per_second: float) -> VolunteerRecord:
    speed = float(samples_per_second)
    return VolunteerRecord(
        peer_id=peer_id,
        nickname=_nickname(nickname),
        samples=min(max(0, int(samples)), MAX_SAMPLES),
        samples_per_second=min(max(0.0, speed), MAX_SAMPLES_PER_SECOND) if math.isfinite(speed) else 0.0,
        time=float(time.time()),
    )
