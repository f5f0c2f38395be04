"""Peer-link liveness (node/tun_switch/liveness.py): a stalled loop of our own does not declare peers dead, a
peer descheduled for a moment is not declared dead, and a really silent peer (or one that no longer hears us) is
still detected. Pure rule first, then real data-plane Nodes on in-memory links with a hand-driven clock."""
import os
import sys

import pytest

from node.tun_switch import liveness as L

sys.path.insert(0, os.path.dirname(__file__))
from meshes import build_line  # noqa: E402


def test_rto_follows_rfc6298_with_a_floor_and_a_cap():
    lv = L.Liveness()
    assert lv.rto == L.MIN_RTO_S                                 # no sample yet
    lv.answered(0.2, now=0)
    assert (lv.srtt, lv.rttvar) == (0.2, 0.1) and lv.rto == 1.0  # 0.2 + 4 * 0.1 = 0.6: the floor
    lv.answered(1.0, now=1)
    assert lv.rttvar == pytest.approx(0.75 * 0.1 + 0.25 * 0.8) and lv.srtt == pytest.approx(0.875 * 0.2 + 0.125)
    assert lv.rto == pytest.approx(lv.srtt + 4 * lv.rttvar)
    for t in range(2, 10):
        lv.answered(5.0, now=t)
    assert lv.rto == L.MAX_RTO_S


def test_the_verdict_needs_missed_probes_and_silence():
    lv = L.Liveness()
    assert not lv.check(0)                                       # never answered: not up, nothing to lose
    lv.answered(0.01, now=0)
    for t in (1, 2, 3):
        lv.probe_sent(t)
    assert lv.missed(3.5) == 2 and not lv.check(3.5)
    assert lv.missed(4.01) == 3 and lv.check(4.01) and not lv.up
    lv.answered(0.01, now=5)
    for t in (6, 7, 8):
        lv.probe_sent(t)
    lv.heard(8.5)                                                # a frame: the peer is there, just slow to answer
    assert lv.missed(9.5) == 3 and not lv.check(9.5)
    lv.forgive()                                                 # our loop stalled: nothing is overdue any more
    assert lv.missed(20) == 0 and not lv.check(20)


def probes_missed(lv, start, end):
    for t in range(start, end):
        lv.probe_sent(t)


def test_a_peer_that_was_slow_lately_gets_the_slack_it_showed_it_needs():
    """As TCP's RTO follows the measured variation: a peer heard again after 3 s of silence may be silent for 6 s
    (SLACK_FACTOR) before its link goes down; the slack shrinks back to DEAD_AFTER_S at SLACK_DECAY."""
    lv = L.Liveness()
    lv.answered(0.01, now=0)
    lv.heard(1)
    lv.heard(4)                                                  # 3 s of silence, and it is back
    assert lv.silence_limit(4) == pytest.approx(6.0)
    probes_missed(lv, 5, 9)
    assert lv.missed(9.5) >= L.MISSED_PROBES and not lv.check(9.5)      # silent 5.5 s: not yet
    assert lv.check(10.1) and not lv.up                                 # silent 6.1 s: down
    assert lv.silence_limit(10.1 + 600) == L.DEAD_AFTER_S               # ten minutes later: the least again


def test_a_link_back_within_moments_of_a_verdict_teaches_the_slack_a_real_cut_does_not():
    lv = L.Liveness()
    lv.answered(0.01, now=0)
    probes_missed(lv, 1, 4)
    assert lv.check(4.5) and not lv.up
    lv.answered(0.01, now=6)                                     # back 1.5 s later: the peer had only stalled
    assert lv.up and lv.silence_limit(6) == pytest.approx(2 * 6.0)
    lv = L.Liveness()
    lv.answered(0.01, now=0)
    probes_missed(lv, 1, 4)
    assert lv.check(4.5)
    lv.answered(0.01, now=4.5 + L.RELEARN_S + 30)                # a real cut, repaired: nothing learned
    assert lv.silence_limit(40) == L.DEAD_AFTER_S
    lv.heard(41)
    lv.heard(100)                                                # up: a minute of silence that ended
    assert lv.silence_limit(100) == L.MAX_DEAD_AFTER_S           # capped at cjdns's 20 s


def test_only_a_quiet_peer_or_an_answer_due_is_probed():
    """cjdns pings only quiet peers: a peer heard within QUIET_S is not probed, unless a probe is still
    unanswered (misses must be counted) or our last answer is ANSWER_EVERY_S old (hearing it does not prove it
    hears us)."""
    lv = L.Liveness()
    assert lv.wants_probe(0)                                     # not up yet
    lv.answered(0.01, now=0)
    lv.heard(0.5)
    assert not lv.wants_probe(1.5)                               # heard 1 s ago, answered 1.5 s ago
    assert lv.wants_probe(0.5 + L.QUIET_S)                       # quiet for QUIET_S
    lv.heard(2.5)
    assert not lv.wants_probe(2.9) and lv.wants_probe(L.ANSWER_EVERY_S)   # heard, but the answer is due
    lv.probe_sent(3.0)
    lv.heard(3.5)
    assert lv.wants_probe(3.8)                                   # heard, but a probe is outstanding
    lv.answered(0.01, now=3.9)
    assert not lv.wants_probe(4.5)


