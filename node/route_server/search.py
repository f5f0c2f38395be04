"""The route server's path search: bidirectional Dijkstra over a plain weighted adjacency.

``adj`` is ``{node: {neighbour: cost}}`` with both directions of every link (the route server's graph is
symmetric: a link's cost comes from both ends' link values). The search grows from both ends and stops when the
two smallest tentative distances together reach the best meeting found, so on a mesh of thousands of nodes it
settles a few hundred of them instead of everything closer than the target (networkx's single-source Dijkstra
with a target). Ties are broken by node id, so a pair searched from the same end always gets the same path.
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
    seen = ({source: 0.0}, {target: 0.0})          # tentative distances from each end
    pred = ({source: None}, {target: None})
    fringe = ([(0.0, source)], [(0.0, target)])
    best, meet = INF, None
    while fringe[0] and fringe[1]:
        top0, top1 = fringe[0][0][0], fringe[1][0][0]
        if top0 + top1 >= best:
            break
        side = 0 if top0 <= top1 else 1
        mine, theirs, back, heap = seen[side], seen[1 - side], pred[side], fringe[side]
        d, u = heappop(heap)
        if d > mine[u]:
            continue                                # a stale entry: u was settled closer (no done-set needed)
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
