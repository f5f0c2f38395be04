"""The route server's searchable graph: its links as a sparse matrix, searched by scipy's Dijkstra (in C).

:class:`SearchGraph` holds one slot per direction of every link it has seen: numpy arrays row, col, weight (the
source of truth) and ``{(u, v): slot}``. The CSR matrix the search runs on is built from them, sorted by row then
column (rows in the order nodes were first seen: the matrix, and so the choice between equally cheap paths, does
not depend on the order links were patched in), with each slot's position in it: a cost that moves, a link that goes
(weight inf) or comes back is patched in the matrix in place. Only a link or node never seen before changes the
matrix's structure; it is rebuilt (vectorised) at the next search. When more than half the slots are gone links,
the next rebuild drops them.

A search is single-source and settles the whole component (scipy has no early exit at a target); in C that still
costs less than the bidirectional search in Python settling a few hundred nodes did (Freifunk Aachen, 1977 nodes:
about 0.2 ms against 0.35). numpy and scipy are imported here only: the route server imports this module at its
first search, so agents that never serve pay neither's memory (together about 35 MB of RSS).
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

INF = float("inf")
# Relax only edges that keep a path below this: inf (a gone link) never is. With the default limit (inf) scipy
# relaxes inf edges too (``<= limit``) and reports the node at distance inf; this way it does not touch them.
LIMIT = float(np.finfo(np.float64).max)


class SearchGraph:
    """A weighted graph of node keys, both directions of a link with the same cost; see the module docstring."""

    def __init__(self):
        self._index: dict = {}        # node key -> row (kept after the node goes, until a compaction)
        self._keys: list = []         # row -> node key
        self._live: set = set()       # node keys present
        self._slot: dict = {}         # (u, v) -> slot, for both directions of every link seen
        self._row = np.empty(16, np.int32)
        self._col = np.empty(16, np.int32)
        self._weight = np.empty(16, np.float64)
        self._slots = 0               # slots in use (the arrays grow by doubling)
        self._gone = 0                # slots whose weight is inf
        self._csr = None              # the matrix, None when its structure is out of date
        self._pos = None              # slot -> position in self._csr.data

    @classmethod
    def from_adjacency(cls, adj: dict) -> SearchGraph:
        """From ``{node: {neighbour: cost}}`` (symmetric, as the route server keeps it)."""
        graph = cls()
        done = set()                                 # set_link sets both directions: once per link
        for u, nbrs in adj.items():
            graph.add_node(u)
            for v, cost in nbrs.items():
                if (v, u) not in done:
                    graph.set_link(u, v, cost)
                    done.add((u, v))
        return graph

    def add_node(self, key) -> None:
        """Make ``key`` a node (without links); nothing if it is one."""
        if key in self._live:
            return
        self._live.add(key)
        if key not in self._index:
            self._index[key] = len(self._keys)
            self._keys.append(key)
            self._csr = None          # the matrix's shape grows

    def remove_node(self, key) -> None:
        """``key`` and its links go."""
        if key not in self._live:
            return
        self._live.discard(key)
        i = self._index[key]
        n = self._slots
        hit = ((self._row[:n] == i) | (self._col[:n] == i)) & np.isfinite(self._weight[:n])
        slots = np.flatnonzero(hit)
        self._gone += len(slots)
        self._weight[slots] = INF
        if self._csr is not None:
            self._csr.data[self._pos[slots]] = INF

    def set_link(self, a, b, cost: float) -> None:
        """The link a-b (both directions) costs ``cost``; adds it and its ends if new."""
        # scipy treats an explicit 0 as an edge, but sparse conversions may drop zeros: a link must never vanish
        # silently. The route server's costs are 1 / max(value, 1e-20) with finite values, never 0.
        if not 0 < cost < INF:
            raise ValueError(f"link cost must be positive and finite, got {cost!r}")
        self.add_node(a)
        self.add_node(b)
        self._set(a, b, cost)
        self._set(b, a, cost)

    def remove_link(self, a, b) -> None:
        """The link a-b (both directions) goes; nothing if there is none."""
        self._set(a, b, INF)
        self._set(b, a, INF)

    def search(self, source, target, avoid=frozenset()) -> tuple[float, list] | None:
        """(cost, [source, ..., target]) of a cheapest path, or None; ``avoid``: (a, b) steps not to take."""
        if source not in self._live or target not in self._live:
            return None
        if source == target:
            return 0.0, [source]
        csr = self._matrix()
        if avoid:
            data = csr.data.copy()
            steps = [self._slot[step] for step in avoid if step in self._slot]
            data[self._pos[steps]] = INF
            # the same structure (indptr, indices shared, not copied), other weights
            csr = csr_array((data, csr.indices, csr.indptr), shape=csr.shape, copy=False)
        s, t = self._index[source], self._index[target]
        dist, pred = dijkstra(csr, directed=True, indices=s, return_predecessors=True, limit=LIMIT)
        cost = float(dist[t])
        if cost == INF:
            return None
        path = [t]
        while path[-1] != s:
            path.append(int(pred[path[-1]]))
        return cost, [self._keys[i] for i in reversed(path)]

    # -- slots and the matrix -------------------------------------------------------------------------------
    def _set(self, u, v, weight: float) -> None:
        """Slot (u, v)'s weight (inf: gone). A new slot only for a live link: a gone one that was never seen
        needs none."""
        slot = self._slot.get((u, v))
        if slot is None:
            if weight == INF:
                return
            slot = self._append(self._index[u], self._index[v])
            self._slot[(u, v)] = slot
        else:
            self._gone += int(weight == INF) - int(self._weight[slot] == INF)
        self._weight[slot] = weight
        if self._csr is not None:
            self._csr.data[self._pos[slot]] = weight

    def _append(self, i: int, j: int) -> int:
        if self._slots == len(self._weight):
            size = 2 * len(self._weight)
            self._row = np.resize(self._row, size)
            self._col = np.resize(self._col, size)
            self._weight = np.resize(self._weight, size)
        slot = self._slots
        self._row[slot], self._col[slot] = i, j
        self._slots += 1
        self._csr = None              # a new entry: the structure changes
        return slot

    def _matrix(self):
        """The CSR matrix, rebuilt if its structure is out of date (compacted first if most slots are gone)."""
        if self._csr is None:
            if self._gone * 2 > self._slots:
                self._compact()
            n, size = self._slots, len(self._keys)
            row, col = self._row[:n], self._col[:n]
            order = np.lexsort((col, row))                   # by row, then column
            indptr = np.zeros(size + 1, np.int32)
            np.cumsum(np.bincount(row, minlength=size), out=indptr[1:])
            self._csr = csr_array((self._weight[order], col[order], indptr), shape=(size, size))
            self._pos = np.empty(n, np.intp)
            self._pos[order] = np.arange(n)
        return self._csr

    def _compact(self) -> None:
        """Drop the gone links' slots and the rows of nodes that went (renumbering both)."""
        n = self._slots
        keep = np.flatnonzero(np.isfinite(self._weight[:n]))
        keys = [k for k in self._keys if k in self._live]
        index = {k: i for i, k in enumerate(keys)}
        renumber = np.array([index.get(k, -1) for k in self._keys], np.int32)
        row, col = renumber[self._row[keep]], renumber[self._col[keep]]
        self._slot = {(keys[i], keys[j]): s for s, (i, j) in enumerate(zip(row.tolist(), col.tolist()))}
        self._keys, self._index = keys, index
        size = max(16, len(keep))
        self._row, self._col = np.resize(row, size), np.resize(col, size)
        self._weight = np.resize(self._weight[keep], size)
        self._slots, self._gone = len(keep), 0
