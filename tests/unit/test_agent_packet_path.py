"""The data plane's packet logic without root: Node objects joined by in-memory links, a fake clock and a
captured TUN. (The same code on real TUN devices and sockets is covered by tests/integration.)"""

import os
import struct
import sys

from node.tun_switch.node import UNANSWERED_RESET_S
from node.tun_switch.memory_links import ManualLoop, TimerLoop
from node.cjdns import keys, labels

sys.path.insert(0, os.path.dirname(__file__))
from meshes import build_line, make_node  # noqa: E402


def ip6_packet(src, dst, payload, next_header=17, hop_limit=64):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), next_header, hop_limit, src.ip6, dst.ip6) + payload


def test_end_to_end_delivery_rebuilds_the_ipv6_packet_and_answers():
    wire, loop, (a, b, c) = build_line(3)
    pkt = ip6_packet(a.identity, c.identity, b"hello through the mesh")
    a.send_ip6(pkt)
    wire.pump()
    assert c.delivered == [pkt]
    reply = ip6_packet(c.identity, a.identity, b"and back", next_header=6)
    c.send_ip6(reply)
    wire.pump()
    assert a.delivered == [reply]
    for _ in range(5):                       # data packets after the handshake
        a.send_ip6(pkt)
        c.send_ip6(reply)
        wire.pump()
    assert len(c.delivered) == 6 and len(a.delivered) == 6
    assert [s["established"] for s in a.describe_sessions()] == [True]
    assert [s["established"] for s in c.describe_sessions()] == [True]
    assert b.describe_sessions() == [] and b.delivered == []
    assert not a.drops and not b.drops and not c.drops


def test_tampered_packets_are_counted_and_traffic_continues():
    wire, loop, (a, b, c) = build_line(3)
    pkt = ip6_packet(a.identity, c.identity, b"x" * 100)
    a.send_ip6(pkt)
    wire.pump()
    c.send_ip6(ip6_packet(c.identity, a.identity, b"y"))
    wire.pump()

    def flip_last(node, packet):
        return packet[:-1] + bytes([packet[-1] ^ 1]) if node is c else packet
    wire.tamper = flip_last
    a.send_ip6(pkt)
    wire.pump()
    assert sum(v for k, v in c.drops.items() if k.startswith("session_")) == 1
    wire.tamper = None
    a.send_ip6(pkt)
    wire.pump()
    assert c.delivered[-1] == pkt and len(c.delivered) == 2


def test_non_fc_and_unknown_destinations_are_dropped():
    wire, loop, (a, b) = build_line(2)
    stranger = keys.Identity.from_seed(b"other", 9)
    a.send_ip6(ip6_packet(a.identity, stranger, b"?"))
    a.send_ip6(b"\x45" + bytes(50))
    a.send_ip6(b"\x60" + bytes(10))
    pkt = bytearray(ip6_packet(a.identity, b.identity, b"?"))
    pkt[24] = 0xfd
    a.send_ip6(bytes(pkt))
    assert a.drops == {"no_path": 1, "tun_not_ipv6": 2, "tun_not_fc00": 1}
    assert not wire.queue


def test_restarted_peer_is_recovered_by_a_fresh_hello():
    wire, loop, (a, b, c) = build_line(3)
    pkt = ip6_packet(a.identity, c.identity, b"before")
    a.send_ip6(pkt)
    wire.pump()
    c.send_ip6(ip6_packet(c.identity, a.identity, b"r"))
    wire.pump()
    a.send_ip6(pkt)
    wire.pump()
    c.send_ip6(ip6_packet(c.identity, a.identity, b"r"))
    wire.pump()
    assert a.describe_sessions()[0]["established"]
    # c restarts with the same identity and forgets its sessions
    c2 = make_node(c.config, loop)
    for link in c.links.values():
        c2.add_link(link)
        link.remote[1].remote = (c2, link)
    a.send_ip6(pkt)
    wire.pump()
    assert c2.delivered == [] and c2.drops == {"session_unknown_handle": 1}
    loop.now += UNANSWERED_RESET_S + 1
    a.send_ip6(pkt)
    wire.pump()
    assert c2.delivered == [pkt]
    assert len(c.delivered) == 2
    assert a.counters["sessions_reset"] == 1


def test_link_pings_mark_peers_up():
    """The first answered link ping brings a link up (how it goes down: test_liveness.py)."""
    wire, loop, (a, b) = build_line(2)
    link = next(iter(a.links.values()))
    assert not a.link_up(link)
    a.housekeeping()
    wire.pump()
    assert a.link_up(link) and link.rtt_ms == 0 and link.liveness.srtt == 0


