"""HTB class plan of a link's leases (tc_plan.py)."""
import pytest

from node.leases.table import Lease, LinkLeases
from node.leases.tc_plan import FREE_PRIO, PAID_PRIO, handle_text, htb_plan, so_priority

KEY = bytes([3]) * 32


def test_plan_has_one_class_per_lease_reached_by_so_priority():
    ll = LinkLeases("eth1", 10_000_000)
    ll.add(Lease("A", "eth1", guarantee_bps=3_000_000, holder=KEY))
    ll.add(Lease("B", "eth1", guarantee_bps=500_000, holder=KEY))
    plan = htb_plan(10_000_000, ll.active(0))
    assert plan["root"] == {"handle": 0x10000, "default": 0xA}
    by_lease = {c["lease"]: c for c in plan["classes"]}
    assert by_lease[None]["rate_bps"] == by_lease[None]["ceil_bps"] == 10_000_000
    assert by_lease["free"]["handle"] == 0x0001000A and handle_text(0x0001000A) == "1:a"
    assert by_lease["free"]["prio"] == FREE_PRIO and by_lease["free"]["rate_bps"] == 1000
    assert by_lease["A"]["so_priority"] == 0x0001000B and by_lease["A"]["rate_bps"] == 3_000_000
    assert by_lease["B"]["handle"] == so_priority(2) == 0x0001000C
    for lease in ("free", "A", "B"):
        assert by_lease[lease]["ceil_bps"] == 10_000_000 and by_lease[lease]["parent"] == 0x00010001
    assert by_lease["A"]["prio"] == PAID_PRIO < FREE_PRIO
    assert not plan["oversubscribed"]


def test_expired_lease_has_no_class_and_slots_stay_stable():
    ll = LinkLeases("eth1", 10_000_000)
    ll.add(Lease("A", "eth1", guarantee_bps=3_000_000, holder=KEY, expires=5))
    ll.add(Lease("B", "eth1", guarantee_bps=8_000_000, holder=KEY))
    plan = htb_plan(10_000_000, ll.active(10))
    assert [c["lease"] for c in plan["classes"]] == [None, "free", "B"]
    assert plan["classes"][2]["handle"] == 0x0001000C
    assert htb_plan(10_000_000, ll.active(0))["oversubscribed"]


def test_plan_needs_capacity_and_the_free_lease():
    ll = LinkLeases("eth1")
    with pytest.raises(ValueError):
        htb_plan(0, ll.active(0))
    with pytest.raises(ValueError):
        htb_plan(1_000_000, [])
