"""The training process's stats: credit counters read from another thread still add up."""

from __future__ import annotations


class MovingStrategy:
    """A strategy whose training thread takes a global step while the stats thread reads its counters."""

    def __init__(self, moves: int) -> None:
        self.moves = moves  # steps taken mid-read: each moves a batch's samples from pending to local-only
        self.samples_contributed = 32
        self.swarm_samples = 16
        self._local_only = 0
        self._pending = 16

    @property
    def local_only_samples(self) -> int:
        if self.moves:
            self.moves -= 1
            self.samples_contributed += 16  # a batch, then its step alone
            self._local_only += self._pending + 16
            self._pending = 0
        return self._local_only

    @property
    def pending_samples(self) -> int:
        return self._pending


def test_a_read_torn_by_a_global_step_is_read_again():
    from volunteer.contribution.training_callback import _credit_counts

    assert _credit_counts(MovingStrategy(moves=2)) == (64, 16, 48, 0)


def test_counters_that_never_settle_still_add_up_and_keep_the_credit():
    from volunteer.contribution.training_callback import _CONSISTENT_READS, _credit_counts

    samples, swarm, local_only, pending = _credit_counts(MovingStrategy(moves=_CONSISTENT_READS))
    assert samples == swarm + local_only + pending and swarm == 16 and pending >= 0
