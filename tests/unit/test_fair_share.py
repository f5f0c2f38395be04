"""In-network fair share (node/tun_switch/fair_share.py) on a simulated clock: N flows converge to 1/N each, a new flow
gets its share at once, idle capacity is not wasted, a flow under its share loses nothing."""
import pytest

from node.tun_switch import fair_share as fs
from node.tun_switch.fair_share import FairShareScheduler, water_fill

C = 10_000_000          # bit/s
SIZE = 1250             # bytes: 1000 packets/s at C
STEP = 0.001


def simulate(sched, offered, start, end, starts=None, sent=None):
    """Drive the scheduler from ``start`` to ``end``: flow k offers offered[k] bit/s from starts[k] on (packets of
    SIZE bytes, evenly spaced); returns {flow: bytes sent} and {flow: packets dropped}."""
    sent = {} if sent is None else sent
    dropped = {}
    credit = {k: 0.0 for k in offered}
    t = start
    while t < end:
        for k, rate in offered.items():
            if starts and t < starts.get(k, 0):
                continue
            credit[k] += rate * STEP / 8
            while credit[k] >= SIZE:
                credit[k] -= SIZE
                for item in sched.enqueue(k, SIZE, k, t):
                    dropped[item] = dropped.get(item, 0) + 1
        while (item := sched.dequeue(t)) is not None:
            sent[item] = sent.get(item, 0) + SIZE
        t = round(t + STEP, 9)
    return sent, dropped


@pytest.mark.parametrize("n", [2, 4, 8])
def test_n_greedy_flows_converge_to_one_nth_each(n):
    sched = FairShareScheduler(C)
    offered = {bytes([k]): (k + 2) * C / n for k in range(n)}      # each wants more than its share, unequally
    simulate(sched, offered, 0.0, 2.0)
    sent, _ = simulate(sched, offered, 2.0, 6.0)                           # steady state
    total = sum(sent.values())
    assert total * 8 / 4.0 == pytest.approx(C, rel=0.02)                   # the link stays full
    for k in offered:
        assert sent[k] / total == pytest.approx(1 / n, rel=0.05), (k, sent)
    shares = sched.shares(6.0)
    assert all(v == pytest.approx(C / n, rel=0.01) for v in shares.values())
    assert sched.describe(6.0)["fair_share_bps"] == round(C / n)


def test_a_new_flow_gets_its_share_at_once():
    sched = FairShareScheduler(C)
    offered = {b"a": C, b"b": C, b"c": C}
    simulate(sched, offered, 0.0, 2.0, starts={b"c": 2.0})               # a and b alone first
    sent, _ = simulate(sched, offered, 2.0, 2.3, starts={b"c": 2.0})      # c joins at 2.0
    total = sum(sent.values())
    assert sent[b"c"] / total == pytest.approx(1 / 3, rel=0.1), sent      # within 0.3 s, not after N round trips
    sent, _ = simulate(sched, offered, 2.3, 4.3)
    assert all(v / sum(sent.values()) == pytest.approx(1 / 3, rel=0.05) for v in sent.values())


def test_idle_capacity_goes_to_the_flows_that_want_it():
    sched = FairShareScheduler(C)
    offered = {b"small": 0.1 * C, b"big1": C, b"big2": C}
    simulate(sched, offered, 0.0, 1.0)
    sent, dropped = simulate(sched, offered, 1.0, 5.0)
    rate = {k: v * 8 / 4.0 for k, v in sent.items()}
    assert rate[b"small"] == pytest.approx(0.1 * C, rel=0.03)             # gets all it asks for ...
    assert b"small" not in dropped                                        # ... and loses nothing
    assert rate[b"big1"] == pytest.approx(0.45 * C, rel=0.03) and rate[b"big2"] == pytest.approx(0.45 * C, rel=0.03)
    assert sum(rate.values()) == pytest.approx(C, rel=0.02)
    shares = sched.shares(5.0)
    assert shares[b"small"] == pytest.approx(0.1 * C, rel=0.05)
    assert shares[b"big1"] == pytest.approx(0.45 * C, rel=0.05)


def test_a_lone_flow_gets_the_whole_link_and_nothing_leaves_early():
    sched = FairShareScheduler(C, buffer_s=0.1)
    for i in range(200):
        sched.enqueue(b"x", SIZE, i, 0.0)
    assert sched.counters["dropped"] == 200 - int(C * 0.1 / 8 / SIZE)   # the buffer holds 100 ms of C
    out, t = [], 0.0
    while len(out) < 60:
        item = sched.dequeue(t)
        if item is None:
            t = sched.next_send_time(t)
        else:
            out.append((t, item))
    assert [i for _, i in out] == list(range(60))                          # FIFO within a flow
    # after the burst allowance (64 KiB: 53 packets here leave at once), one packet per SIZE * 8 / C seconds
    assert all(t == 0.0 for t, _ in out[:53]) and out[53][0] > 0
    gaps = [b[0] - a[0] for a, b in zip(out[53:], out[54:])]
    assert all(g == pytest.approx(SIZE * 8 / C) for g in gaps), gaps
    assert sched.dequeue(out[-1][0]) is None


def test_the_longest_queue_loses_when_the_buffer_is_full():
    sched = FairShareScheduler(C, buffer_s=0.01)                          # 12500 bytes: 10 packets
    for i in range(10):
        assert sched.enqueue(b"hog", SIZE, ("hog", i), 0.0) == []
    assert sched.enqueue(b"hog", SIZE, ("hog", 10), 0.0) == [("hog", 10)]   # its own: the arriving one
    assert sched.enqueue(b"mouse", SIZE, ("mouse", 0), 0.0) == [("hog", 0)]  # another's: the hog's oldest
    assert sched.describe(0.0)["flows"][0]["dropped"] == 2
    items = sched.drain_all()
    assert ("mouse", 0) in items and len(items) == 10 and sched.backlog == 0 and sched.dequeue(1.0) is None


def test_flows_beyond_the_table_share_the_overflow_flow(monkeypatch):
    monkeypatch.setattr(fs, "MAX_FLOWS", 3)
    sched = FairShareScheduler(C)
    for k in range(5):
        sched.enqueue(bytes([k]), 100, k, 0.0)
    assert set(sched.flows) == {b"\0", b"\1", b"\2", fs.OVERFLOW} and sched.counters["overflow_flow"] == 2
    while sched.dequeue(10.0) is not None:
        pass
    sched.enqueue(b"new", 100, "n", 10.0 + fs.IDLE_S + 1)                 # idle flows are forgotten
    assert set(sched.flows) == {b"new"}


def test_water_filling():
    assert water_fill({"a": 1, "b": 10, "c": 10}, 9) == {"a": 1, "b": 4, "c": 4}
    assert water_fill({"a": 1, "b": 2}, 9) == {"a": 1, "b": 2}
    assert water_fill({}, 9) == {}


@pytest.mark.parametrize("rate, buffer_s, field", [(0, 0.1, "rate_bps"), (1.5, 0.1, "rate_bps"),
                                                    (True, 0.1, "rate_bps"), (C, 0, "buffer_s"),
                                                    (C, float("nan"), "buffer_s"), (C, "1", "buffer_s")])
def test_bad_parameters_are_named(rate, buffer_s, field):
    with pytest.raises(ValueError, match=field):
        FairShareScheduler(rate, buffer_s)
