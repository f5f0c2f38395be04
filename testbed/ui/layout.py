"""Where the live view draws each node: positions in [0, 1] x [0, 1] computed once per run with networkx.

A topology whose nodes all carry coordinates (`attrs: {x, y}`, as the meshnet-lab Freifunk data sets do) is drawn
where they say; otherwise by a seeded force-directed (Fruchterman-Reingold) layout started from the spectral one, so
the same run is always drawn the same way and rings and grids come out as rings and grids (networkx with numpy
only: Kamada-Kawai would need scipy). Disconnected parts are laid out one by one and placed side by side, so a
partitioned topology does not pile up in one corner.
"""
from __future__ import annotations

import math

import networkx as nx

SPECTRAL_UP_TO = 400          # above this the spectral start costs more than it helps


def _given(topo) -> dict | None:
    pos = {}
    for name, node in topo.nodes.items():
        x, y = node.attrs.get("x"), node.attrs.get("y")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
            return None
        pos[name] = (float(x), float(y))
    return pos


def _component(g: nx.Graph, seed: int) -> dict:
    if len(g) == 1:
        return {next(iter(g)): (0.0, 0.0)}
    start = nx.spectral_layout(g) if 2 < len(g) <= SPECTRAL_UP_TO else None
    return nx.spring_layout(g, pos=start, seed=seed, iterations=150 if len(g) <= SPECTRAL_UP_TO else 50)


def _normalise(pos: dict, margin: float = 0.04, max_stretch: float = 2.5) -> dict[str, tuple[float, float]]:
    """Fit into the unit square (y downwards). Each axis is scaled on its own, so a long, flat mesh fills the wide
    map, but one axis by at most max_stretch times the other, so a line stays a line and a ring stays round-ish."""
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    room = 1 - 2 * margin
    sx = room / ((max(xs) - min(xs)) or 1e-9)
    sy = room / ((max(ys) - min(ys)) or 1e-9)
    sx, sy = min(sx, sy * max_stretch), min(sy, sx * max_stretch)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return {n: (round(0.5 + (x - cx) * sx, 4), round(0.5 - (y - cy) * sy, 4)) for n, (x, y) in pos.items()}


def layout(topo, seed: int = 1) -> dict[str, tuple[float, float]]:
    """{node: (x, y)} in [0, 1], y downwards."""
    given = _given(topo)
    if given:
        return _normalise(given)
    g = topo.graph()
    if not len(g):
        return {}
    parts = sorted(nx.connected_components(g), key=len, reverse=True)
    pos, offset = {}, 0.0
    for part in parts:
        sub = _component(g.subgraph(part), seed)
        xs = [p[0] for p in sub.values()]
        width = max(xs) - min(xs)
        for n, (x, y) in sub.items():
            pos[n] = (x - min(xs) + offset, y)
        offset += width + 0.6 * max(width, 1.0)
    return _normalise(pos)
