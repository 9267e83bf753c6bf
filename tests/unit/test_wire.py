"""Bytes on the wire (volunteer.wire): rates parsed strictly, the cap's bucket, and real hivemind traffic counted."""

from __future__ import annotations

import time

import pytest

from volunteer import wire
from volunteer.wire import KINDS, Limit, UploadCap, WireTotals, format_rate, kind_of, parse_data_size, parse_rate


@pytest.mark.parametrize(
    "text, bytes_per_second",
    [
        ("5Mbit", 625_000),
        ("5 Mbit/s", 625_000),
        ("5mbit", 625_000),
        ("20Mbps", 2_500_000),
        ("500KB/s", 500_000),
        ("500kB", 500_000),
        ("2MiB/s", 2 * 2**20),
        ("1.5Gbit", 187_500_000),
        ("64kbit", 8_000),
    ],
)
def test_rates_as_links_are_sold(text, bytes_per_second):
    assert parse_rate(text) == pytest.approx(bytes_per_second)


@pytest.mark.parametrize(
    "text", ["5", "5Mb", "5 megabits", "-5Mbit", "0Mbit", "5Mbps/s", "inf Mbit", "", "5iB", "1bit"]
)
def test_ambiguous_or_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match=r"e\.g\. 5Mbit"):
        parse_rate(text)


def test_monthly_data():
    assert parse_data_size("100") == parse_data_size("100GB") == 100e9
    assert parse_data_size("1.5TB") == 1.5e12
    for bad in ("lots", "0", "100 GBs", "1MB"):  # 1 MB a month: below the least rate that can train
        with pytest.raises(ValueError):
            parse_data_size(bad)


def test_format_rate():
    assert format_rate(625_000) == "5 Mbit/s"
    assert format_rate(80_000) == "640 kbit/s"


def test_protocols_are_sorted_by_what_they_carry():
    assert KINDS[kind_of("run_grad_averager::GradientAverager.rpc_aggregate_part")] == "gradients"
    assert KINDS[kind_of("run_state_averager::TrainingStateAverager.rpc_aggregate_part")] == "state_averaging"
    assert KINDS[kind_of("run_state_averager::TrainingStateAverager.rpc_download_state")] == "state_download"
    assert KINDS[kind_of("DHTProtocol.rpc_store")] == "dht"
    assert KINDS[kind_of("run_grad_averager::GradientAverager.rpc_join_group")] == "other"


