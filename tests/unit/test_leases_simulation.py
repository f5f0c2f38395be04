"""Discrete-time simulations of a congested link through the whole lease data path (ingress meter,
re-prioritisation, customer bit, deprioritize-non-customer, 2-level token bucket): the PKT paper's claims."""
import pytest

from node.leases.datapath import LeaseDataPath
from node.leases.simulation import Flow, simulate
from node.leases.table import FREE, Lease, LeaseTable

CAP = 8_000_000     # bit/s of the congested link "up"
KEY = bytes([9]) * 32
DURATION, WARMUP = 8.0, 3.0
WINDOW = DURATION - WARMUP


def device(ingress_leases, egress_leases=(), capacity=CAP):
    """Customers come in on their own links (interfaces 2, 3, ...); everything leaves on link "up", whose
    free lease is interface 10 and whose paid leases are interfaces 11, 12, ..."""
    t = LeaseTable()
    t.add_link("up", capacity)
    t.add_interface(10, "up", FREE)
    for i, lease in enumerate(egress_leases):
        t.add_lease(lease)
        t.add_interface(11 + i, "up", lease.id)
    for i, lease in enumerate(ingress_leases):
        t.add_link(lease.link, 100 * capacity)
        t.add_lease(lease)
        t.add_interface(2 + i, lease.link, lease.id)
    return LeaseDataPath(t)


def run(dp, flows):
    res = simulate(dp, flows, DURATION, warmup_s=WARMUP)
    return {name: r.bps(WINDOW) for name, r in res.items()}, res


def two_customers(limit_a, limit_b, rate_a=CAP, rate_b=CAP, prio_a=15, prio_b=15):
    dp = device([Lease("A", "a", max_priority_bandwidth=limit_a, holder=KEY),
                 Lease("B", "b", max_priority_bandwidth=limit_b, holder=KEY)],
                [Lease("isp", "up", holder=KEY)])
    return run(dp, [Flow("A", 2, 11, rate_a, priority=prio_a), Flow("B", 3, 11, rate_b, priority=prio_b)])[0]


@pytest.mark.parametrize("offered", [CAP, 2.5 * CAP])
def test_max_priority_bandwidth_10_to_1_gives_throughput_10_to_1(offered):
    got = two_customers(10000, 1000, rate_a=offered, rate_b=offered)
    assert got["A"] / got["B"] == pytest.approx(10, rel=0.2)
    assert got["A"] + got["B"] == pytest.approx(CAP, rel=0.02)      # the link stays full


def test_equal_settings_give_equal_shares_even_when_one_floods_harder():
    for rate_b in (CAP, 2 * CAP):
        got = two_customers(1000, 1000, rate_b=rate_b)
        assert got["A"] / got["B"] == pytest.approx(1, rel=0.1)
        assert got["A"] + got["B"] == pytest.approx(CAP, rel=0.02)


def test_equal_settings_share_equally_whatever_priority_is_declared():
    got = two_customers(1000, 1000, prio_a=15, prio_b=8)
    assert got["A"] / got["B"] == pytest.approx(1, rel=0.1)


def test_single_low_priority_flow_gets_an_idle_link():
    dp = device([Lease("A", "a", max_priority_bandwidth=10, holder=KEY)], [Lease("isp", "up", holder=KEY)])
    got, _ = run(dp, [Flow("A", 2, 11, 2 * CAP, priority=1)])
    assert got["A"] >= 0.9 * CAP


def test_free_tier_gets_an_idle_link_but_not_a_saturated_one():
    dp = device([Lease("A", "a", holder=KEY)], [Lease("isp", "up", holder=KEY)])
    t = dp.table
    t.add_link("f", 100 * CAP)
    t.add_interface(4, "f", FREE)
    alone, _ = run(dp, [Flow("free", 4, 10, 2 * CAP)])
    assert alone["free"] >= 0.9 * CAP

    dp2 = device([Lease("A", "a", holder=KEY)], [Lease("isp", "up", holder=KEY)])
    dp2.table.add_link("f", 100 * CAP)
    dp2.table.add_interface(4, "f", FREE)
    both, res = run(dp2, [Flow("free", 4, 10, 2 * CAP, priority=15),
                          Flow("paid", 2, 11, 2 * CAP, priority=0)])
    assert both["free"] < 0.05 * CAP
    assert both["paid"] >= 0.9 * CAP


