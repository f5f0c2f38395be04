"""Route server core: acceptance rules, 20-minute window, state hash, graph, Dijkstra, labels (§4)."""
import random

import pytest

from node.route_server import announcement as A
from node.route_server.server import AGREED_TIMEOUT_MS, Rejected, RouteServer
from node.route_server.state_hash import state_hash
from node.cjdns import waypoints
from node.cjdns.keys import Identity
from node.cjdns.labels import V358, one_hop_label, scheme_for_interfaces
from node.cjdns.switch import Switch
from node.cjdns.switch_header import SwitchHeader

SNODE = Identity.from_seed(b"snode", 0)
T0 = 1_700_000_000_000


class Lab:
    """Nodes with real switches; links are (node, iface) <-> (node, iface). A node whose highest interface is
    above 256 switches and announces with the hub scheme (labels.scheme_for_interfaces)."""

    def __init__(self, names, links):
        self.ids = {n: Identity.from_seed(b"rs", i) for i, n in enumerate(names)}
        highest = {n: 0 for n in names}
        for (a, ia), (b, ib) in links:
            highest[a], highest[b] = max(highest[a], ia), max(highest[b], ib)
        self.schemes = {n: scheme_for_interfaces(highest[n]) for n in names}
        self.switches = {n: Switch(scheme=self.schemes[n]) for n in names}
        self.wires = {}
        self.peers = {n: [] for n in names}       # (iface, peer name, peer iface)
        for (a, ia), (b, ib) in links:
            self.switches[a].add_interface(ia)
            self.switches[b].add_interface(ib)
            self.wires[(a, ia)] = (b, ib)
            self.wires[(b, ib)] = (a, ia)
            self.peers[a].append((ia, b, ib))
            self.peers[b].append((ib, a, ia))

    def ann(self, name, ts, reset=True, skip=(), extra=(), scheme=True, version=True):
        entities = []
        if version:
            entities.append(A.VersionEntity(22))
        mine = self.schemes[name]
        if scheme:
            entities.append(A.EncodingSchemeEntity(mine))
        for iface, peer, peer_iface in self.peers[name]:
            if peer in skip:
                continue
            ours = mine.one_hop_label(iface)
            entities.append(A.PeerEntity(self.ids[peer].ip6, self.schemes[peer].one_hop_label(peer_iface),
                                         peer_num=ours, encoding_form=mine.get_form_num(ours)))
        return A.Announcement.build(self.ids[name], SNODE.ip6, ts, tuple(entities) + tuple(extra), reset=reset)

    def deliver(self, src, label, via=()):
        """Where a packet sent on label (and waypoint segments) lands; each waypoint relays it like a node does."""
        node, iface, pkt = src, 1, SwitchHeader(label).pack() + waypoints.frames(via) + b"payload"
        for _ in range(100):
            [(dest, pkt)] = self.switches[node].receive(iface, pkt)
            if dest == 1:
                if waypoints.returns(pkt[12:])[1][:4] != waypoints.WAYPOINT:
                    return node
                label, rest = waypoints.relay(pkt[12:], SwitchHeader.unpack(pkt).label)
                iface, pkt = 1, SwitchHeader(label).pack() + rest
                continue
            node, iface = self.wires[(node, dest)]
        raise AssertionError("loop")


def announce_all(server, lab, ts=T0, **kw):
    for name in lab.ids:
        server.handle_announce(lab.ann(name, ts, **kw).raw, ts)


def ip(lab, name):
    return lab.ids[name].ip6


def test_routes_work_through_real_switches():
    # a chain with mixed interface widths, so re-encoding is needed
    lab = Lab("ABCDE", [(("A", 0), ("B", 40)), (("B", 9), ("C", 2)), (("C", 100), ("D", 3)),
                        (("D", 0), ("E", 7))])
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    for src in "ABCDE":
        for dst in "ABCDE":
            if src == dst:
                continue
            route = rs.route(ip(lab, src), ip(lab, dst))
            assert route is not None, (src, dst)
            assert route.nodes[0] == ip(lab, src) and route.nodes[-1] == ip(lab, dst)
            assert lab.deliver(src, route.label) == dst


