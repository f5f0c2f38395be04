"""Leases, the free lease, virtual routers and the interface table (node/leases/table.py)."""
import pytest

from node.leases.table import FREE, Lease, LeaseError, LeaseTable, VirtualRouter

ALICE = bytes([1]) * 32
BOB = bytes([2]) * 32


def table():
    t = LeaseTable()
    t.add_link("eth1", 10000)
    t.add_link("eth2", 10000)
    return t


def test_every_link_has_an_unowned_free_lease_with_zero_guarantee():
    t = table()
    for ll in t.links.values():
        assert ll.free.id == FREE and ll.free.holder is None and ll.free.guarantee_bps == 0
        assert ll.free.expires is None and ll.free.virtual_router == FREE


def test_free_virtual_router_is_joined_to_the_free_lease_of_every_link():
    t = table()
    t.add_lease(Lease("L1", "eth1", guarantee_bps=500_000, holder=ALICE))
    joined = t.leases_of(FREE, now=0)
    assert sorted(l.link for l in joined) == ["eth1", "eth2"]
    assert all(l.is_free for l in joined)
    assert t.virtual_routers[FREE].holder is None


def test_interface_table_maps_label_interface_to_link_and_lease():
    t = table()
    t.add_lease(Lease("L1", "eth1", guarantee_bps=500_000, holder=ALICE))
    t.add_interface(0, "eth1", FREE)
    t.add_interface(2, "eth1", "L1")
    t.add_interface(3, "eth2", FREE)
    assert t.resolve(2, 0).id == "L1"
    assert t.resolve(0, 0).is_free and t.resolve(0, 0).link == "eth1"
    assert t.resolve(3, 0).link == "eth2"
    assert t.resolve(7, 0) is None
    assert t.free_interface_index() == 4


def test_expired_lease_falls_back_to_the_free_lease():
    t = table()
    t.add_lease(Lease("L1", "eth1", guarantee_bps=500_000, holder=ALICE, expires=100.0))
    t.add_interface(2, "eth1", "L1")
    assert t.resolve(2, 99.9).id == "L1"
    fallback = t.resolve(2, 100.0)
    assert fallback.is_free and fallback.link == "eth1"
    assert [l.id for l in t.links["eth1"].active(100.0)] == [FREE]


@pytest.mark.parametrize("bad", [
    dict(id=""), dict(guarantee_bps=-1), dict(guarantee_bps=float("inf")), dict(max_priority_bandwidth=-5),
    dict(deprioritize_non_customer=16), dict(deprioritize_non_customer=True), dict(holder=b"short"),
])
def test_bad_lease_definitions_are_rejected(bad):
    args = dict(id="L", link="eth1", holder=ALICE)
    args.update(bad)
    with pytest.raises(LeaseError):
        Lease(**args)


def test_bad_table_operations_are_rejected():
    t = table()
    with pytest.raises(LeaseError):
        t.add_lease(Lease("L", "nope", holder=ALICE))
    t.add_lease(Lease("L", "eth1", holder=ALICE))
    with pytest.raises(LeaseError):
        t.add_lease(Lease("L", "eth2", holder=ALICE))       # ids are unique per device
    with pytest.raises(LeaseError):
        t.add_lease(Lease(FREE, "eth1"))
    with pytest.raises(LeaseError):
        t.add_interface(1, "eth1")                          # the router's interface
    t.add_interface(2, "eth1", "L")
    with pytest.raises(LeaseError):
        t.add_interface(2, "eth2")
    with pytest.raises(LeaseError):
        t.add_interface(3, "eth1", "missing")
    with pytest.raises(LeaseError):
        t.add_virtual_router(VirtualRouter("vr", holder=None))


def test_virtual_routers_join_only_leases_of_the_same_holder():
    t = table()
    t.add_virtual_router(VirtualRouter("vrA", holder=ALICE, expires=50))
    a = t.add_lease(Lease("LA", "eth1", holder=ALICE))
    b = t.add_lease(Lease("LB", "eth2", holder=BOB))
    t.join(a, "vrA")
    assert [l.id for l in t.leases_of("vrA", 0)] == ["LA"]
    with pytest.raises(LeaseError):
        t.join(b, "vrA")
    with pytest.raises(LeaseError):
        t.join(a, FREE)                                     # the free router only has free leases
    assert t.leases_of("vrA", 50) == []                     # expired virtual router
    d = t.describe(0)
    assert d["virtual_routers"]["vrA"]["leases"] == ["eth1/LA"]


def test_slots_are_stable_per_link():
    t = table()
    a = t.add_lease(Lease("A", "eth1", holder=ALICE))
    b = t.add_lease(Lease("B", "eth1", holder=ALICE))
    c = t.add_lease(Lease("C", "eth2", holder=ALICE))
    assert (t.links["eth1"].free.slot, a.slot, b.slot, c.slot) == (0, 1, 2, 1)
