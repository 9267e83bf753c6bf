"""Faults as they happen on the internet, on separate hosts: partitions that heal (short ones, and one longer
than ``isolation_hold``), a dead bootstrap (a training volunteer, and a standalone ``hivemind-dht``), NAT.

Three headless volunteers of the tiny project, each in a network namespace of its own on one bridge
(``tests/support/netns.py``). The invariant after every fault: the live peers that can reach each other
are one swarm again within a bounded time: each sees the others, and each gains *swarm* credit at global
steps within one of each other. A reduced version of ``benchmarks/failover.py``.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.netns import Network, kill_tree, leftover_namespaces, unavailable_reason
from tests.support.swarm import Swarm, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

_reason = unavailable_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=f"network namespaces unavailable: {_reason}"))

PARTITION = 30.0
"""Seconds a link stays down: long enough for every DHT request across it to fail."""
SETTLED = 25.0
"""Seconds into a cut by which an averaging round begun before it has ended (15 s timeout, 3.5 s matchmaking)."""
TARGET = 512
"""The tiny project's target_batch_size."""
REJOIN = 60.0
"""The target: a healed peer is back in the swarm this long after its link returns."""


@pytest.fixture
def swarm(tmp_path):
    with Network() as net, Swarm(net, tmp_path) as swarm:
        yield swarm
    assert not [n for n in leftover_namespaces() if n.startswith(f"faults-{net.tag}-")]


@pytest.mark.timeout(720)
def test_partitioned_peers_come_back_whole(swarm):
    a, b, c = swarm.start_swarm("abc")
    vols = [a, b, c]

    # a joiner's link goes down: the other two keep stepping together; the cut-off one says it is alone,
    # takes no global step alone and gains no swarm credit once its last round in flight has ended
    cut = {v.name: v.status() for v in vols}
    swarm.net.link_down(c.host)
    cut_at = time.monotonic()
    swarm.wait_joint_step([a, b], cut, PARTITION * 3)
    wait_until(lambda: (c.status() or {}).get("state") == "reconnecting", PARTITION, "c to say it is alone", vols)
    time.sleep(max(0.0, SETTLED - (time.monotonic() - cut_at)))
    alone = c.status()
    time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))
    swarm.net.link_up(c.host)
    healed = {v.name: v.status() for v in vols}
    # the one round in flight at the cut may end late (a partial all-reduce with the others): at most one step
    assert healed["c"]["swarm_samples"] - cut["c"]["swarm_samples"] <= TARGET, "credited as swarm work while cut off"
    assert healed["c"]["swarm_samples"] - alone["swarm_samples"] <= TARGET
    assert healed["c"]["local_epoch"] <= alone["local_epoch"], "stepped alone while cut off"
    swarm.wait_joint_step(vols, healed, REJOIN)
    kinds = [e["kind"] for e in c.events()]
    assert "reconnecting" in kinds and "recovered" in kinds, kinds

    # the bootstrap itself goes away and comes back: nobody may end up alone
    swarm.net.partition(a.host, PARTITION)
    healed = {v.name: v.status() for v in vols}
    swarm.wait_joint_step(vols, healed, REJOIN)

    for v in vols:
        s = v.status()
        assert s["num_peers"] >= 3, (v.name, s["num_peers"])
        # every sample is counted once: swarm + local-only, and the rest toward the next global step
        judged = s["swarm_samples"] + s["local_only_samples"]
        assert judged <= s["total_samples"] <= judged + 2 * TARGET, (v.name, s)
        ledger = v.ledger()  # the status shows the ledger as written: never more than it holds
        assert ledger["swarm_samples"] >= s["swarm_samples"] and ledger["samples"] >= s["total_samples"]

    # then the bootstrap (a training volunteer, as compose's first replica is) dies mid-accumulation: its whole
    # process tree at once. The survivors go on as one swarm: two joint steps, both seeing exactly each other
    wait_until(lambda: (b.status() or {}).get("samples_accumulated", 0) > 0, 60, "accumulation", vols)
    before = {v.name: v.status() for v in (b, c)}
    a.kill()
    swarm.wait_joint_step([b, c], before, 90)
    again = {v.name: v.status() for v in (b, c)}
    swarm.wait_joint_step([b, c], again, 60)


