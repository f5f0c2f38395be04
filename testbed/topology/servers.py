"""Where route servers go when a topology names none: the generators' ``route_servers=N`` and big meshes.

A real PKT network always has route servers; pktlab's static all-pairs paths are a shortcut for small meshes (every
node's config lists a path to every other: N² entries, about 1 M for a 1000-node mesh, and seconds of label
splicing). Meshes bigger than STATIC_PATHS_UP_TO nodes without a route server therefore get
``default_count(nodes)`` of them when they come up (testbed/mesh.py), and any generator takes ``route_servers=N``.

Placement is farthest-first (the greedy k-centre heuristic) inside the largest connected component: the first
server is its best-connected node, each next one the node farthest (in label bits, below) from the servers already placed (ties:
more links, then name), so servers spread over the mesh and every node of the component has one a few hops away.
Every other component of two or more nodes (an imported mesh with ``--allow-disconnected``) gets one server of its
own, placed the same way, so each island routes inside itself.

Distance is counted in label bits, not hops: a node finds its server through its peers (GETSNODE) and reaches it by
one label, which holds 59 bits of directors (4 bits per hop through small nodes, 7 or 10 through hubs). So more
servers are placed than asked for while some node is further from every server than REACH_BITS (a margin below 59
for the way back, whose directors may be wider): on grid:20x20 one server in the middle is 20 hops (80 bits) from
the corners, whose nodes then never found it. Those extra servers go where they bring the most nodes into reach
(greedy set cover), not farthest-first: fewer servers, and every server holds and verifies every announcement
(federation), so each one more costs the whole mesh's announcement load once more.
"""
from __future__ import annotations

import heapq
import math

import networkx as nx

from node.cjdns import labels
from testbed.topology.model import Topology
from testbed.topology.units import TopologyError

STATIC_PATHS_UP_TO = 300   # nodes; above this a mesh without route servers gets default_count of them
NODES_PER_SERVER = 500
REACH_BITS = labels.MAX_LABEL_BITS - 7   # directors a node's label to its server may take


def default_count(nodes: int) -> int:
    return max(1, math.ceil(nodes / NODES_PER_SERVER))


def place(topo: Topology, count: int) -> list[str]:
    """Give at least ``count`` nodes of the largest component (more while a node is out of a label's reach of every
    server), and one of every other component of two or more nodes, the route_server role; returns them."""
    g = topo.graph()
    if count < 1 or not g.number_of_nodes():
        return []
    parts = sorted(nx.connected_components(g), key=lambda c: (-len(c), min(c)))
    if count > len(parts[0]):
        raise TopologyError(f"{topo.name}: route_servers={count} but the largest component has only "
                            f"{len(parts[0])} nodes")
    chosen = []
    for i, part in enumerate(parts):
        if len(part) > 1 or i == 0:
            chosen += _farthest_first(g.subgraph(part), count if i == 0 else 1)
    for n in chosen:
        roles = topo.nodes[n].roles
        if "route_server" not in roles:
            roles.append("route_server")
    return chosen


def director_bits(degree: int) -> int:
    """Bits of the widest director a node with this many links uses (interfaces 0, 2, ..., degree)."""
    highest = max(degree, 1)
    return labels.scheme_for_interfaces(highest).bits_for_number(highest)


def _farthest_first(g: nx.Graph, count: int) -> list[str]:
    """``count`` servers farthest-first, then, while some node is out of a label's reach of every server, the node
    that brings the most of them into reach (greedy set cover; farthest-first would put the next server at the
    edge of the mesh, where it covers few: 11 servers on smallworld:1000,4,0.05 instead of 4)."""
    bits = {n: director_bits(g.degree(n)) for n in g}
    adj = {u: [(v, max(bits[u], bits[v])) for v in g[u]] for u in g}     # either way along the link
    nodes = sorted(g)                                   # max() keeps the first of equals: ties go by name
    chosen = [max(nodes, key=g.degree)]
    distance = _bits_from(adj, chosen[0])
    while len(chosen) < count:
        far = max(nodes, key=lambda n: (distance[n], g.degree(n)))
        chosen.append(far)
        for n, d in _bits_from(adj, far).items():
            distance[n] = min(distance[n], d)
    uncovered = {n for n in nodes if distance[n] > REACH_BITS}
    reach = {u: _bits_from(adj, u, REACH_BITS) for u in uncovered}        # distances are symmetric: who reaches u
    covers = dict.fromkeys(nodes, 0)
    for u in uncovered:
        for n in reach[u]:
            covers[n] += 1
    while uncovered:
        best = max(nodes, key=lambda n: (covers[n], g.degree(n)))
        chosen.append(best)
        for u in uncovered & set(_bits_from(adj, best, REACH_BITS)):
            uncovered.discard(u)
            for n in reach.pop(u):
                covers[n] -= 1
    return chosen


def _bits_from(adj: dict, source, cutoff: float = math.inf) -> dict:
    """Dijkstra over label bits from ``source``: node -> bits, the nodes within ``cutoff``."""
    dist, heap = {source: 0}, [(0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in adj[u]:
            if d + w <= cutoff and d + w < dist.get(v, math.inf):
                dist[v] = d + w
                heapq.heappush(heap, (d + w, v))
    return dist
