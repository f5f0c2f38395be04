"""Paths longer than a label (node/cjdns/waypoints.py, a pktlab extension): the frames, cutting a path into
segments, static routes with waypoints, and packets walked through real switches with a waypoint relay at each
segment's end, both ways, the reply taking the way back the packet brings."""
import random
from collections import deque

import networkx as nx
import pytest

from node.cjdns import labels
from node.cjdns import waypoints as W
from node.cjdns.labels import V358, LabelError
from node.cjdns.paths import path_label, static_paths
from node.cjdns.switch import Switch
from node.cjdns.switch_header import SwitchHeader


def adjacency_of(g: nx.Graph) -> dict:
    """{node: {neighbour: switch index}} numbered like testbed/agent_configs: 0, 2, 3, ..."""
    adj = {n: {} for n in g}
    for n in sorted(g, key=str):
        for k, m in enumerate(sorted(g[n], key=str)):
            adj[n][m] = 0 if k == 0 else k + 1
    return adj


def switches_of(adj) -> dict:
    out = {}
    for n, nbrs in adj.items():
        sw = Switch(scheme=labels.scheme_for_interfaces(max(nbrs.values(), default=0)))
        for i in nbrs.values():
            sw.add_interface(i)
        out[n] = sw
    return out


SESSION = b"\x00\x00\x00\x09session packet"


def walk(adj, switches, source, label, via=()):
    """Send a packet from source's router along label and its waypoint frames, relaying at each waypoint the way
    the data plane does (node/tun_switch/node.py). Returns (node reached, its way back: the arriving label
    bit-reversed and the RETURN frames, waypoints passed)."""
    packet = SwitchHeader(label=label).pack() + W.frames(via) + SESSION
    node, index, stops = source, 1, []
    for _ in range(10_000):
        (dest, out), = switches[node].receive(index, packet)
        if dest != 1:
            neighbour = next(n for n, i in adj[node].items() if i == dest)
            node, index, packet = neighbour, adj[neighbour][node], out
            continue
        arrival = SwitchHeader.unpack(out).label
        back, rest = W.returns(out[12:])
        if rest[:4] != W.WAYPOINT:
            assert rest == SESSION and len(out) == len(packet)        # the packet keeps its size
            return node, (labels.bit_reverse64(arrival),) + back, stops
        stops.append(node)
        nxt, rest = W.relay(out[12:], arrival)
        index, packet = 1, SwitchHeader(label=nxt).pack() + rest
    raise AssertionError("loop")


def test_relay_swaps_a_waypoint_frame_for_a_return_frame():
    wire = W.frames([0x13, 0x1555]) + SESSION
    label, out = W.relay(wire, arrival_label=labels.bit_reverse64(0x5))
    assert label == 0x13 and len(out) == len(wire)
    assert out == W.frames([0x5], W.RETURN) + W.frames([0x1555]) + SESSION      # the way back: arrival reversed
    label, out2 = W.relay(out, arrival_label=labels.bit_reverse64(0x3))          # the next waypoint
    assert label == 0x1555 and out2 == W.frames([0x3, 0x5], W.RETURN) + SESSION
    assert W.returns(out2) == ((0x3, 0x5), SESSION) and W.returns(SESSION) == ((), SESSION)
    assert W.session_part(W.frames([0x5], W.RETURN) + W.frames([0x1555]) + SESSION) == (1, SESSION)
    with pytest.raises(W.WaypointError, match="12 bytes"):
        W.relay(W.RETURN + bytes(4), 1)
    with pytest.raises(W.WaypointError, match="something to send on"):
        W.relay(W.WAYPOINT + bytes(8), 1)
    with pytest.raises(W.WaypointError, match="not a path"):
        W.relay(W.frames([1]) + b"rest", 1)
    with pytest.raises(W.WaypointError, match="no waypoint frame"):
        W.relay(W.frames([0x5], W.RETURN) + SESSION, 1)


def test_an_error_goes_back_by_the_return_frame_and_the_source_counts_what_is_left():
    header = SwitchHeader(label=0x1234, label_shift=8).pack()
    cause = header + W.frames([0x5, 0x7], W.RETURN) + W.frames([0x1555]) + SESSION
    back, rest = W.error_back(cause)
    assert back == 0x5 and rest == header + W.frames([0x7], W.RETURN) + W.frames([0x1555]) + SESSION
    back, rest = W.error_back(rest)
    assert back == 0x7 and W.error_back(rest) is None
    assert W.session_part(rest[12:]) == (1, SESSION)


def test_a_path_of_29_hops_is_cut_into_segments_that_each_fit():
    n = 30
    hops = [(None if i == 0 else 0x15, None if i == n - 1 else 0x13) for i in range(n)]
    with pytest.raises(labels.LabelTooLong):
        labels.build_label(hops)          # one label holds 59 bits: 14 hops of 4 bits
    segments = W.split(hops, [V358] * n)
    assert [s.end for s in segments] == [14, 28, 29]
    assert all(labels.log2(s.label) <= labels.MAX_LABEL_BITS for s in segments)
    assert segments[0].label == labels.splice_path([0x13] * 14) and segments[0].hops == (0x13,) * 14