@pytest.mark.timeout(420)
def test_a_volunteer_behind_nat_contributes(swarm):
    a, b = swarm.start_swarm("ab")
    # behind a masquerading router that drops every new inbound connection (the public peers have no route to
    # its LAN either): it must dial out, and everything it does with the swarm rides on those connections
    home = swarm.net.add_nat_host("c")
    port = int(a.address().split("/tcp/")[1].split("/")[0])
    assert home.can_reach(a.host, port), "the NATed host reaches the public peers"
    # no --client-mode: it asks the public peers to dial it back, none can, so it chooses client mode itself
    c = swarm.start("c", peers=a.address())
    wait_until(lambda: (c.status() or {}).get("state") == "training", 120, "the NATed peer training", [a, b, c])
    swarm.wait_one_swarm([a, b, c], 120)

    # one status read per peer, retried: a status request can time out on a loaded machine
    def every_status():
        statuses = swarm.statuses([a, b, c])
        return statuses if all(statuses.values()) else None

    statuses = wait_until(every_status, 30, "every peer's status", [a, b, c])
    modes = {name: (s.get("network_mode"), s.get("network_mode_reason")) for name, s in statuses.items()}
    assert modes["c"][0] == "client mode" and "could not dial this machine" in modes["c"][1], modes
    assert modes["b"][0] == "full peer" and "could dial this machine back" in modes["b"][1], modes
    assert modes["a"] == ("full peer", "no peer to ask yet"), modes
    assert any(e.get("kind") == "network" and "client mode" in e.get("message", "") for e in c.events())
    assert "is in client mode: peers could not dial this machine" in c.output()  # no join instructions


HOLD = 8.0
"""isolation_hold for the long partition (VOLUNTEER_ISOLATION_HOLD): a cut-off peer trains alone after this."""
LONG_PARTITION = 300.0
"""At most this long a cut: until the cut-off peer's epoch is well past the swarm's. Alone, it first tries to
average at every step (hivemind still counts the others until their progress records expire, about a minute),
then steps at its own pace; the two peers left, whose rounds assemble as soon as both joined, keep stepping
too, so it can take a few minutes on a loaded machine (in one CI run it was still behind after 180 s)."""


