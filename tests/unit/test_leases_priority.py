"""Priority meter, ingress re-prioritisation, customer bit, deprioritize-non-customer (priority.py)."""
import pytest
from hypothesis import given, strategies as st

from node.leases.table import Lease
from node.leases.priority import LeaseIngress, PriorityMeter, capped_priority, deprioritize_non_customer
from node.cjdns.switch_header import UNCLASSED, is_customer, make_traffic_class, priority_of


def test_meter_converges_to_a_steady_rate():
    m = PriorityMeter(tau_s=0.1)
    for i in range(2000):              # 10 units every ms = 10000 units/s for 2 s
        m.add(10, i * 0.001)
    assert m.rate(1.999) == pytest.approx(10000, rel=0.02)
    assert m.rate(2.999) == pytest.approx(10000 * 2.718281828 ** -10, rel=0.05)   # decays with tau


def test_meter_rejects_bad_time_constant():
    with pytest.raises(ValueError):
        PriorityMeter(0)


def test_clear_customer_bit_on_ingress():
    ing = LeaseIngress(Lease("peer", "eth1", clear_customer_bit=True))
    tc, exact = ing.apply(make_traffic_class(9, customer=True), 1000, 0.0)
    assert not is_customer(tc) and priority_of(tc) == 9 and exact == 9
    keep = LeaseIngress(Lease("cust", "eth1"))
    assert is_customer(keep.apply(make_traffic_class(9, customer=True), 1000, 0.0)[0])
    assert ing.counters["customer_bit_cleared"] == 1


def drive(ing, priorities, rate_bytes_per_s, seconds, size=1000):
    """Send packets round robin over ``priorities``, charging each as forwarded; return the mean priority per
    input priority over the last second."""
    n = int(rate_bytes_per_s * seconds / size)
    dt = size / rate_bytes_per_s
    sums, counts = {}, {}
    for i in range(n):
        now = i * dt
        p = priorities[i % len(priorities)]
        tc, exact = ing.apply(make_traffic_class(p), size, now)
        ing.charge(exact, size, now)
        if now > seconds - 1:
            sums[p] = sums.get(p, 0) + priority_of(tc)
            counts[p] = counts.get(p, 0) + 1
    return {p: sums[p] / counts[p] for p in sums}


def test_reprioritisation_holds_priority_bandwidth_at_the_limit_and_keeps_ratios():
    # 1000 kB/s at priorities 12 and 6 (mean 9) = 9000 priority*kB/s against a limit of 3000: scale 1/3
    ing = LeaseIngress(Lease("L", "eth1", max_priority_bandwidth=3000))
    means = drive(ing, [12, 6], 1_000_000, 4.0)
    assert means[12] == pytest.approx(4.0, abs=0.3)
    assert means[6] == pytest.approx(2.0, abs=0.3)
    assert ing.meter.rate(4.0) == pytest.approx(3000, rel=0.1)


def test_no_reprioritisation_under_the_limit_or_without_limit():
    under = LeaseIngress(Lease("L", "eth1", max_priority_bandwidth=100000))
    assert drive(under, [12], 1_000_000, 2.0) == {12: 12}
    unlimited = LeaseIngress(Lease("L", "eth1"))
    assert drive(unlimited, [15], 1_000_000, 2.0) == {15: 15}


def test_scale_recovers_when_traffic_falls_below_the_limit():
    ing = LeaseIngress(Lease("L", "eth1", max_priority_bandwidth=3000))
    drive(ing, [12], 1_000_000, 2.0)
    assert ing.scale(2.0) < 0.5
    assert ing.scale(4.0) == 1.0                            # two idle seconds later


def test_zero_limit_sends_everything_at_priority_zero():
    ing = LeaseIngress(Lease("L", "eth1", max_priority_bandwidth=0))
    assert drive(ing, [15], 1_000_000, 2.0) == {15: 0}


def test_unclassed_traffic_stays_unclassed():
    ing = LeaseIngress(Lease("L", "eth1", max_priority_bandwidth=0, clear_customer_bit=True))
    assert ing.apply(UNCLASSED, 100, 0.0) == (UNCLASSED, 0.0)
    assert deprioritize_non_customer(UNCLASSED, 0) == UNCLASSED


@given(st.integers(0, 15), st.booleans(), st.one_of(st.none(), st.integers(0, 15)))
def test_deprioritize_non_customer_caps_only_non_customer_traffic(p, customer, cap):
    tc = make_traffic_class(p, customer)
    out = deprioritize_non_customer(tc, cap)
    assert is_customer(out) == customer
    if customer or cap is None:
        assert out == tc
        assert capped_priority(tc, float(p), cap) == p
    else:
        assert priority_of(out) == min(p, cap)
        assert capped_priority(tc, float(p), cap) == min(p, cap)
