"""The 2-level token bucket egress scheduler (egress_scheduler.py) packet by packet."""
import pytest

from node.leases.scheduler import BAD_PACKET, PUSHED_OUT, QUEUE_FULL, EgressScheduler
from node.leases.table import Lease, LinkLeases

KEY = bytes([7]) * 32


def leases(**guarantees):
    ll = LinkLeases("eth1", 8_000_000)
    for name, g in guarantees.items():
        ll.add(Lease(name, "eth1", guarantee_bps=g, holder=KEY))
    return ll


def drain(s, now):
    out = []
    while (item := s.dequeue(now)) is not None:
        out.append(item)
    return out


def test_work_conserving_any_packet_goes_out_on_an_idle_link():
    ll = leases()
    s = EgressScheduler(8_000_000)
    assert s.enqueue("free", 1000, ll.free, 0, 0.0) is None
    assert drain(s, 0.0) == ["free"]
    assert s.sent_by_tier["free"] == 1000


def test_link_is_paced_at_its_capacity():
    ll = leases(A=0)
    s = EgressScheduler(8_000_000)                  # 1000 bytes per ms
    for i in range(5):
        s.enqueue(i, 1000, ll.leases["A"], 3, 0.0)
    assert drain(s, 0.0) == [0]
    assert drain(s, 0.0025) == [1, 2]
    assert s.next_send_time() == pytest.approx(0.003)
    assert drain(s, 0.01) == [3, 4]
    assert s.next_send_time() is None


def test_service_order_guaranteed_then_excess_by_priority_then_free():
    ll = leases(G=800_000, X=0)
    s = EgressScheduler(8_000_000)
    s.busy_until = 1.0                              # link busy: everything queues
    s.enqueue("free15", 500, ll.free, 15, 0.0)
    s.enqueue("x2", 500, ll.leases["X"], 2, 0.0)
    s.enqueue("x9", 500, ll.leases["X"], 9, 0.0)
    s.enqueue("g0", 500, ll.leases["G"], 0, 0.0)    # within G's bucket (depth 3000 bytes)
    assert drain(s, 2.0) == ["g0", "x9", "x2", "free15"]


def test_a_lease_beyond_its_guarantee_keeps_its_packets_in_order():
    # G's bucket holds 3000 bytes: its first three packets are guaranteed, the next excess, and tokens come back
    # while they wait. A flow must not be reordered by that split: a receiver's replay window (64 packets in
    # CryptoAuth) drops what arrives too late, and the lease would get only its guarantee
    ll = leases(G=800_000, X=0)
    s = EgressScheduler(8_000_000)
    s.busy_until = 1.0
    now = 0.0
    for i in range(40):
        now += 0.001                                # 100 bytes of G's tokens come back per ms
        assert s.enqueue(("G", i), 1000, ll.leases["G"], 7, now) is None
        assert s.enqueue(("X", i), 200, ll.leases["X"], 9, now) is None
    out = drain(s, 10.0)
    assert [i for lease, i in out if lease == "G"] == list(range(40))
    assert [i for lease, i in out if lease == "X"] == list(range(40))
    assert out[0] == ("G", 0) and s.sent_by_tier["guaranteed"] > 3000      # the guarantee still goes first
    assert len(out) == 80 and s.queued_bytes == 0 and len(s) == 0


def test_full_queue_drops_lowest_priority_first():
    ll = leases(X=0)
    x = ll.leases["X"]
    s = EgressScheduler(8_000_000, queue_limit_bytes=3000)
    s.busy_until = 1.0
    for name, p in [("p1", 1), ("p5", 5), ("p3", 3)]:
        assert s.enqueue(name, 1000, x, p, 0.0) is None
    assert s.enqueue("p4", 1000, x, 4, 0.0) is None           # pushes out p1
    assert s.enqueue("p0", 1000, x, 0, 0.0) == QUEUE_FULL     # lowest: refused
    assert s.enqueue("free", 1000, ll.free, 15, 0.0) == QUEUE_FULL
    assert s.drops[PUSHED_OUT] == 1 and s.drops[QUEUE_FULL] == 2
    assert drain(s, 2.0) == ["p5", "p4", "p3"]


def test_fine_priorities_order_inside_one_wire_level():
    ll = leases(X=0)
    s = EgressScheduler(8_000_000)
    s.busy_until = 1.0
    s.enqueue("low", 100, ll.leases["X"], 7.2, 0.0)
    s.enqueue("high", 100, ll.leases["X"], 7.8, 0.0)
    assert drain(s, 2.0) == ["high", "low"]


@pytest.mark.parametrize("size,priority", [(0, 1), (-5, 1), (10**9, 1), (100, 16), (100, -1), (100, True),
                                           (1.5, 1), (100, "3")])
def test_bad_packets_are_counted_drops(size, priority):
    ll = leases()
    s = EgressScheduler(8_000_000)
    assert s.enqueue("x", size, ll.free, priority, 0.0) == BAD_PACKET
    assert s.drops[BAD_PACKET] == 1 and len(s) == 0


def test_unpaced_scheduler_only_orders():
    ll = leases(X=0)
    s = EgressScheduler(None)
    s.enqueue("a", 1000, ll.free, 0, 0.0)
    s.enqueue("b", 1000, ll.leases["X"], 1, 0.0)
    assert drain(s, 0.0) == ["b", "a"]
    assert s.describe()["pace_bps"] is None