def test_both_directions_required_and_withdrawal():
    lab = Lab("ABC", [(("A", 0), ("B", 2)), (("B", 3), ("C", 0))])
    rs = RouteServer(SNODE.ip6)
    rs.handle_announce(lab.ann("A", T0).raw, T0)
    rs.handle_announce(lab.ann("B", T0).raw, T0)
    rs.handle_announce(lab.ann("C", T0, skip="B").raw, T0)     # C does not confirm B
    assert rs.route(ip(lab, "A"), ip(lab, "B")) is not None
    assert rs.route(ip(lab, "A"), ip(lab, "C")) is None
    rs.handle_announce(lab.ann("C", T0 + 1000).raw, T0 + 1000)
    assert lab.deliver("A", rs.route(ip(lab, "A"), ip(lab, "C")).label) == "C"
    # B withdraws its link to C (label 0 for that peerNum) without a reset
    withdraw = A.PeerEntity(ip(lab, "C"), 0, peer_num=one_hop_label(3))
    ann = A.Announcement.build(lab.ids["B"], SNODE.ip6, T0 + 2000, (withdraw,), reset=False)
    rs.handle_announce(ann.raw, T0 + 2000)
    assert rs.route(ip(lab, "A"), ip(lab, "C")) is None
    assert rs.route(ip(lab, "A"), ip(lab, "B")) is not None


def test_link_state_steers_dijkstra():
    # square A-B-D and A-C-D; C's links report much better quality
    lab = Lab("ABCD", [(("A", 0), ("B", 0)), (("A", 2), ("C", 0)), (("B", 2), ("D", 0)), (("C", 2), ("D", 2))])
    rs = RouteServer(SNODE.ip6)

    def good(name, peer_iface_pairs):
        return tuple(A.LinkStateEntity(one_hop_label(i), 0, ((1, 0, 100000),)) for i in peer_iface_pairs)

    extra = {"A": good("A", [2]), "C": good("C", [0, 2]), "D": good("D", [2]), "B": ()}
    for name in "ABCD":
        rs.handle_announce(lab.ann(name, T0, extra=extra[name]).raw, T0)
    route = rs.route(ip(lab, "A"), ip(lab, "D"))
    assert route.nodes == (ip(lab, "A"), ip(lab, "C"), ip(lab, "D"))
    assert lab.deliver("A", route.label) == "D"


@pytest.mark.parametrize("case", ["bad_signature", "wrong_snode", "clock_skew", "old_timestamp", "replay",
                                  "malformed", "no_encoding_scheme", "no_version"])
def test_rejections(case):
    lab = Lab("AB", [(("A", 0), ("B", 0))])
    rs = RouteServer(SNODE.ip6)
    good = lab.ann("A", T0)
    now = T0
    if case == "bad_signature":
        raw = bytearray(good.raw)
        raw[-1] ^= 1
        raw = bytes(raw)
    elif case == "wrong_snode":
        raw = A.Announcement.build(lab.ids["A"], lab.ids["B"].ip6, T0, ()).raw
    elif case == "clock_skew":
        raw, now = good.raw, T0 + 10_001
    elif case in ("old_timestamp", "replay"):
        rs.handle_announce(lab.ann("A", T0 + 5000).raw if case == "old_timestamp" else good.raw, T0 + 5000
                           if case == "old_timestamp" else T0)
        raw = good.raw
    elif case == "malformed":
        raw = good.raw[:119]
    elif case == "no_encoding_scheme":
        raw = lab.ann("A", T0, scheme=False).raw
    else:
        raw = lab.ann("A", T0, version=False).raw
    with pytest.raises(Rejected) as e:
        rs.handle_announce(raw, now)
    assert e.value.reason == case
    assert rs.counters[f"rejected_{case}"] == 1


def test_clock_skew_within_10s_accepted():
    lab = Lab("AB", [(("A", 0), ("B", 0))])
    rs = RouteServer(SNODE.ip6)
    rs.handle_announce(lab.ann("A", T0).raw, T0 - 9_999)


def test_twenty_minute_window_and_state_hash():
    lab = Lab("AB", [(("A", 0), ("B", 0))])
    rs = RouteServer(SNODE.ip6)
    sent = []

    def send(ann, now):
        rs.handle_announce(ann.raw, now)
        sent.append(ann.raw)

    first = lab.ann("A", T0)                                   # version, scheme, peer B
    send(first, T0)
    assert rs.state_hash(ip(lab, "A")) == state_hash(sent)
    ls = A.LinkStateEntity(one_hop_label(0), 1, ((5, 0, 50),))
    t1 = T0 + 60_000
    ephemeral = A.Announcement.build(lab.ids["A"], SNODE.ip6, t1, (ls,), reset=False)
    send(ephemeral, t1)
    assert rs.state_hash(ip(lab, "A")) == state_hash(sent)
    t2 = T0 + AGREED_TIMEOUT_MS + 120_000
    later = A.Announcement.build(lab.ids["A"], SNODE.ip6, t2, (ls,), reset=False)
    rs.handle_announce(later.raw, t2)
    kept = [a.raw for a in rs.nodes[ip(lab, "A")].announcements]
    # the old link-state-only announcement expired; the first still carries the newest peer/version/scheme
    assert kept == [first.raw, later.raw]
    assert rs.state_hash(ip(lab, "A")) == state_hash(kept)
    # a reset announcement starts the list again
    t3 = t2 + 1000
    fresh = lab.ann("A", t3, reset=True)
    rs.handle_announce(fresh.raw, t3)
    assert rs.state_hash(ip(lab, "A")) == state_hash([fresh.raw])
    assert rs.state_hash(b"\x00" * 16) == bytes(64)


