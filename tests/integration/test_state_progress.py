"""The bytes of model state a newcomer downloads from a peer are counted as they arrive (hivemind's averager)."""

from __future__ import annotations

import functools

import pytest
import torch

from volunteer.transfer import count_state_bytes, local_state_bytes, state_bytes_received

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _optimizer(dht, model):
    import hivemind

    return hivemind.Optimizer(
        dht=dht,
        run_id="state_progress",
        params=model.parameters(),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        target_batch_size=64,
        batch_size_per_step=8,
        matchmaking_time=3.0,
        averaging_timeout=10.0,
        verbose=False,
    )


def test_a_state_download_is_counted_in_bytes() -> None:
    import hivemind

    assert count_state_bytes()  # before hivemind forks the averagers
    first = hivemind.DHT(host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
    second = hivemind.DHT(initial_peers=first.get_visible_maddrs(), host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
    serving = _optimizer(first, torch.nn.Linear(256, 256))
    joining = None
    try:
        joining = _optimizer(second, torch.nn.Linear(256, 256))
        before = state_bytes_received()
        joining.load_state_from_peers()
        received = state_bytes_received() - before
        expected = local_state_bytes(joining)
        # parameters, Adam's two moments, and the gradient accumulators
        assert expected is not None and expected >= 4 * 257 * 256 * 4
        assert 0.9 * expected <= received <= 1.2 * expected, (received, expected)
    finally:
        for optimizer in (joining, serving):
            if optimizer is not None:
                optimizer.shutdown()
        second.shutdown()
        first.shutdown()