def test_a_refused_peer_is_down_at_once_and_back_after_a_pong():
    """ECONNREFUSED on a link (the peer's agent died, its kernel answers port unreachable): the sender gets a switch
    error for what it sent at once (its handshake: the packet itself waits for the session), the link counts as
    down until the peer answers a link ping again."""
    wire, loop, (a, b, c) = build_line(3)
    for n in (a, b, c):
        n.housekeeping()
    wire.pump()
    to_c = next(l for l in b.links.values() if l.peer_name == "n2")
    real_send = to_c.send

    def refused(packet, on_fail=None):       # what PeerLink.send_now does on ECONNREFUSED
        to_c.refused_at = loop.now
        return False
    to_c.send = refused
    loop.now += 0.5
    a.send_ip6(ip6_packet(a.identity, c.identity, b"lost"))
    wire.pump()
    assert not b.link_up(to_c) and to_c.switch_index in b.down_links
    assert a.counters["switch_errors_received"] == 1 and b.drops["next_hop_down"] == 1
    b.housekeeping()                         # still refused: stays down
    wire.pump()
    assert to_c.switch_index in b.down_links
    to_c.send = real_send                    # the agent is back: the next probe of the down link (every
    loop.now += 0.2                          # DOWN_PROBE_S) is answered, and the pong brings the link up at once
    b._probe_down_links()
    wire.pump()
    assert b.link_up(to_c) and to_c.switch_index not in b.down_links
    a.send_ip6(ip6_packet(a.identity, c.identity, b"through"))
    a.housekeeping()                         # a repeats its handshake (what met the dead link was its Hello:
    wire.pump()                              # the first packet waited, held_packets.py) and both go through
    assert [p[40:] for p in c.delivered] == [b"lost", b"through"]


def test_a_switch_error_names_the_dead_link():
    """n0 - n1 - n2 - n3 - n4: n2's link to n3 is dead. n0's packet to n4 comes back UNDELIVERABLE from n2, and
    the failure n0 reports names the label from n0 to n3: the far end of the dead link (a route server avoids
    just that link)."""
    wire, loop, nodes = build_line(5)
    for n in nodes:
        n.housekeeping()
    wire.pump()
    n0, n2, n4 = nodes[0], nodes[2], nodes[4]
    for _ in range(3):                                   # a session both ways: errors name its handle
        n0.send_ip6(ip6_packet(n0.identity, n4.identity, b"hi"))
        n4.send_ip6(ip6_packet(n4.identity, n0.identity, b"hi"))
        wire.pump()
    to_n3 = next(l for l in n2.links.values() if l.peer_name == "n3")
    to_n3.send = lambda packet, on_fail=None: False                    # ENETDOWN: the veth is down
    reported = []
    n0.paths.report_failure = lambda ip6, label, dead=None: reported.append((ip6, label, dead))
    n0.send_ip6(ip6_packet(n0.identity, n4.identity, b"x"))
    wire.pump()
    assert reported, "no failure reported"
    ip6, label, dead = reported[0]
    assert ip6 == n4.ip6 and label == n0.paths.lookup(n4.ip6)[1]
    assert dead == n0.paths.lookup(nodes[3].ip6)[1]
    # the source's own link dead: the label of that one link
    to_n1 = next(iter(n0.links.values()))
    to_n1.send = lambda packet, on_fail=None: False
    n0.send_ip6(ip6_packet(n0.identity, n4.identity, b"y"))
    wire.pump()
    assert reported[-1][2] == n0.paths.lookup(nodes[1].ip6)[1]


def test_peer_link_reports_a_dead_link_also_behind_emulated_delay():
    import errno
    from node.tun_switch.link_emulation import LinkParams
    from node.tun_switch.peer_link import PeerLink

    loop = ManualLoop()
    later = []
    loop.call_at = lambda when, fn, *args: later.append((fn, args))

    def delay_over():
        while later:
            fn, args = later.pop(0)
            fn(*args)
    link = PeerLink(0, "lo", "::1", "::1", 47311, loop=loop)
    try:
        failure = [errno.ECONNREFUSED]

        def send(packet):
            if failure:
                raise OSError(failure[0], "failed")
        link._send = send
        loop.now = 7.0
        assert link.send_now(b"x") is False and link.refused_at == 7.0
        assert link.drops == {"peer_unreachable": 1}
        failure[0] = errno.EAGAIN                       # a full buffer is a drop, not a dead link
        assert link.send_now(b"x") is True and not link.dead
        # with emulated delay the send happens later: the packet after a failed one learns the link is dead
        link.set_params(LinkParams(delay_s=0.003))
        failure[0] = errno.ENETDOWN                     # the veth went down
        failed = []
        assert link.send(b"x", lambda: failed.append("x")) is True    # this one only finds out when it leaves,
        assert not failed
        delay_over()
        assert failed == ["x"]                                        # and tells its sender then ...
        assert link.dead and link.send(b"y", lambda: failed.append("y")) is False   # ... the next one at once
        delay_over()
        assert failed == ["x"]                                        # (answered by the caller, not twice)
        failure.clear()                                 # up again: the next send (a link ping) clears it
        link.send(b"ping")
        delay_over()
        assert not link.dead and link.send(b"w") is True
    finally:
        link.close()