def test_a_path_that_fits_is_one_segment_equal_to_build_label():
    hops = [(None, 0x15), (0x9e, 0x8e), (0x13, 0xa2), (0x1b, 0x1d), (0xee, 0x1b), (0x19, 0x1b), (0x13, None)]
    label, hop_labels = labels.build_label(hops)
    assert W.split(hops, [V358] * len(hops)) == [(6, label, tuple(hop_labels))]


def test_a_segment_ends_where_the_return_path_would_not_fit():
    """A waypoint's switch stores the return path above the self route: a wide incoming director at the segment's
    end needs that many free bits (RETURN_PATH_INVALID otherwise), so the segment ends one node earlier."""
    n = 15
    # 13 hops of 4 bits (52 bits), then a last hop into the destination's 10-bit interface 40
    hops = [(None if i == 0 else 0x15, None if i == n - 1 else 0x13) for i in range(n)]
    hops[-1] = (V358.one_hop_label(40), None)
    segments = W.split(hops, [V358] * n)
    assert len(segments) == 2 and segments[0].end == 13
    adj = {f"n{i}": {} for i in range(n)}
    for i in range(n - 1):
        adj[f"n{i}"][f"n{i + 1}"] = 0
        adj[f"n{i + 1}"][f"n{i}"] = 2 if i + 1 < n - 1 else 40
    label, via = static_paths(adj, "n0")[f"n{n - 1}"]
    assert (label, via) == (segments[0].label, (segments[1].label,))
    assert walk(adj, switches_of(adj), "n0", label, via)[0] == f"n{n - 1}"


@pytest.mark.parametrize("rows,cols", [(10, 10), (3, 40)])
def test_every_pair_of_a_big_grid_is_reached_and_answers_back(rows, cols):
    """grid:10x10 has 18-hop paths: today's LabelTooLong. With waypoints every route reaches its destination
    through real switches, and the reply (the destination's own static route) comes back."""
    g = nx.grid_2d_graph(rows, cols)
    adj = adjacency_of(g)
    switches = switches_of(adj)
    nodes = sorted(g)
    routes = {n: static_paths(adj, n) for n in nodes}
    longest = max(len(via) for r in routes.values() for _, via in r.values())
    assert longest >= 1
    rng = random.Random(3)
    for a, b in rng.sample([(a, b) for a in nodes for b in nodes if a != b], 300) + [(nodes[0], nodes[-1])]:
        label, via = routes[a][b]
        reached, way_back, stops = walk(adj, switches, a, label, via)
        assert reached == b and len(stops) == len(via) and len(way_back) == len(via) + 1
        assert walk(adj, switches, b, way_back[0], way_back[1:])[0] == a      # the reply takes the way back
        back_label, back_via = routes[b][a]
        assert walk(adj, switches, b, back_label, back_via)[0] == a


def test_static_routes_equal_split_of_the_whole_path_through_a_hub():
    """static_paths builds routes along the BFS tree one splice per node; the result is the same as cutting each
    whole path with waypoints.split (path_label). The graph: a line of 40 whose middle node is a hub of 300 leaves
    (a wide scheme; its line neighbours sort after the leaves, so their 11-bit directors make the hub re-encode
    the 4-bit ones), so routes have waypoints, re-encoded hops and hub hops, and they all deliver."""
    g = nx.path_graph([f"L{i:02}" for i in range(40)])
    g.add_edges_from(("L20", f"A{k:03}") for k in range(300))
    adj = adjacency_of(g)
    assert labels.scheme_for_interfaces(max(adj["L20"].values())).forms[-1].bit_count == 9
    switches = switches_of(adj)
    for source in ("L00", "A007", "L39"):
        tree = static_paths(adj, source)
        assert any(via for _, via in tree.values())
        for dest, route in tree.items():
            assert route == path_label(adj, _bfs_path(adj, source, dest))
        for dest in random.Random(source).sample(sorted(tree), 40):
            assert walk(adj, switches, source, *tree[dest])[0] == dest


def _bfs_path(adj, source, dest):
    """The BFS tree static_paths walks: neighbours in sorted order, the first parent found."""
    parent, queue = {source: None}, deque([source])
    while queue:
        node = queue.popleft()
        for nb in sorted(adj[node], key=str):
            if nb not in parent:
                parent[nb] = node
                queue.append(nb)
    path = [dest]
    while path[-1] != source:
        path.append(parent[path[-1]])
    return path[::-1]


def test_a_single_hop_always_fits():
    with pytest.raises(LabelError):
        W.split([(None, 0x13)], [V358])
    assert W.split([(None, 0x13), (0x15, None)], [V358, V358]) == [(1, 0x13, (0x13,))]
