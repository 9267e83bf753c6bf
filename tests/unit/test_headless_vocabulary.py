"""The headless line uses the dashboard's words for a contribution: computed, credited, local-only."""

from __future__ import annotations

from volunteer.contribution.headless_log import format_status
from volunteer.stats import Snapshot, State


def test_a_lone_peer_reads_as_computed_not_as_contributed_nothing() -> None:
    line = format_status(
        Snapshot(state=State.TRAINING, total_samples=295_168, swarm_samples=0, local_only_samples=289_536)
    )
    assert "credited 0, local-only 289,536 of 295,168 computed" in line
    assert "contributed" not in line


def test_a_download_under_way_is_in_the_line() -> None:
    from volunteer.stats import Transfer

    line = format_status(
        Snapshot(state=State.LOADING_STATE, transfer=Transfer("model state", 5_000_000, None, 1_000_000.0, 5.0))
    )
    assert line.endswith("downloading model state 5.0 MB, 1.0 MB/s")
