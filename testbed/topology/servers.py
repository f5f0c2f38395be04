"""Where route servers go when a topology names none: the generators' ``route_servers=N`` and big meshes.

A real PKT network always has route servers; pktlab's static all-pairs paths are a shortcut for small meshes (every
node's config lists a path to every other: N² entries, about 1 M for a 1000-node mesh, and seconds of label
splicing). Meshes bigger than STATIC_PATHS_UP_TO nodes without a route server therefore get
``default_count(nodes)`` of them when they come up (testbed/mesh.py), and any generator takes ``route_servers=N``.

Placement is farthest-first (the greedy k-centre heuristic) inside the largest connected component: the first
server is its best-connected node, each next one the node farthest in hops from the servers already placed (ties:
more links, then name), so servers spread over the mesh and every node of the component has one a few hops away.
Every other component of two or more nodes (an imported mesh with ``--allow-disconnected``) gets one server of its
own, placed the same way, so each island routes inside itself.
"""
from __future__ import annotations

import math

import networkx as nx

from testbed.topology.model import Topology
from testbed.topology.units import TopologyError

STATIC_PATHS_UP_TO = 300   # nodes; above this a mesh without route servers gets default_count of them
NODES_PER_SERVER = 500


def default_count(nodes: int) -> int:
    return max(1, math.ceil(nodes / NODES_PER_SERVER))


def place(topo: Topology, count: int) -> list[str]:
    """Give ``count`` nodes of the largest component, and one of every other component of two or more nodes, the
    route_server role (farthest-first); returns them."""
    g = topo.graph()
    if count < 1 or not g.number_of_nodes():
        return []
    parts = sorted(nx.connected_components(g), key=lambda c: (-len(c), min(c)))
    if count > len(parts[0]):
        raise TopologyError(f"{topo.name}: route_servers={count} but the largest component has only "
                            f"{len(parts[0])} nodes")
    chosen = _farthest_first(g.subgraph(parts[0]), count)
    for part in parts[1:]:
        if len(part) > 1:
            chosen += _farthest_first(g.subgraph(part), 1)
    for n in chosen:
        roles = topo.nodes[n].roles
        if "route_server" not in roles:
            roles.append("route_server")
    return chosen


def _farthest_first(g: nx.Graph, count: int) -> list[str]:
    nodes = sorted(g)                              # max() keeps the first of equals: ties go by name
    chosen = [max(nodes, key=g.degree)]
    distance = nx.single_source_shortest_path_length(g, chosen[0])
    while len(chosen) < count:
        far = max(nodes, key=lambda n: (distance[n], g.degree(n)))
        chosen.append(far)
        for n, d in nx.single_source_shortest_path_length(g, far).items():
            distance[n] = min(distance[n], d)
    return chosen
