"""A rogue hivemind peer that joins a swarm and writes hostile leaderboard records, for the adversarial tests.

    python -m tests.integration.rogue_peer INITIAL_PEER VICTIM_PEER_ID RUN_ID SECONDS

It runs three DHT nodes, each with a key of its own and no schema validation of its own, and keeps writing:

- an impersonation: a correctly signed record that claims the victim's peer id, 10^12 samples and a nickname
  with terminal escape sequences and Textual markup;
- non-finite numbers: ``time=-inf`` and ``samples_per_second=inf``, then ``time=NaN`` and 2^63 - 1 samples;
- a forgery: a record under the victim's own sub-key, which the rogue cannot sign.

It prints ``ROGUE READY`` once every record was written once, then rewrites them until SECONDS are over.
"""

from __future__ import annotations

import math
import sys
import time

NASTY_NICKNAME = "\x1b]0;pwned\x07\x1b[2J[@click=app.quit]victim[/]"


def main(argv: list[str]) -> int:
    import hivemind
    from hivemind.dht.crypto import RSASignatureValidator
    from hivemind.utils.crypto import RSAPrivateKey
    from hivemind.utils.timed_storage import get_dht_time

    initial_peer, victim_id, run_id, seconds = argv[0], argv[1], argv[2], float(argv[3])
    key = f"{run_id}_volunteers"
    nodes = []
    for _ in range(3):
        validator = RSASignatureValidator(RSAPrivateKey())
        dht = hivemind.DHT(
            initial_peers=[initial_peer],
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
            record_validators=[validator],
            start=True,
        )
        nodes.append((dht, validator.local_public_key))

    def records(now: float, victim_subkey: bytes | None) -> list[tuple[int, bytes | None, dict]]:
        out = [
            (
                0,
                None,
                dict(peer_id=victim_id, nickname=NASTY_NICKNAME, samples=10**12, samples_per_second=1.0, time=now),
            ),
            (1, None, dict(peer_id=victim_id, nickname="inf", samples=5, samples_per_second=math.inf, time=-math.inf)),
            (2, None, dict(peer_id="QmNaN", nickname="nan", samples=2**63 - 1, samples_per_second=1.0, time=math.nan)),
        ]
        if victim_subkey is not None:
            forged = dict(peer_id=victim_id, nickname="forged", samples=10**13, samples_per_second=1.0, time=now)
            out.append((0, victim_subkey, forged))
        return out

    deadline = time.monotonic() + seconds
    announced = False
    while time.monotonic() < deadline:
        own = {subkey for _, subkey in nodes}
        found = nodes[0][0].get(key, latest=True)
        others = [
            s for s in (found.value if found is not None and isinstance(found.value, dict) else {}) if s not in own
        ]
        victim_subkey = others[0] if others else None
        now = get_dht_time()
        for index, subkey, value in records(time.time(), victim_subkey):
            dht, own_subkey = nodes[index]
            try:
                dht.store(key, subkey=subkey or own_subkey, value=value, expiration_time=now + 60)
            except Exception as e:  # a rogue does not care; the test reads the victim, not us
                print(f"store failed: {type(e).__name__}: {e}", flush=True)
        if not announced and victim_subkey is not None:
            print("ROGUE READY", flush=True)
            announced = True
        time.sleep(2.0)
    for dht, _ in nodes:
        dht.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
