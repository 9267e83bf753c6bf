"""The swarm's leaderboard: every client publishes a signed record of its contribution into the DHT.

As in hivemind's ALBERT example, records live under ``<run_id>_volunteers``, one sub-key per peer's
public key. ``RSASignatureValidator`` makes sure a peer can only write its own record and
``SchemaValidator`` rejects malformed ones, so a buggy or hostile peer cannot rewrite anyone's credit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

import pydantic.v1 as pydantic
from hivemind.dht import DHT
from hivemind.dht.crypto import RSASignatureValidator
from hivemind.dht.schema import BytesWithPublicKey, SchemaValidator
from hivemind.utils.timed_storage import get_dht_time

from volunteer.stats import LeaderboardEntry

log = logging.getLogger(__name__)

RECORD_TTL = 60.0
"""Seconds a record stays in the DHT without being refreshed: a peer that leaves drops off after this."""


class VolunteerRecord(pydantic.BaseModel):
    peer_id: pydantic.StrictStr
    nickname: pydantic.constr(max_length=64, strict=True)  # type: ignore[valid-type]
    samples: pydantic.conint(ge=0, strict=True)  # type: ignore[valid-type]
    samples_per_second: pydantic.confloat(ge=0.0, strict=True)  # type: ignore[valid-type]
    time: pydantic.StrictFloat


class LeaderboardSchema(pydantic.BaseModel):
    volunteers: dict[BytesWithPublicKey, Optional[VolunteerRecord]]  # noqa: UP045 - pydantic v1 needs Optional


def leaderboard_key(run_id: str) -> str:
    return f"{run_id}_volunteers"


def record_validators(run_id: str) -> tuple[list[Any], bytes]:
    """Validators to pass to ``hivemind.DHT(record_validators=...)``, and this process's public key."""
    signature = RSASignatureValidator()
    return [SchemaValidator(LeaderboardSchema, prefix=run_id), signature], signature.local_public_key


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
        self._entries: tuple[LeaderboardEntry, ...] = ()

    @property
    def entries(self) -> tuple[LeaderboardEntry, ...]:
        return self._entries

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.publish_once()
            except Exception as e:  # the swarm may be unreachable for a while: keep trying
                log.debug("leaderboard update failed: %s", e)
            self._stop_event.wait(self.interval)

    def publish_once(self) -> tuple[LeaderboardEntry, ...]:
        record = self.own_record()
        self.dht.store(
            self.key,
            subkey=self.public_key,
            value=record.dict(),
            expiration_time=get_dht_time() + RECORD_TTL,
            return_future=True,
        ).result(timeout=self.interval * 2)
        found = self.dht.get(self.key, latest=True)
        self._entries = parse_entries(found.value if found is not None else None, record.peer_id)
        return self._entries

    def stop(self) -> None:
        self._stop_event.set()


def parse_entries(value: Any, own_peer_id: str) -> tuple[LeaderboardEntry, ...]:
    """Leaderboard entries from a DHT dictionary value, best contributor first; bad records are skipped."""
    if not isinstance(value, dict):
        return ()
    entries = []
    for item in value.values():
        try:
            record = VolunteerRecord.parse_obj(item.value)
        except (pydantic.ValidationError, AttributeError, TypeError):
            continue
        entries.append(
            LeaderboardEntry(
                peer_id=record.peer_id,
                nickname=record.nickname,
                samples=record.samples,
                samples_per_second=record.samples_per_second,
                last_seen=record.time,
                is_self=record.peer_id == own_peer_id,
            )
        )
    entries.sort(key=lambda e: (-e.samples, e.peer_id))
    return tuple(entries)


def make_record(peer_id: str, nickname: str, samples: int, samples_per_second: float) -> VolunteerRecord:
    return VolunteerRecord(
        peer_id=peer_id,
        nickname=nickname[:64],
        samples=int(samples),
        samples_per_second=float(max(0.0, samples_per_second)),
        time=float(time.time()),
    )
