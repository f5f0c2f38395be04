"""The route server's search graph (node/route_server/csr.py) against networkx on random weighted graphs: the same
cost, a path that exists and avoids the steps it was told to, None exactly when there is no path; built at once,
and kept up to date through a random sequence of changes (costs move, links go and come back, new links, nodes come
and go). And the route server's own search graph, patched as announcements come and nodes expire, against one built
afresh from its adjacency."""
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from node.route_server.csr import LIMIT, SearchGraph
from node.route_server.server import AGREED_TIMEOUT_MS, RouteServer
from tests.unit.test_route_server_core import SNODE, T0, Lab, ip
from tests.unit.test_route_server_path_cache import SQUARE, quality, withdraw

costs = st.one_of(st.integers(1, 50).map(lambda w: w / 10), st.just(1e20))   # 1e20: a link without a value


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 25))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), costs), max_size=80))
    adj = {i: {} for i in range(n)}
    for a, b, w in edges:
        if a != b:
            adj[a][b] = adj[b][a] = w
    return adj


def avoiding(draw, adj):
    steps = [(a, b) for a in adj for b in adj[a]]
    return set(draw(st.lists(st.sampled_from(steps), max_size=6))) if steps else set()


def check(graph, adj, s, t, avoid):
    """graph.search(s, t, avoid) against networkx on adj without the avoided steps."""
    g = nx.DiGraph()
    g.add_nodes_from(adj)
    g.add_weighted_edges_from((a, b, w) for a in adj for b, w in adj[a].items() if (a, b) not in avoid)
    found = graph.search(s, t, avoid)
    if s not in adj or t not in adj or not nx.has_path(g, s, t):
        assert found is None
        return
    cost, path = found
    assert math.isclose(cost, nx.dijkstra_path_length(g, s, t), rel_tol=1e-9)
    assert path[0] == s and path[-1] == t
    steps = list(zip(path, path[1:]))
    assert all(b in adj[a] and (a, b) not in avoid for a, b in steps)
    assert math.isclose(sum(adj[a][b] for a, b in steps), cost, rel_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_search_matches_dijkstra(data):
    adj = data.draw(graphs())
    s, t = data.draw(st.sampled_from(sorted(adj))), data.draw(st.sampled_from(sorted(adj)))
    check(SearchGraph.from_adjacency(adj), adj, s, t, avoiding(data.draw, adj))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_search_follows_changes(data):
    """After each change, from a random source to every node, as networkx on the adjacency as it is then."""
    adj = data.draw(graphs())
    graph = SearchGraph.from_adjacency(adj)
    gone_links, gone_nodes, fresh = set(), set(), len(adj)
    for _ in range(data.draw(st.integers(1, 30))):
        links = sorted((a, b) for a in adj for b in adj[a] if a < b)
        back = sorted((a, b) for a, b in gone_links if a in adj and b in adj and b not in adj[a])
        unlinked = [(a, b) for a in adj for b in adj if a < b and b not in adj[a]]
        ops = ["new node"] + ["cost", "link gone"] * bool(links) + ["link back"] * bool(back) \
            + ["new link"] * bool(unlinked) + ["node gone"] * bool(adj) + ["node back"] * bool(gone_nodes)
        op = data.draw(st.sampled_from(ops))
        if op in ("cost", "link back", "new link"):
            a, b = data.draw(st.sampled_from({"cost": links, "link back": back, "new link": unlinked}[op]))
            adj[a][b] = adj[b][a] = data.draw(costs)
            graph.set_link(a, b, adj[a][b])
        elif op == "link gone":
            a, b = data.draw(st.sampled_from(links))
            del adj[a][b], adj[b][a]
            gone_links.add((a, b))
            graph.remove_link(a, b)
        elif op in ("new node", "node back"):
            if op == "new node":
                key, fresh = fresh, fresh + 1
            else:
                key = data.draw(st.sampled_from(sorted(gone_nodes)))
                gone_nodes.discard(key)
            adj[key] = {}
            graph.add_node(key)
        else:
            key = data.draw(st.sampled_from(sorted(adj)))
            for other in adj.pop(key):
                del adj[other][key]
                gone_links.add((min(key, other), max(key, other)))
            gone_nodes.add(key)
            graph.remove_node(key)
        if not adj:
            continue
        s = data.draw(st.sampled_from(sorted(adj)))
        avoid = avoiding(data.draw, adj)
        for t in list(adj) + sorted(gone_nodes)[:1]:
            check(graph, adj, s, t, avoid)


def test_search_without_a_path_or_node():
    graph = SearchGraph.from_adjacency({1: {2: 1.0}, 2: {1: 1.0}, 3: {}})
    assert graph.search(1, 3) is None                     # no link to 3
    assert graph.search(1, 4) is None                     # no node 4
    assert graph.search(3, 3) == (0.0, [3])
    assert graph.search(1, 2, avoid={(1, 2)}) is None
    assert graph.search(2, 1, avoid={(1, 2)}) == (1.0, [2, 1])   # avoid is by direction


def test_scipy_never_relaxes_an_edge_of_weight_inf():
    """A gone link is an inf weight left in the matrix: scipy must not reach a node through it (with LIMIT it does
    not even look at it; with the default limit it reports the node at distance inf)."""
    m = csr_array((np.array([math.inf, 1.0, math.inf, 1.0]), np.array([1, 2, 0, 1], np.int32),
                   np.array([0, 2, 3, 4], np.int32)), shape=(3, 3))        # 0 -inf-> 1, 0 -1-> 2 -1-> 1
    dist, pred = dijkstra(m, indices=0, return_predecessors=True, limit=LIMIT)
    assert list(dist) == [0.0, 2.0, 1.0] and list(pred) == [-9999, 2, 0]
    m.data[1] = math.inf                                                   # 0 -> 2 gone too
    dist, pred = dijkstra(m, indices=0, return_predecessors=True, limit=LIMIT)
    assert list(dist) == [0.0, math.inf, math.inf] and list(pred) == [-9999, -9999, -9999]
    dist, pred = dijkstra(m, indices=0, return_predecessors=True)
    assert list(dist) == [0.0, math.inf, math.inf]


def test_a_gone_link_is_not_used_and_comes_back_in_place():
    graph = SearchGraph.from_adjacency({1: {2: 1.0, 3: 5.0}, 2: {1: 1.0, 3: 1.0}, 3: {1: 5.0, 2: 1.0}})
    assert graph.search(1, 3) == (2.0, [1, 2, 3])
    graph.remove_link(1, 2)
    assert graph.search(1, 3) == (5.0, [1, 3])
    graph.remove_link(1, 3)
    assert graph.search(1, 3) is None
    graph.set_link(1, 2, 0.5)
    assert graph.search(1, 3) == (1.5, [1, 2, 3])


@pytest.mark.parametrize("cost", [0.0, -1.0, math.inf, math.nan])
def test_a_link_cost_must_be_positive_and_finite(cost):
    """0 would be an explicit zero, which sparse conversions may drop: the link would vanish silently."""
    with pytest.raises(ValueError):
        SearchGraph().set_link(1, 2, cost)


def test_the_route_servers_search_graph_follows_announcements_and_expiry():
    lab = Lab("ABCDEF", SQUARE + [(("D", 10), ("E", 11)), (("E", 12), ("F", 13))])
    rs = RouteServer(SNODE.ip6)
    for name in "ABCDE":                                        # F later: E's link to it is one-sided until then
        rs.handle_announce(lab.ann(name, T0).raw, T0)
    assert rs.route(ip(lab, "A"), ip(lab, "E")) is not None      # the first search makes the search graph

    def same_as_fresh():
        adj = rs._build_adjacency()
        fresh = SearchGraph.from_adjacency(adj)
        for a in rs.nodes:
            for b in rs.nodes:
                kept, new = rs._search.search(a, b), fresh.search(a, b)
                assert (kept is None) == (new is None)
                if kept is not None:           # costs of 1e20 (links without a value) hide the small ones: the path too
                    assert math.isclose(kept[0], new[0]) and all(v in adj[u] for u, v in zip(kept[1], kept[1][1:]))

    same_as_fresh()
    ts = T0 + 1000
    rs.handle_announce(lab.ann("A", ts, reset=False, extra=quality(lab, "A", {"B": 50, "C": 5})).raw, ts)
    rs.handle_announce(lab.ann("B", ts, reset=False, extra=quality(lab, "B", {"A": 50})).raw, ts)   # costs move
    same_as_fresh()
    withdraw(rs, lab, "B", "D", T0 + 2000)                                          # a link goes
    same_as_fresh()
    rs.handle_announce(lab.ann("B", T0 + 3000).raw, T0 + 3000)                       # and comes back
    same_as_fresh()
    rs.handle_announce(lab.ann("F", T0 + 4000).raw, T0 + 4000)                       # a new node, a new link
    same_as_fresh()
    later = T0 + AGREED_TIMEOUT_MS + 5000
    for name in "ABCDF":
        rs.handle_announce(lab.ann(name, later).raw, later)
    assert rs.expire(later) == [ip(lab, "E")]                                       # E went silent
    same_as_fresh()
    assert rs._search.search(ip(lab, "A"), ip(lab, "E")) is None
    assert rs._search.search(ip(lab, "A"), ip(lab, "F")) is None                    # F hung off E