def test_random_topologies_route_correctly():
    rng = random.Random(3)
    routed = 0
    for trial in range(5):
        names = [f"n{i}" for i in range(8)]
        free = {n: [i for i in range(0, 60) if i != 1] for n in names}
        for n in names:
            rng.shuffle(free[n])
        links = []
        for i in range(1, len(names)):                      # a random spanning tree plus extra edges
            links.append((names[i], names[rng.randrange(i)]))
        for _ in range(4):
            a, b = rng.sample(names, 2)
            if (a, b) not in links and (b, a) not in links:
                links.append((a, b))
        lab = Lab(names, [((a, free[a].pop()), (b, free[b].pop())) for a, b in links])
        rs = RouteServer(SNODE.ip6)
        announce_all(rs, lab)
        for _ in range(10):
            src, dst = rng.sample(names, 2)
            route = rs.route(ip(lab, src), ip(lab, dst))
            assert route is not None, "every node pair is connected and paths are short"
            assert lab.deliver(src, route.label) == dst
            routed += 1
    assert routed == 50


def test_random_input_only_rejected():
    rs = RouteServer(SNODE.ip6)
    rng = random.Random(6)
    good = Lab("AB", [(("A", 0), ("B", 0))]).ann("A", T0).raw
    for _ in range(300):
        raw = rng.randbytes(rng.randrange(0, 200)) if rng.random() < 0.5 else \
            good[:120] + rng.randbytes(rng.randrange(0, 60))
        with pytest.raises(Rejected):
            rs.handle_announce(raw, T0)


def test_a_cheapest_path_too_long_for_one_label_gets_a_waypoint():
    # cheap path S-P1..P5-D over 10-bit directors (6 hops x 10 bits, and the 10-bit return at D: > 59), costly
    # path S-Q1..Q6-D over 4-bit ones: the answer is the cheap path, cut in two at a waypoint
    wide = [("S", "P1"), ("P1", "P2"), ("P2", "P3"), ("P3", "P4"), ("P4", "P5"), ("P5", "D")]
    narrow = [("S", "Q1"), ("Q1", "Q2"), ("Q2", "Q3"), ("Q3", "Q4"), ("Q4", "Q5"), ("Q5", "Q6"), ("Q6", "D")]
    names = ["S", "D"] + [f"P{i}" for i in range(1, 6)] + [f"Q{i}" for i in range(1, 7)]
    links = [((a, 100), (b, 101)) for a, b in wide] + [((a, 3), (b, 4)) for a, b in narrow]
    lab = Lab(names, links)
    rs = RouteServer(SNODE.ip6)
    for name in names:
        quality = tuple(A.LinkQualityEntity(one_hop_label(iface), 1000, 0, 100_000)
                        for iface, peer, _ in lab.peers[name] if iface >= 100)
        rs.handle_announce(lab.ann(name, T0, extra=quality).raw, T0)
    route = rs.route(ip(lab, "S"), ip(lab, "D"))
    assert route is not None and ip(lab, "P3") in route.nodes
    assert len(route.via) == 1 and route.waypoints[0] in route.nodes[1:-1]
    assert lab.deliver("S", route.label, route.via) == "D"
    assert lab.deliver("D", *(lambda r: (r.label, r.via))(rs.route(ip(lab, "D"), ip(lab, "S")))) == "S"
    assert rs.counters["route_waypoints"] == 2
    # without the wide path the narrow one fits one label
    rs2 = RouteServer(SNODE.ip6)
    for name in names:
        rs2.handle_announce(lab.ann(name, T0, skip=("P1", "S") if name in ("S", "P1") else ()).raw, T0)
    narrow_route = rs2.route(ip(lab, "S"), ip(lab, "D"))
    assert narrow_route.via == () and lab.deliver("S", narrow_route.label) == "D"


def test_routes_through_a_hub_with_more_than_256_peers():
    """A node with 300 peers announces the hub scheme (V3_5_9); paths through it, entering on a wide interface
    and leaving on a narrow one, are built with its scheme and delivered by its switch."""
    leaves = [f"L{k}" for k in range(300)]
    lab = Lab(["H"] + leaves, [(("H", 0 if k == 0 else k + 1), (leaf, 0)) for k, leaf in enumerate(leaves)])
    assert lab.schemes["H"] != V358
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    for a, b in [("L299", "L3"), ("L3", "L299"), ("L0", "L150"), ("L7", "L8")]:
        route = rs.route(ip(lab, a), ip(lab, b))
        assert route.via == () and route.nodes[1] == ip(lab, "H")
        assert lab.deliver(a, route.label) == b
        assert rs.path_of_label(ip(lab, a), route.label) == list(route.nodes)


