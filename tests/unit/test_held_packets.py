"""Packets that wait for a path or a session (node/tun_switch/held_packets.py): bounded, aged, counted; and the data
plane's first packets, sent from both ends at once, all arrive."""
import os
import struct
import sys

from node.tun_switch.held_packets import HeldPackets

sys.path.insert(0, os.path.dirname(__file__))
from meshes import build_line  # noqa: E402


def test_bounded_per_destination_and_in_destinations_and_counted():
    h = HeldPackets(per_destination=2, max_destinations=2, max_age_s=10)
    assert h.hold(b"a", b"1", 0) and h.hold(b"a", b"2", 0)
    assert not h.hold(b"a", b"3", 0)                         # a third for the same destination
    assert h.hold(b"b", b"1", 0) and not h.hold(b"c", b"1", 0)   # a third destination
    assert h.counters["held_full"] == 2 and len(h) == 2 and b"a" in h
    assert h.take(b"a", 1) == [b"1", b"2"] and b"a" not in h and h.take(b"a", 1) == []
    assert h.counters["released"] == 2


def test_old_packets_expire_and_are_counted():
    h = HeldPackets(max_age_s=10)
    h.hold(b"a", b"old", 0)
    h.hold(b"a", b"new", 5)
    assert h.take(b"a", 12) == [b"new"] and h.counters["held_expired"] == 1
    h.hold(b"b", b"x", 0)
    h.expire(11)
    assert b"b" not in h and h.counters["held_expired"] == 2
    h.hold(b"c", b"y", 20)                                     # expiry also runs when holding
    assert h.counters["held"] == 4


def ip6_packet(src, dst, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), 17, 64, src.ip6, dst.ip6) + payload


def test_first_packets_from_both_ends_at_once_all_arrive():
    """No user data rides in a handshake: both ends hold their first packets and start sessions; the Hellos cross,
    one side gives in (cryptoauth.py), and every packet is delivered once the session carries data."""
    wire, loop, (a, b, c) = build_line(3)
    for i in range(3):
        a.send_ip6(ip6_packet(a.identity, c.identity, b"a%d" % i))
        c.send_ip6(ip6_packet(c.identity, a.identity, b"c%d" % i))
    assert a.held.counters["held"] == 3 and c.held.counters["held"] == 3
    wire.pump()
    assert [p[40:] for p in c.delivered] == [b"a0", b"a1", b"a2"]
    assert [p[40:] for p in a.delivered] == [b"c0", b"c1", b"c2"]
    assert len(a.held) == len(c.held) == 0
    assert sorted(a.drops.items()) + sorted(c.drops.items()) == [("session_crossing_hello", 1)]   # one Hello each


def test_a_handshake_that_got_no_answer_is_repeated_and_the_packet_still_goes():
    wire, loop, (a, b, c) = build_line(3)
    wire.cut = {("n1", "to2")}                                 # the Hello is lost on its way to c
    a.send_ip6(ip6_packet(a.identity, c.identity, b"patient"))
    wire.pump()
    assert c.delivered == [] and len(a.held) == 1
    wire.cut = set()
    loop.now += 1
    a.housekeeping()                                           # repeats the Hello
    wire.pump()
    assert [p[40:] for p in c.delivered] == [b"patient"] and len(a.held) == 0