def test_a_heard_peer_is_probed_less_often_and_still_stays_up():
    """Two real Nodes whose housekeeping runs half a second apart: each one's probes and pongs keep the other
    from being quiet, so the link carries about two probes every three seconds, and stays up."""
    wire, loop, a, b = up_line()
    sent = a.links[0].pings_sent + b.links[0].pings_sent
    for _ in range(20):
        loop.now += 0.5
        a.housekeeping()
        wire.pump()
        loop.now += 0.5
        b.housekeeping()
        wire.pump()
    probes = a.links[0].pings_sent + b.links[0].pings_sent - sent
    assert 10 <= probes <= 16                  # 40 with a probe per second from each end, 23 with QUIET_S = 1 s
    assert a.link_up(a.links[0]) and b.link_up(b.links[0])
    assert a.counters["peer_down"] == b.counters["peer_down"] == 0


def test_loop_watch_sees_a_late_run():
    w = L.LoopWatch(1.0)
    assert not w.tick(0) and not w.tick(1.0) and not w.tick(2.4)
    assert w.tick(4.0) and w.stalls == 1


def settle(wire, loop, nodes, seconds, step=1.0, cut=()):
    """Run every node's housekeeping each second and deliver what the wire carries (minus the cut link ends)."""
    wire.cut = set(cut)
    end = loop.now + seconds
    while loop.now + step <= end + 1e-9:
        loop.now += step
        for n in nodes:
            n.housekeeping()
        wire.pump()


def up_line():
    wire, loop, nodes = build_line(2)
    settle(wire, loop, nodes, 2)
    a, b = nodes
    assert a.link_up(a.links[0]) and b.link_up(b.links[0])
    return wire, loop, a, b


def test_a_stalled_loop_does_not_declare_its_peers_dead():
    """a sends its probe, then its process is descheduled for 10 s: b's answers wait unread in a's socket. When a
    runs again it sees the stall (its housekeeping is 9 s late) and forgives what went unanswered: no peer-down,
    though nothing from b was read for 10 s. The late pongs are too old to be RTT samples, but they are frames."""
    wire, loop, a, b = up_line()
    link = a.links[0]
    loop.now += 1
    a.housekeeping()
    b.housekeeping()
    loop.now += 10                                # a stalled: nothing read, no housekeeping
    a.housekeeping()
    assert a.link_up(link) and a.counters["loop_stalls"] == 1
    wire.pump()                                   # the backlog: b's pong and probes
    assert a.drops.get("pong_bad_time") == 1
    settle(wire, loop, [a, b], 5)
    assert a.link_up(link) and a.counters["peer_down"] == 0 and a.counters["loop_stalls"] == 1


def test_a_peer_descheduled_for_two_seconds_is_not_declared_dead():
    wire, loop, a, b = up_line()
    settle(wire, loop, [a], 2)                    # b's process does not run: it neither answers nor probes
    settle(wire, loop, [a, b], 3)
    assert a.counters["peer_down"] == 0 and a.link_up(a.links[0])


def test_a_really_silent_peer_is_detected_in_a_few_seconds_and_back_with_its_first_answer():
    wire, loop, a, b = up_line()
    silent_from = loop.now
    went_down = None
    for _ in range(8):
        settle(wire, loop, [a], 1, cut={("n1", "to0")})
        if went_down is None and not a.link_up(a.links[0]):
            went_down = loop.now - silent_from
    assert went_down is not None and L.DEAD_AFTER_S <= went_down <= L.DEAD_AFTER_S + 2
    assert a.counters["peer_down"] == 1 and 0 in a.down_links
    settle(wire, loop, [a, b], 1)                 # b answers again
    assert a.link_up(a.links[0]) and 0 not in a.down_links


def test_a_peer_that_no_longer_hears_us_is_detected_though_we_hear_it():
    """One-way failure: a's frames are lost, b's still arrive. b finds a silent; a hears b's probes (proof of life)
    but its own probes go unanswered: after ONE_WAY_PROBES of them a's link is down too."""
    wire, loop, a, b = up_line()
    settle(wire, loop, [a, b], L.DEAD_AFTER_S + 2, cut={("n0", "to1")})
    assert not b.link_up(b.links[0]) and a.link_up(a.links[0])
    settle(wire, loop, [a, b], L.ONE_WAY_PROBES, cut={("n0", "to1")})
    assert not a.link_up(a.links[0]) and a.counters["peer_down"] == 1
