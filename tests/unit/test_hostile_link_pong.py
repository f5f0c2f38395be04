"""Forged link PONGs (issue 13 item 2): a peer answers our link pings with a send time of its choosing (NaN,
infinite, negative, far future, long ago) or names another link's index. Such a pong must be a counted drop: it
must not mark a link up (the first valid pong does: node/tun_switch/liveness.py), must not poison the link's RTT,
and the route-server tick must keep working."""
import math
import struct

import pytest

from node.agent.config import parse_config
from node.tun_switch.node import PONG_MAX_AGE_S, PROTOCOL_VERSION, Node
from node.tun_switch.memory_links import ManualLoop, MemoryLink, MemoryWire
from node.tun_switch.route_server_plane import RouteServerGlue, parse_settings
from node.cjdns import control, keys, labels
from node.cjdns.switch_header import SwitchHeader

T0 = 1_700_000_000


def two_nodes(route_server=True):
    """a (a route server) -- b over one in-memory link: a's interface 2, b's interface 3."""
    wire, loop = MemoryWire(), ManualLoop()
    ids = [keys.Identity.from_seed(b"pong", i) for i in range(2)]
    nodes, glues = [], []
    for i, name in enumerate("ab"):
        cfg = parse_config({"node": name, "private_key": ids[i].private_key.hex(), "control_socket": "/tmp/x",
                            "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})
        node = Node(cfg, loop, clock=loop.clock, wall_clock=lambda: T0 + loop.now)
        node.deliver = lambda packet: None
        nodes.append(node)
        if route_server:
            glue = RouteServerGlue(node, parse_settings({"serve": i == 0, "allowed": [ids[0].pubkey_text]}))
            glue.install(loop)
            glues.append(glue)
    a, b = nodes
    wire.join(a, MemoryLink(wire, "a", 2, "tob", "b", ids[1].public_key),
              b, MemoryLink(wire, "b", 3, "toa", "a", ids[0].public_key))
    return wire, loop, a, b, glues


def forged_pong(b, b_index_to_a, a_index, sent):
    """What b's switch puts on the wire: a PONG to a's router carrying a's link index and a send time."""
    data = struct.pack(">Hd", a_index, sent)
    packet = SwitchHeader(label=labels.one_hop_label(b_index_to_a)).pack() + \
        control.frame(control.Ping(PROTOCOL_VERSION, data, pong=True))
    [(_, out)] = b.switch.receive(1, packet)
    return out


BAD_TIMES = [math.nan, math.inf, -math.inf, -1.0, -1e300, 1e300, 1e9]


@pytest.mark.parametrize("sent", BAD_TIMES, ids=[repr(t) for t in BAD_TIMES])
def test_forged_pong_with_a_bad_send_time_is_dropped(sent):
    wire, loop, a, b, glues = two_nodes()
    link = a.links[2]
    for _ in range(200):
        a.receive_from_link(link, forged_pong(b, 3, 2, sent))
    assert link.liveness.last_answered is None and link.rtt_ms is None and not a.link_up(link)
    assert a.drops.get("pong_bad_time") == 200
    for _ in range(20):
        loop.now += 0.1
        for glue in glues:
            glue.tick()
        wire.pump()
    assert all("tick_errors" not in g.counters for g in glues)
    assert a.all_counters()["handler_errors"] == {}


def test_pong_sent_before_the_down_window_does_not_mark_the_link_up():
    wire, loop, a, b, _ = two_nodes(route_server=False)
    link = a.links[2]
    stale = loop.now - PONG_MAX_AGE_S - 1
    a.receive_from_link(link, forged_pong(b, 3, 2, stale))
    assert not a.link_up(link) and a.drops.get("pong_bad_time") == 1


def test_pong_naming_another_link_is_dropped():
    """b may answer pings on its own link only: a pong arriving on link 2 that names link 5 says nothing
    about link 5."""
    wire, loop, a, b, _ = two_nodes(route_server=False)
    other = MemoryLink(wire, "a", 5, "toc", "c", keys.Identity.from_seed(b"pong", 9).public_key)
    a.add_link(other)
    a.receive_from_link(a.links[2], forged_pong(b, 3, 5, loop.now))
    assert other.liveness.last_answered is None and not a.link_up(other)
    assert a.drops.get("pong_wrong_link") == 1


def test_real_pongs_still_bring_the_link_up_with_a_finite_rtt():
    wire, loop, a, b, _ = two_nodes(route_server=False)
    a.housekeeping()
    loop.now += 0.002
    wire.pump()
    link = a.links[2]
    assert a.link_up(link) and link.rtt_ms == pytest.approx(2.0)
    assert not any(k.startswith("pong_") for k in a.drops)


def test_route_server_tick_survives_any_link_rtt():
    """Defence in depth: whatever a link reports as its RTT (a bug elsewhere), the announcement carries a valid
    LINK_QUALITY entity and the tick does not fail."""
    wire, loop, a, b, glues = two_nodes()
    for _ in range(30):
        loop.now += 0.1
        if round(loop.now * 10) % 10 == 0:
            a.housekeeping()
            b.housekeeping()
        wire.pump()
        for g in glues:
            g.tick()
        wire.pump()
    assert glues[1].client.counters["ann_accepted"] >= 1
    for rtt in (math.nan, math.inf, -5.0, 1e30):
        b.links[3].rtt_ms = rtt
        loop.now += 1.0                               # the peer list's RTTs go to the client once a second
        glues[1].client.next_announce = 0
        glues[1].tick()
        wire.pump()
        glues[0].tick()
        wire.pump()
        assert "tick_errors" not in glues[1].counters, rtt
    assert glues[1].counters["bad_link_rtt"] == 4
