"""The route server's path cache (server.py COST_CHANGE_FACTOR): answers repeat from the cache until the graph
changes in a way that matters; a link that goes away or a link cost that moves by the factor gives a new answer."""
from node.route_server import announcement as A
from node.route_server.server import COST_STALE_MS, RouteServer
from node.cjdns.labels import one_hop_label

from tests.unit.test_route_server_core import SNODE, T0, Lab, announce_all, ip

# a square: A-B-D and A-C-D, interfaces numbered so each link has its own
SQUARE = [(("A", 2), ("B", 3)), (("A", 4), ("C", 5)), (("B", 6), ("D", 7)), (("C", 8), ("D", 9))]


def quality(lab, name, kb):
    """LINK_STATE entities for every link of ``name`` (one sample each, lag 1, no drops, ``kb[peer]`` kB)."""
    return tuple(A.LinkStateEntity(one_hop_label(iface), 0, ((1, 0, kb[peer]),))
                 for iface, peer, _ in lab.peers[name] if peer in kb)


def path(rs, lab, a, b):
    return "".join(next(n for n in lab.ids if ip(lab, n) == x) for x in rs.route(ip(lab, a), ip(lab, b)).nodes)


def test_a_repeated_query_and_the_reverse_one_come_from_the_cache():
    lab = Lab("ABCD", SQUARE)
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    first = rs.route(ip(lab, "A"), ip(lab, "D"))
    assert rs.counters["route_cache_miss"] == 1 and "route_cache_hit" not in rs.counters
    assert rs.route(ip(lab, "A"), ip(lab, "D")) == first
    back = rs.route(ip(lab, "D"), ip(lab, "A"))
    assert back.nodes == first.nodes[::-1] and lab.deliver("D", back.label) == "A"
    assert rs.counters["route_cache_hit"] == 2 and rs.counters["route_cache_miss"] == 1


def test_a_link_that_goes_down_gives_a_new_answer():
    lab = Lab("ABCD", SQUARE)
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    via = path(rs, lab, "A", "D")[1]
    other = "C" if via == "B" else "B"
    # the middle node withdraws its link to D (label 0 for that peerNum): the cached answer crosses it
    iface = next(i for i, peer, _ in lab.peers[via] if peer == "D")
    withdraw = A.PeerEntity(ip(lab, "D"), 0, peer_num=one_hop_label(iface))
    rs.handle_announce(A.Announcement.build(lab.ids[via], SNODE.ip6, T0 + 1000, (withdraw,), reset=False).raw,
                       T0 + 1000)
    assert path(rs, lab, "A", "D") == f"A{other}D"
    assert lab.deliver("A", rs.route(ip(lab, "A"), ip(lab, "D")).label) == "D"
    # and the graph a path is found in is the one a fresh build gives
    assert rs.adjacency() == rs._build_adjacency()


def test_a_cost_that_moved_applies_after_cost_stale_ms():
    lab = Lab("ABCD", SQUARE)
    rs = RouteServer(SNODE.ip6)

    def announce(ts, b_kb):
        kb = {"A": {"B": b_kb, "C": 100}, "B": {"A": b_kb, "D": b_kb}, "C": {"A": 100, "D": 100},
              "D": {"B": b_kb, "C": 100}}
        for name in "ABCD":
            rs.handle_announce(lab.ann(name, ts, extra=quality(lab, name, kb[name])).raw, ts)

    def path_at(now):
        return "".join(next(n for n in lab.ids if ip(lab, n) == x)
                       for x in rs.route(ip(lab, "A"), ip(lab, "D"), now_ms=now).nodes)

    announce(T0, 1000)                         # B's links ten times better than C's
    assert path_at(T0) == "ABD"
    version = rs.graph_version
    t = T0 + 1_000_000
    announce(t, 1)                             # now far worse (the old values decayed): the same links, new costs
    assert rs.graph_version == version
    assert path_at(t + COST_STALE_MS - 1) == "ABD"        # the cached answer, a while longer
    assert path_at(t + COST_STALE_MS) == "ACD"
    assert rs.counters["route_cache_hit"] >= 1


def withdraw(rs, lab, name, peer, ts):
    """``name`` withdraws its link to ``peer`` (label 0 for that peerNum)."""
    iface = next(i for i, p, _ in lab.peers[name] if p == peer)
    entity = A.PeerEntity(ip(lab, peer), 0, peer_num=one_hop_label(iface))
    rs.handle_announce(A.Announcement.build(lab.ids[name], SNODE.ip6, ts, (entity,), reset=False).raw, ts)


def square_with_a_cached_path():
    """The square announced, A -> D asked once: (lab, rs, that path, the middle node it does not cross)."""
    lab = Lab("ABCD", SQUARE)
    rs = RouteServer(SNODE.ip6)
    announce_all(rs, lab)
    first = path(rs, lab, "A", "D")
    return lab, rs, first, "C" if first[1] == "B" else "B"


def test_a_link_that_goes_down_elsewhere_keeps_the_cached_answer():
    lab, rs, first, other = square_with_a_cached_path()
    withdraw(rs, lab, other, "D", T0 + 1000)           # a link the cached path does not cross
    assert path(rs, lab, "A", "D") == first and rs.counters["route_cache_hit"] == 1
    withdraw(rs, lab, first[1], "A", T0 + 1000)        # and now one it does: no path is left
    assert rs.route(ip(lab, "A"), ip(lab, "D")) is None and rs.counters["route_cache_miss"] == 2


def test_a_link_that_comes_ends_a_cached_no_path_at_once_and_leaves_a_found_answer_cached():
    lab, rs, first, other = square_with_a_cached_path()
    for a, b in ((first[1], "D"), (other, "D")):
        withdraw(rs, lab, a, b, T0 + 1000)
    assert rs.route(ip(lab, "A"), ip(lab, "D"), now_ms=T0 + 1000) is None
    rs.handle_announce(lab.ann(other, T0 + 2000).raw, T0 + 2000)   # other's link to D is back
    assert path(rs, lab, "A", "D") == f"A{other}D"
    rs.handle_announce(lab.ann(first[1], T0 + 3000).raw, T0 + 3000)  # and the first one: equally cheap, cached
    assert rs.route(ip(lab, "A"), ip(lab, "D"), now_ms=T0 + 3000).nodes[1] == ip(lab, other)
    assert rs.counters["route_cache_hit"] >= 1