def test_guarantee_holds_against_higher_priority_traffic():
    g = 2_000_000
    dp = device([Lease("A", "a", holder=KEY), Lease("B", "b", holder=KEY)],
                [Lease("gold", "up", guarantee_bps=g, holder=KEY), Lease("other", "up", holder=KEY)])
    got, _ = run(dp, [Flow("low", 2, 11, CAP, priority=0), Flow("high", 3, 12, 2 * CAP, priority=15)])
    assert got["low"] >= 0.9 * g
    assert got["low"] + got["high"] == pytest.approx(CAP, rel=0.02)


def test_clear_customer_bit_then_deprioritize_caps_priority_on_the_wire():
    p = 4
    dp = device([Lease("peer", "a", clear_customer_bit=True, holder=KEY),
                 Lease("cust", "b", holder=KEY)],
                [Lease("transit", "up", deprioritize_non_customer=p, holder=KEY)])
    _, res = run(dp, [Flow("from_peer", 2, 11, CAP / 4, priority=15, customer=True),
                      Flow("customer", 3, 11, CAP / 4, priority=15, customer=True)])
    assert 0 <= res["from_peer"].max_priority_on_wire <= p
    assert res["from_peer"].customer_on_wire == 0
    assert res["customer"].max_priority_on_wire == 15            # customers keep their priority


def test_expired_lease_traffic_falls_back_to_the_free_tier():
    dp = device([Lease("A", "a", holder=KEY)],
                [Lease("gold", "up", guarantee_bps=4_000_000, holder=KEY, expires=1.0)])
    _, res = run(dp, [Flow("x", 2, 11, CAP / 2, priority=15)])
    s = dp.schedulers["up"]
    assert s.sent_by_lease.get(FREE, 0) > 0.8 * s.sent["bytes"]     # after t=1 s everything is free tier
    assert res["x"].delivered_bytes > 0                              # and still flows (fail-open)


def test_free_tier_traffic_cannot_spend_a_paid_lease_guarantee():
    dp = device([Lease("A", "a", holder=KEY)],
                [Lease("gold", "up", guarantee_bps=4_000_000, holder=KEY), Lease("other", "up", holder=KEY)])
    dp.table.add_link("f", 100 * CAP)
    dp.table.add_interface(4, "f", FREE)
    # the free-tier flow names gold's interface (11) in its label, but stays on the free tier
    got, _ = run(dp, [Flow("free", 4, 11, 2 * CAP, priority=15), Flow("paid", 2, 12, 2 * CAP, priority=0)])
    assert got["free"] < 0.05 * CAP
    assert dp.counters["free_tier_kept_free"] > 0
    assert dp.schedulers["up"].sent_by_lease.get("gold", 0) == 0


@pytest.mark.parametrize("pace", [1.0, 0.9, 0.5])
def test_a_link_is_paced_at_the_datapaths_fraction_of_its_capacity(pace):
    dp = device([Lease("A", "a", holder=KEY)])
    dp = LeaseDataPath(dp.table, pace=pace)
    got, _ = run(dp, [Flow("A", 2, 10, 2 * CAP, priority=15)])
    assert got["A"] == pytest.approx(pace * CAP, rel=0.02)
    assert dp.describe(0)["egress"]["up"]["pace_bps"] == pace * CAP


@pytest.mark.parametrize("pace", [0, -0.5, 1.5, float("nan")])
def test_a_pace_outside_0_to_1_is_refused(pace):
    with pytest.raises(ValueError, match="pace"):
        LeaseDataPath(LeaseTable(), pace=pace)