@pytest.mark.timeout(900)
def test_standalone_bootstrap_dies_then_a_long_partition(swarm):
    # peers that met only through a standalone bootstrap DHT (hivemind's examples, hivemind-dht) lose it
    boot, address = swarm.start_bootstrap_dht()
    env = {"VOLUNTEER_ISOLATION_HOLD": str(HOLD)}
    vols = [swarm.start(name, peers=address, env=env) for name in "bcd"]
    b, c, d = vols
    swarm.wait_one_swarm(vols, 240)
    before = {v.name: v.status() for v in vols}
    kill_tree(boot.pid)
    swarm.wait_joint_step(vols, before, 90)

    # d is cut off for longer than isolation_hold: it trains alone and its epoch races ahead of b's and c's
    cut = {v.name: v.status() for v in vols}
    swarm.net.link_down(d.host)

    def raced_ahead():
        statuses = swarm.statuses(vols)
        ahead = (
            all(statuses.values())
            and statuses["d"]["local_epoch"] >= max(statuses["b"]["local_epoch"], statuses["c"]["local_epoch"]) + 3
        )
        return statuses if ahead else None

    # The scenario needs a lone peer that outpaces a pair, which is this machine's doing, not the client's: on an
    # idle 2-core machine (2026-12-05) the pair stepped 2.0 times a second and d alone 1.4-1.5, with the code of
    # issue 22 and with the code before it (01a4ef2) alike, so d never got ahead in 300 s; on a busier machine
    # (CI until then) averaging slowed the pair enough. Where d cannot get ahead, what this test checks cannot
    # happen: skip, with the rates, rather than fail. Making the scenario independent of the machine (pace the
    # pair) is issue 24's.
    started = {v.name: (time.monotonic(), (v.status() or {}).get("local_epoch", 0)) for v in vols}
    try:
        healed = wait_until(raced_ahead, LONG_PARTITION, "d, trained alone, to be 3 epochs ahead of b and c", vols)
    except AssertionError as e:
        if "timed out" not in str(e) or not all(v.alive for v in vols):
            raise
        now, statuses = time.monotonic(), swarm.statuses(vols)
        rates = {
            name: round(((statuses[name] or {}).get("local_epoch", epoch) - epoch) / (now - t), 2)
            for name, (t, epoch) in started.items()
        }
        swarm.net.link_up(d.host)
        pytest.skip(f"d alone could not outpace the pair on this machine: global steps/s {rates}")
    swarm.net.link_up(d.host)
    assert "alone" in [e["kind"] for e in d.events()]
    assert healed["d"]["swarm_samples"] - cut["d"]["swarm_samples"] <= TARGET, "solo steps credited as swarm work"

    # back: the swarm's parameters win. b and c never jump to d's epoch (loading d's solo state would, by 3 or
    # more); d loads theirs, and all three step together again
    epochs = {v.name: [healed[v.name]["local_epoch"]] for v in (b, c)}

    def rejoined():
        statuses = swarm.statuses(vols)
        for v in (b, c):
            if statuses[v.name]:
                epochs[v.name].append(statuses[v.name]["local_epoch"])
        grew = all(s and s["swarm_samples"] > healed[name]["swarm_samples"] for name, s in statuses.items())
        together = all(s and s["state"] == "training" for s in statuses.values())
        spread = [s["local_epoch"] for s in statuses.values() if s]
        return grew and together and len(spread) == 3 and max(spread) - min(spread) <= 1

    wait_until(rejoined, REJOIN + 30, "b, c and d to step together after the long partition", vols)
    for name, seen in epochs.items():
        jumps = [later - earlier for earlier, later in itertools.pairwise(seen)]
        assert max(jumps, default=0) <= 2, f"{name} loaded d's solo state: epochs {seen}"
    kinds = [e["kind"] for e in d.events()]
    assert "resync" in kinds, kinds
    # d's solo samples stay local-only, counted once
    s = d.status()
    judged = s["swarm_samples"] + s["local_only_samples"]
    assert judged <= s["total_samples"] <= judged + 2 * TARGET, s


CHURN_SECONDS = 100.0
"""The reduced churn: five leaves of three volunteers (graceful and SIGKILL, the bootstrap among them)."""


@pytest.mark.timeout(600)
def test_churn_keeps_one_swarm_and_every_ledger_sample(swarm):
    from tests.support.churn import Churn, schedule

    names = ["a", "b", "c"]
    churn = Churn(swarm, names)
    churn.start("a", first=True)
    churn.wait_training(["a"], 180)
    for name in names[1:]:
        churn.start(name)
    churn.wait_training(names, 180)
    swarm.wait_one_swarm([churn.current[n].vol for n in names], 180)
    leaves = schedule(names, CHURN_SECONDS, seed=0, up=(20.0, 40.0), down=(10.0, 15.0))
    assert {leave.how for leave in leaves} == {"term", "int", "kill"}, leaves
    report = churn.run(leaves, CHURN_SECONDS)
    # after the last leave, everybody back: one swarm again within the rejoin target
    vols = [churn.current[n].vol for n in names]
    swarm.wait_one_swarm(vols, 120)
    churn.stop_all()
    print(report.summary())
    assert not report.violations, report.summary()
    assert not report.splits, report.summary()
    assert report.swarm > 0 and report.local_only <= report.computed, report.summary()
