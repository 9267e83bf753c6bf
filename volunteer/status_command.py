"""``volunteer status [URL] [--json]``: one snapshot of a running volunteer, for scripts and ``docker exec``.

Exit status: 0 when the session is live (any state but ``failed`` or ``stopped``, the health check's rule),
1 when it answered but has failed or stopped, 2 when nothing answers (``error:`` and ``hint:`` lines).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from volunteer.errors import VolunteerError
from volunteer.settings import ArgumentParser
from volunteer.stats import UNHEALTHY_STATES, Snapshot, clean_text, json_safe
from volunteer.status_client import DEFAULT_URL, StatusClient, normalize_url

EXIT_UNHEALTHY = 1


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def report(s: Snapshot, now: float | None = None) -> str:
    """The snapshot as a few aligned lines a person reads at a glance."""
    rows = [("state", f"{s.state.value}, {s.num_peers} peer{'s' if s.num_peers != 1 else ''}, step {s.global_epoch}")]
    project = s.project.name or s.project.repo or "-"
    if s.project.repo and s.project.repo != project:
        project += f" ({s.project.repo}{'@' + s.project.revision[:7] if s.project.revision else ''})"
    rows.append(("project", f"{project}, run {s.project.run_id or '-'}"))
    rows.append(("peer", f"{s.nickname or '-'} ({s.peer_id or 'not joined yet'})"))
    if s.network_mode:
        reason = f": {s.network_mode_reason}" if s.network_mode_reason else ""
        rows.append(("network", clean_text(f"{s.network_mode}{reason}", 300)))
    if s.target_batch_size:
        eta = "" if s.eta_next_step is None else f", next step in {_number(s.eta_next_step)} s"
        rows.append(("progress", f"{_number(s.samples_accumulated)}/{_number(s.target_batch_size)} samples{eta}"))
    rows.append(
        (
            "speed",
            f"{_number(s.samples_per_second, 1)} samples/s here, {_number(s.swarm_samples_per_second, 1)} swarm",
        )
    )
    if s.loss_smoothed is not None:
        rows.append(("loss", _number(s.loss_smoothed, 4)))
    rows.append(
        (
            "samples",
            f"credited {_number(s.swarm_samples)}, local-only {_number(s.local_only_samples)} of "
            f"{_number(s.total_samples)} computed (all time); {_number(s.session_samples)} this session",
        )
    )
    rows.append(("uptime", f"{_number(s.uptime)} s, {s.reconnects} reconnect{'s' if s.reconnects != 1 else ''}"))
    age = (time.time() if now is None else now) - s.time
    if age > 30:
        rows.append(("as of", f"{_number(age)} s ago"))
    if s.last_error is not None:
        rows.append(("error", s.last_error.message))
        if s.last_error.hint:
            rows.append(("hint", s.last_error.hint))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(
        prog="volunteer status",
        description="One snapshot of a running volunteer. Exit status: 0 live, 1 failed or stopped, 2 unreachable.",
    )
    parser.add_argument("url", nargs="?", default=None, help=f"its status endpoint (default: {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="the whole snapshot as JSON, as GET /status serves it")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default: 5)")
    args = parser.parse_args(list(argv))
    try:
        url = normalize_url(args.url)
    except ValueError as e:
        raise VolunteerError(str(e), "give the endpoint as http://HOST:PORT, e.g. http://127.0.0.1:8471") from None
    with StatusClient(url, timeout=args.timeout) as client:
        try:
            snapshot = client.latest()
        except ConnectionError:
            raise VolunteerError(
                f"no volunteer answers at {url}",
                "start one (volunteer --headless --project ...), pass its URL, or in Docker run: "
                "docker exec <container> volunteer status",
            ) from None
        except ValueError as e:
            raise VolunteerError(str(e), "check the URL: it must be a volunteer's status endpoint") from None
    if args.json:
        print(json.dumps(json_safe(snapshot.to_dict()), indent=2, sort_keys=True, allow_nan=False))
    else:
        print(report(snapshot))
    return EXIT_UNHEALTHY if snapshot.state.value in UNHEALTHY_STATES else 0
