"""``volunteer host --project ID``: a long-lived bootstrap and auxiliary peer for a project's swarm.

    volunteer host (this process: no torch)  ->  hivemind process (host_worker: DHT + auxiliary optimizer)
          |  keeps the peers file on the Hub fresh, serves GET /peers and /swarm, logs the swarm's metrics,
          |  uploads checkpoints
          v
    the Hub, volunteers, the author's terminal

The host has a persistent identity (``identity.key`` in its data directory) and, by default, fixed ports, so
its address survives restarts. It joins the averaging rounds as an auxiliary peer (no compute), keeps a copy
of the swarm's state that it serves to newcomers, and reads the volunteers' signed leaderboard records. Every
``--refresh-every`` it works out the peer list (its own addresses first, then the other long-lived peers that
still answer) and rewrites the project's peers file on the Hub when that set changes. SIGTERM or Ctrl-C stops
it within 10 s.
"""

from __future__ import annotations

from collections.abc import Sequence

from volunteer.authoring.host_options import parse_host_args
from volunteer.datadir import DataDir


def main(argv: Sequence[str]) -> int:
    options = parse_host_args(argv)
    settings = options.settings
    data_dir = DataDir.open(settings.data_dir, name="host")
    with data_dir.lock():
        from volunteer.authoring.host_supervisor import Host

        return Host(options, data_dir).run()


__all__ = ["main"]