def test_keepalive_answers_a_silent_receiver():
    wire, loop, (a, b) = build_line(2)
    a.send_ip6(ip6_packet(a.identity, b.identity, b"one-way"))
    wire.pump()
    for _ in range(3):
        loop.now += 1.5
        a.send_ip6(ip6_packet(a.identity, b.identity, b"one-way"))
        b.housekeeping()
        wire.pump()
    assert len(b.delivered) == 4
    assert a.counters["sessions_reset"] == 0     # b's keepalives count as answers


def keepalives_after_quiet_seconds(wire, loop, nodes, rounds=10):
    """Housekeeping runs 1.1 s apart with nothing sent; the keepalives the nodes sent so far."""
    for _ in range(rounds):
        loop.now += 1.1
        for node in nodes:
            node.housekeeping()
        wire.pump()
    return sum(node.counters["keepalives_sent"] for node in nodes)


def test_keepalives_stop_when_both_ends_go_quiet():
    # a keepalive answers data, never another keepalive: two ends that once talked do not keep each other busy
    wire, loop, (a, b) = build_line(2)
    a.send_ip6(ip6_packet(a.identity, b.identity, b"ping"))
    wire.pump()
    b.send_ip6(ip6_packet(b.identity, a.identity, b"pong"))
    wire.pump()
    sent = keepalives_after_quiet_seconds(wire, loop, (a, b))
    assert 1 <= sent <= 2         # the last to hear data answers it once
    assert keepalives_after_quiet_seconds(wire, loop, (a, b)) == sent


def test_route_server_messages_make_no_keepalive_due():
    # a query and its reply (content type 256): neither end watches the other for silence, so nobody keepalives
    wire, loop, (a, b) = build_line(2)
    _, label_to_b, _ = a.paths.lookup(b.identity.ip6)
    got = []
    b.content_handlers[256] = lambda d, payload: b.send_content_to(d.public_key, None, 256, b"reply")
    a.content_handlers[256] = lambda d, payload: got.append(payload)
    a.send_content_to(b.identity.public_key, label_to_b, 256, b"query")
    wire.pump()
    assert got == [b"reply"]
    assert keepalives_after_quiet_seconds(wire, loop, (a, b), rounds=5) == 0


def test_burst_of_packets_before_the_key_arrives_is_delivered():
    wire, loop, (a, b) = build_line(2)
    for i in range(5):
        a.send_ip6(ip6_packet(a.identity, b.identity, b"burst %d" % i))
    wire.pump()
    assert len(b.delivered) == 5


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.binary(max_size=400),
                          st.sampled_from([None, 0x13, 0x15, 0x153, 0x1, 0xffffffffffffffff])), max_size=8))
def test_random_link_input_never_raises_and_is_accounted(inputs):
    wire, loop, nodes = build_line(3, seed=b"fuzz")
    by_name = dict(zip("abc", nodes))
    for name, data, label in inputs:
        node = by_name[name]
        if label is not None:
            data = struct.pack(">Q", label) + data[8:]
        link = next(iter(node.links.values()))
        before = sum(node.switch.counters.values())
        node.receive_from_link(link, data)
        assert sum(node.switch.counters.values()) > before     # forwarded or dropped, always counted
        wire.pump()
    # every node still works end to end afterwards
    a, c = nodes[0], nodes[2]
    pkt = ip6_packet(a.identity, c.identity, b"still fine")
    a.send_ip6(pkt)
    wire.pump()
    assert c.delivered[-1] == pkt