def test_path_of_label_and_routing_around_a_failed_label():
    # a ring A-B-C-D-A with mixed widths: the label of every route decodes back to its nodes
    lab = Lab("ABCD", [(("A", 0), ("B", 40)), (("B", 9), ("C", 2)), (("C", 100), ("D", 3)), (("D", 0), ("A", 7))])
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    for src in "ABCD":
        for dst in "ABCD":
            if src != dst:
                route = rs.route(ip(lab, src), ip(lab, dst))
                assert rs.path_of_label(ip(lab, src), route.label) == list(route.nodes)
    assert rs.path_of_label(ip(lab, "A"), 0x1) == [ip(lab, "A")]
    assert rs.path_of_label(ip(lab, "A"), 0x1d) is None             # interface 6 of A: no such link
    # A->B direct failed: the answer avoids the A-B link and goes round the ring
    direct = rs.route(ip(lab, "A"), ip(lab, "B"))
    assert direct.nodes == (ip(lab, "A"), ip(lab, "B"))
    around = rs.route(ip(lab, "A"), ip(lab, "B"), bad_labels=[direct.label])
    assert around.nodes == tuple(ip(lab, n) for n in "ADCB")
    assert lab.deliver("A", around.label) == "B"
    assert rs.counters["route_avoiding_failed"] == 1


def test_announcements_per_node_are_bounded_until_a_reset():
    from node.route_server.server import MAX_ANNOUNCEMENTS_PER_NODE
    lab = Lab("AB", [(("A", 0), ("B", 0))])
    rs = RouteServer(SNODE.ip6)
    for i in range(MAX_ANNOUNCEMENTS_PER_NODE):
        rs.handle_announce(lab.ann("A", T0 + i, reset=(i == 0)).raw, T0 + i)
    with pytest.raises(Rejected) as e:
        rs.handle_announce(lab.ann("A", T0 + 1000, reset=False).raw, T0 + 1000)
    assert e.value.reason == "too_many_announcements"
    rs.handle_announce(lab.ann("A", T0 + 1001, reset=True).raw, T0 + 1001)
    assert len(rs.nodes[ip(lab, "A")].announcements) == 1


def grid_lab(rows, cols):
    """A grid (many equally cheap paths between far corners); interface numbers from a shuffled pool."""
    names = [f"{r}.{c}" for r in range(rows) for c in range(cols)]
    free = {n: [i for i in range(2, 40)] for n in names}
    rng = random.Random(5)
    for n in names:
        rng.shuffle(free[n])
    pairs = [(f"{r}.{c}", f"{r}.{c + 1}") for r in range(rows) for c in range(cols - 1)] + \
        [(f"{r}.{c}", f"{r + 1}.{c}") for r in range(rows - 1) for c in range(cols)]
    return Lab(names, [((a, free[a].pop()), (b, free[b].pop())) for a, b in pairs])


def test_both_ends_of_a_pair_get_the_same_path():
    # a node re-asks when the other end moves; different equally cheap paths each way would keep them moving
    lab = grid_lab(4, 4)
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    for a in lab.ids:
        for b in lab.ids:
            if a < b:
                there, back = rs.route(ip(lab, a), ip(lab, b)), rs.route(ip(lab, b), ip(lab, a))
                assert there.nodes == back.nodes[::-1]
                assert lab.deliver(a, there.label) == b and lab.deliver(b, back.label) == a


def test_a_link_reported_dead_is_avoided_for_every_asker_for_10_s():
    lab = Lab("ABCD", [(("A", 2), ("B", 3)), (("B", 4), ("C", 5)), (("C", 6), ("D", 7)), (("D", 8), ("A", 9))])
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    direct = rs.route(ip(lab, "A"), ip(lab, "B"))
    assert direct.nodes == (ip(lab, "A"), ip(lab, "B"))
    # A's switch found the A-B link dead (its label to the link's far end); B has not heard, and asks later
    assert rs.route(ip(lab, "A"), ip(lab, "B"), dead_labels=[direct.label], now_ms=T0).nodes == \
        tuple(ip(lab, n) for n in "ADCB")
    assert rs.counters["route_dead_link_reports"] == 1
    around = rs.route(ip(lab, "B"), ip(lab, "A"), now_ms=T0 + 9_000)
    assert around.nodes == tuple(ip(lab, n) for n in "BCDA") and lab.deliver("B", around.label) == "A"
    assert rs.route(ip(lab, "B"), ip(lab, "A"), now_ms=T0 + 10_000).nodes == (ip(lab, "B"), ip(lab, "A"))
    assert rs.route(ip(lab, "B"), ip(lab, "A")).nodes == (ip(lab, "B"), ip(lab, "A"))   # no clock: as asked