class _Link:
    """A fake clock and byte counter: what a peer sent, when."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent = 0
        self.received = 0

    def totals(self) -> WireTotals:
        return WireTotals((self.sent, 0, 0, 0, 0), (self.received, 0, 0, 0, 0))


class _Knob:
    def __init__(self, can: bool = True) -> None:
        self.can = can
        self.factors: list[int] = []

    def stretch_rounds(self, factor: int) -> str | None:
        self.factors.append(factor)
        return f"averaging state every {factor} global steps instead of 1" if self.can else None


def _run(cap: UploadCap, link: _Link, knob: _Knob | None, step_bytes: int, step_seconds: float, steps: int) -> float:
    """Steps that each send ``step_bytes`` (twice as much when state is averaged), holding back as the cap says."""
    for step in range(steps):
        link.now += step_seconds
        averaging_state = cap.stretch == 1 or step % cap.stretch == 0
        link.sent += step_bytes * (2 if averaging_state else 1)
        held = cap.after_global_step(knob)
        link.now += held  # the hold waits exactly until the debt is repaid when nothing is sent meanwhile
    return link.sent / link.now


def test_the_cap_holds_the_rate_by_stretching_first_then_holding_back():
    link, knob = _Link(), _Knob()
    limit = 100_000.0
    cap = UploadCap([Limit(limit)], read=link.totals, clock=lambda: link.now)
    rate = _run(cap, link, knob, step_bytes=150_000, step_seconds=1.0, steps=400)
    assert rate <= limit * 1.02
    assert rate >= limit * 0.9, "the cap should not throttle far below the limit"
    assert cap.stretch > 1 and knob.factors, "optional rounds were stretched before holding back"
    assert "upload cap 800 kbit/s" in cap.action


def test_a_peer_well_under_its_cap_is_left_alone():
    link, knob = _Link(), _Knob()
    cap = UploadCap([Limit(1e9)], read=link.totals, clock=lambda: link.now)
    link.now = 1.0  # a second of allowance before the first step
    _run(cap, link, knob, step_bytes=1000, step_seconds=1.0, steps=50)
    assert cap.stretch == 1 and cap.action == "" and knob.factors == []


def test_without_a_knob_the_cap_still_holds_by_holding_back():
    link = _Link()
    cap = UploadCap([Limit(50_000.0)], read=link.totals, clock=lambda: link.now)
    rate = _run(cap, link, _Knob(can=False), step_bytes=200_000, step_seconds=0.5, steps=200)
    assert rate <= 50_000 * 1.02
    assert cap.stretch == 1 and "holding training back" in cap.action


def test_the_monthly_budget_counts_both_ways():
    link = _Link()
    cap = UploadCap(wire.limits_from(None, 2.592e9), read=link.totals, clock=lambda: link.now)  # 1000 B/s
    link.now, link.received = 10.0, 50_000
    assert cap.debt_seconds() == pytest.approx(50_000 * wire.RX_BYTE_OVERHEAD / 1000 - 10)


def test_hold_waits_out_the_debt_and_can_be_interrupted():
    link = _Link()
    cap = UploadCap([Limit(1e6)], read=link.totals)
    link.sent = 300_000  # 0.3 s of debt on the real clock
    started = time.monotonic()
    held = cap.hold(lambda: False)
    assert held >= 0.2 and time.monotonic() - started < 5
    link.sent += 10**9
    assert cap.hold(lambda: True) < 0.1, "a stop ends the hold at once"


def test_real_hivemind_traffic_is_counted_at_both_ends():
    """Two DHT peers forked from this process: every payload one sends, the other receives."""
    import hivemind
    from hivemind.utils.timed_storage import get_dht_time

    assert wire.count_wire_bytes(), "hivemind 1.1.12's p2p client should be the one volunteer counts in"
    before = wire.totals()
    first = hivemind.DHT(host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
    try:
        second = hivemind.DHT(
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
            initial_peers=[str(m) for m in first.get_visible_maddrs()],
            start=True,
        )
        try:
            assert second.store("key", "x" * 5000, get_dht_time() + 60)
            assert first.get("key", latest=True) is not None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = wire.totals()
                sent = after.sent_bytes - before.sent_bytes
                received = after.received_bytes - before.received_bytes
                messages = after.sent_messages - before.sent_messages
                if sent == received and messages == after.received_messages - before.received_messages:
                    break
                time.sleep(0.1)
            assert sent == received, (sent, received)
            assert messages > 0 and messages == after.received_messages - before.received_messages
            dht_sent = after.by_kind()["dht"][0] - before.by_kind()["dht"][0]
            assert dht_sent >= 5000, "the stored value went over the wire"
        finally:
            second.shutdown()
    finally:
        first.shutdown()


def test_headless_lines_show_the_rates_and_the_caps_doing():
    import io
    import json

    from volunteer.contribution.headless_log import HeadlessLog, format_status
    from volunteer.stats import KindBytes, Snapshot, Wire

    by_kind = (KindBytes("gradients", 900_000, 800_000), KindBytes("dht", 20_000, 30_000))
    capped = Snapshot(
        wire=Wire(10**6, 2 * 10**6, 625_000.0, 80_000.0, 4_400.0, "upload cap 5 Mbit/s: holding", by_kind)
    )
    line = format_status(capped)
    assert "net up 5 Mbit/s, down 640 kbit/s, 4.4 kB sent a sample | upload cap 5 Mbit/s: holding" in line
    assert "net " not in format_status(Snapshot()), "nothing to say before training starts"
    out = io.StringIO()
    HeadlessLog("json", out).status(capped)
    said = json.loads(out.getvalue())["wire"]
    assert said["upload_bytes_per_second"] == 625_000.0
    assert said["by_kind"][0] == {"kind": "gradients", "sent": 900_000, "received": 800_000}
    assert Snapshot.from_dict(capped.to_dict()) == capped, "the status endpoint carries it intact"


def test_rates_are_measured_over_the_window():
    link = _Link()
    meter = wire.WireMeter(window=60.0, read=link.totals)
    meter.read()
    time.sleep(0.6)
    link.sent, link.received = 100_000, 50_000
    total, up, down = meter.read()
    assert total.wire_sent == round(100_000 * wire.TX_BYTE_OVERHEAD)
    assert 0 < up <= 100_000 * wire.TX_BYTE_OVERHEAD / 0.6 and 0 < down < up


def test_a_hold_that_cannot_repay_the_debt_gives_up_and_says_why():
    """Traffic a hold does not stop (a full peer answering the swarm's DHT lookups) at the cap's rate or more."""
    link = _Link()
    limit = 10_000.0

    def sleep(seconds: float) -> None:
        link.now += seconds
        link.sent += int(1.2 * limit * seconds)  # the swarm's upkeep: more than the cap, whatever training does

    cap = UploadCap([Limit(limit)], read=link.totals, clock=lambda: link.now, sleep=sleep)
    link.sent = 100_000  # 10 s of debt
    held = cap.hold(lambda: False)
    assert wire.FUTILE_HOLD_SECONDS <= held < wire.FUTILE_HOLD_SECONDS + 1, "it neither held for ever nor gave up early"
    assert "cannot hold" in cap.futile and "121% of the upload cap" in cap.action, cap.action  # 1.2 x 1.01 framing

    # upkeep under the cap: the same debt is repaid, however slowly, and the hold says nothing more
    def slow(seconds: float) -> None:
        link.now += seconds
        link.sent += int(0.5 * limit * seconds)

    cap = UploadCap([Limit(limit)], read=link.totals, clock=lambda: link.now, sleep=slow)
    link.sent += 100_000
    held = cap.hold(lambda: False)
    assert held > wire.FUTILE_HOLD_SECONDS and cap.debt_seconds() == 0 and not cap.futile


def test_the_strategy_tells_each_change_of_what_the_cap_does_once():
    from volunteer.strategy import HivemindStrategy

    said: list[str] = []
    strategy = HivemindStrategy(target_batch_size=64, max_upload=10_000.0, print_join_message=False)
    strategy.swarm_event_handler = lambda kind, message: said.append(f"{kind}: {message}")
    link = _Link()
    upkeep = [1.2]

    def sleep(seconds: float) -> None:
        link.now += seconds
        link.sent += int(upkeep[0] * 10_000 * seconds)

    cap = UploadCap([Limit(10_000.0)], read=link.totals, clock=lambda: link.now, sleep=sleep)
    link.sent = 100_000
    strategy._tell_cap(cap, cap.after_global_step(None) > 0)
    assert said == ["bandwidth: upload cap 80 kbit/s: holding training back 10 s"]
    cap.hold(lambda: False)
    strategy._tell_cap(cap, False)
    assert len(said) == 2 and "cannot hold" in said[-1], said
    strategy._tell_cap(cap, cap.after_global_step(None) > 0)  # still in debt, within the minute: nothing new
    assert len(said) == 2, said
    upkeep[0] = 0.0
    cap.hold(lambda: False)
    strategy._tell_cap(cap, False)
    assert len(said) == 3 and "cannot hold" not in said[-1], "the views learn that the cap holds again"