def test_a_line_longer_than_a_label_delivers_through_a_waypoint_both_ways():
    """n0 .. n19: 19 hops of 4 bits do not fit one label; the static route has a waypoint (n14) whose router sends
    the packet on by the next label. Both ends talk, the waypoint sees no session, and a switch error from the
    segment after the waypoint comes back to the source, which reports its destination's path (without a dead
    link: that error's cause has used up the whole first label)."""
    wire, loop, nodes = build_line(20)
    n0, n14, n19 = nodes[0], nodes[14], nodes[19]
    _, label, via = n0.paths.lookup(n19.ip6)
    assert len(via) == 1
    for _ in range(3):
        n0.send_ip6(ip6_packet(n0.identity, n19.identity, b"far"))
        wire.pump()
        n19.send_ip6(ip6_packet(n19.identity, n0.identity, b"back"))
        wire.pump()
    assert len(n19.delivered) == 3 and len(n0.delivered) == 3 and n19.delivered[0].endswith(b"far")
    assert n14.counters["waypoint_relayed"] >= 3 and n14.describe_sessions() == []
    assert [s["via"] for s in n0.describe_sessions()] == [[labels.label_text(v) for v in via]]
    to_n18 = next(l for l in nodes[17].links.values() if l.peer_name == "n18")
    to_n18.send = lambda packet, on_fail=None: False                   # ENETDOWN beyond the waypoint
    reported = []
    n0.paths.report_failure = lambda ip6, label, dead=None: reported.append((ip6, label, dead))
    n0.send_ip6(ip6_packet(n0.identity, n19.identity, b"lost"))
    wire.pump()
    assert n14.counters["waypoint_errors_relayed"] == 1
    assert reported == [(n19.ip6, label, None)]


def test_malformed_waypoint_frames_are_counted_drops():
    from node.cjdns import waypoints
    from node.cjdns.switch_header import SwitchHeader
    wire, loop, (a, b) = build_line(2)
    to_a = next(iter(b.links.values()))
    header = SwitchHeader(label=0x13).pack()           # from b: its one-hop label to a, a's router
    b.forwarder.forward(1, header + waypoints.WAYPOINT + b"\x00" * 4)
    b.forwarder.forward(1, header + waypoints.frames([1]) + b"rest")
    wire.pump()
    assert a.drops == {"waypoint_runt": 1, "waypoint_bad_label": 1} and a.counters["waypoint_relayed"] == 0
    assert to_a.tx_packets == 2


def test_a_destination_without_a_path_answers_by_the_way_back_the_waypoints_wrote():
    """n19 has no path table: it answers on the way the packet came, the arriving label and the RETURN frames each
    waypoint put in (node/cjdns/waypoints.py); the packet keeps its size on the way."""
    wire, loop, nodes = build_line(30)
    n0, n29 = nodes[0], nodes[29]
    n29.paths.replace({})
    _, _, via = n0.paths.lookup(n29.ip6)
    assert len(via) == 2
    n0.send_ip6(ip6_packet(n0.identity, n29.identity, b"far"))
    wire.pump()
    assert n29.delivered[-1].endswith(b"far")
    [session] = n29.describe_sessions()
    assert len(session["via"]) == 2                      # learned: two RETURN frames
    n29.send_ip6(ip6_packet(n29.identity, n0.identity, b"and back"))
    wire.pump()
    assert n0.delivered[-1].endswith(b"and back")
    assert not any(k.startswith("waypoint") for n in nodes for k in n.drops)


def test_down_links_are_probed_every_down_probe_s_only_while_one_is_down():
    """The probe timer runs while a link is down (a refused port here) and stops once it answers again: an idle
    mesh with every link up has no probe timer waking its agents."""
    wire, loop, (a, b, c) = build_line(3, loop=TimerLoop())
    for n in (a, b, c):
        n.housekeeping()
    wire.pump()
    to_c = next(l for l in b.links.values() if l.peer_name == "n2")
    probes = []
    ping_link = b.ping_link
    b.ping_link = lambda link, now: (probes.append(link.peer_name), ping_link(link, now))
    loop.run_until(loop.now + 2, wire.pump)
    assert probes == []                                      # all up: nothing armed
    real_send = to_c.send
    to_c.send = lambda packet, on_fail=None: (setattr(to_c, "refused_at", loop.now), False)[1]
    loop.now += 0.5
    a.send_ip6(ip6_packet(a.identity, c.identity, b"lost"))
    wire.pump()
    assert to_c.switch_index in b.down_links
    loop.run_until(loop.now + 1.01, wire.pump)
    assert probes == ["n2"] * 5                              # every DOWN_PROBE_S (0.2 s)
    to_c.send = real_send
    loop.run_until(loop.now + 0.2, wire.pump)                # the next probe is answered: up at once
    assert b.link_up(to_c) and not b.down_links and len(probes) == 6
    loop.run_until(loop.now + 3, wire.pump)
    assert len(probes) == 6                                  # and the timer stopped
