"""The route server's path search: bidirectional Dijkstra over a plain weighted adjacency.

``adj`` is ``{node: {neighbour: cost}}`` with both directions of every link (the route server's graph is
symmetric: a link's cost comes from both ends' link values). The search grows from both ends and stops when the
two smallest tentative distances together reach the best meeting found, so on a mesh of thousands of nodes it
settles a few hundred of them instead of everything closer than the target (networkx's single-source Dijkstra
with a target). It grows the side with the smaller fringe (fewer nodes to touch near a hub) and skips stale heap
entries by distance instead of keeping settled sets. Ties are broken by node id, so a pair searched from the same
end always gets the same path.
"""
from __future__ import annotations

from heapq import heappop, heappush

INF = float("inf")


def cheapest(adj: dict, source, target, avoid=frozenset()) -> tuple[float, list] | None:
    """(cost, [source, ..., target]) of a cheapest path, or None; ``avoid``: (a, b) steps not to take."""
    if source not in adj or target not in adj:
        return None
    if source == target:
        return 0.0, [source]
    dist = ({source: 0.0}, {target: 0.0})
    pred = ({source: None}, {target: None})
    fringe = ([(0.0, source)], [(0.0, target)])
    best, meet = INF, None
    f0, f1 = fringe
    while f0 and f1:
        if f0[0][0] + f1[0][0] >= best:
            break
        side = 0 if len(f0) <= len(f1) else 1
        heap = fringe[side]
        d, u = heappop(heap)
        mine = dist[side]
        if d > mine[u]:
            continue                                  # a stale entry: u was settled cheaper
        theirs, back = dist[1 - side], pred[side]
        for v, w in adj[u].items():
            if avoid and ((u, v) if side == 0 else (v, u)) in avoid:
                continue
            nd = d + w
            if nd < mine.get(v, INF):
                mine[v] = nd
                back[v] = u
                heappush(heap, (nd, v))
                other = theirs.get(v)
                if other is not None and nd + other < best:
                    best, meet = nd + other, v
    if meet is None:
        return None
    path, node = [], meet
    while node is not None:
        path.append(node)
        node = pred[0][node]
    path.reverse()
    node = pred[1][meet]
    while node is not None:
        path.append(node)
        node = pred[1][node]
    return best, path
