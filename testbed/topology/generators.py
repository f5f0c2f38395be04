"""Topology generators: ``"family:args[,key=value...]"`` strings -> Topology.

Examples: ``line:5``, ``ring:8``, ``grid:5x5``, ``grid:3x3,rate=10mbit,delay=5ms``, ``random:20,0.1,seed=3``,
``multi-isp:3,4``. Keys after the positional arguments: the link parameters of the native format (rate, delay,
jitter, loss, duplicate, reorder, corrupt; they become the topology's defaults), ``seed``, ``name`` and
``route_servers=N`` (N nodes get the route_server role, placed by servers.place; without it a mesh of more than
servers.STATIC_PATHS_UP_TO nodes gets route servers when it comes up).

Every generator is deterministic: the random families draw from the seed (from the string, else the ``seed``
argument, else 1) and always return a connected graph (components are joined deterministically).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

import networkx as nx

from testbed.topology import servers
from testbed.topology.model import PARAMS, Isp, Link, LinkParams, Node, Topology
from testbed.topology.units import TopologyError

MAX_NODES = 5000
MAX_LINKS = 100_000
DEFAULT_SEED = 1


@dataclass
class Family:
    form: str  # what to type, e.g. "grid:RxC"
    help: str
    build: Callable  # (args: list[str], rng seed: int, where: str) -> (Topology without params)
    random: bool = False


def looks_like_generator(spec: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9_-]*:", spec)) and "/" not in spec.split(":", 1)[0]


def parse(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """'grid:3x3,delay=5ms' -> ('grid', ['3x3'], {'delay': '5ms'})."""
    if not isinstance(spec, str) or ":" not in spec:
        raise TopologyError(f"{spec!r}: not a generator string (expected family:args, e.g. ring:8; known: "
                            f"{', '.join(FORMS)})")
    family, _, rest = spec.partition(":")
    family = family.strip().lower()
    if family not in FAMILIES:
        raise TopologyError(f"{spec}: unknown generator {family!r}; known generators: {', '.join(FORMS)}")
    positional, keywords = [], {}
    for part in [p.strip() for p in rest.split(",")] if rest.strip() else []:
        if "=" in part:
            key, _, value = part.partition("=")
            key = key.strip().lower()
            if key in keywords:
                raise TopologyError(f"{spec}: {key} given twice")
            keywords[key] = value.strip()
        elif keywords:
            raise TopologyError(f"{spec}: positional argument {part!r} after key=value options; "
                                f"expected {FAMILIES[family].form}")
        else:
            positional.append(part)
    for key in keywords:
        if key not in KEYWORDS:
            raise TopologyError(f"{spec}: unknown option {key!r} (known: {', '.join(KEYWORDS)})")
    return family, positional, keywords


KEYWORDS = (*PARAMS, "seed", "name", "route_servers")


def generate(spec: str, seed: int | None = None) -> Topology:
    """Build the topology a generator string describes. A seed in the string wins over ``seed``."""
    family, positional, keywords = parse(spec)
    fam = FAMILIES[family]
    if "seed" in keywords:
        seed = _int(keywords["seed"], "seed", spec, fam, minimum=0)
    used_seed = seed if seed is not None else (DEFAULT_SEED if fam.random else None)
    defaults = LinkParams()
    for key, (attr, parse_value, _) in PARAMS.items():
        if key in keywords:
            try:
                setattr(defaults, attr, parse_value(keywords[key]))
            except ValueError as e:
                raise TopologyError(f"{spec}: {key}: {e}") from None
    topo = fam.build(positional, used_seed if used_seed is not None else DEFAULT_SEED, spec)
    topo.name = keywords.get("name") or "-".join([family, *positional])
    topo.source = spec
    topo.seed = used_seed
    topo.defaults = defaults
    for link in topo.links:
        link.ab = LinkParams(**vars(defaults))
        link.ba = LinkParams(**vars(defaults))
    if "route_servers" in keywords:
        servers.place(topo, _int(keywords["route_servers"], "route_servers", spec, fam, maximum=len(topo.nodes)))
    return topo


# --- argument helpers --------------------------------------------------------------------------------------

def _fail(spec: str, fam: Family, problem: str):
    raise TopologyError(f"{spec}: {problem}; expected {fam.form} ({fam.help})")


def _int(text: str, what: str, spec: str, fam: Family, minimum: int = 1, maximum: int = MAX_NODES) -> int:
    if not re.fullmatch(r"\s*[0-9]{1,9}\s*", text or ""):
        _fail(spec, fam, f"{what} must be a whole number, got {text!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        _fail(spec, fam, f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(text: str, what: str, spec: str, fam: Family, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        _fail(spec, fam, f"{what} must be a number between {low} and {high}, got {text!r}")
    return value


def _args(positional: list[str], count: int, spec: str, fam: Family) -> list[str]:
    # "RxC" forms may also be written "R,C"
    if len(positional) == 1 and count == 2 and "x" in positional[0].lower():
        positional = re.split(r"[xX]", positional[0], maxsplit=1)
    if len(positional) != count:
        _fail(spec, fam, f"{len(positional)} argument(s) given, {count} needed")
    return positional


def _topology(names: list[str], edges, node_attrs: dict | None = None) -> Topology:
    topo = Topology()
    for name in names:
        topo.nodes[name] = Node(name, ["router"], None, dict((node_attrs or {}).get(name, {})))
    topo.links = [Link(a, b) for a, b in edges]
    return topo


def _numbered(g: nx.Graph, pos: dict | None = None) -> Topology:
    """Integer-labelled graph 0..n-1 -> nodes n1..nN, links in sorted order."""
    names = {i: f"n{i + 1}" for i in sorted(g.nodes)}
    edges = sorted(tuple(sorted(e)) for e in g.edges)
    attrs = {names[i]: {"x": round(float(pos[i][0]), 4), "y": round(float(pos[i][1]), 4)} for i in pos} if pos else None
    return _topology([names[i] for i in sorted(g.nodes)], [(names[a], names[b]) for a, b in edges], attrs)


def _check_size(nodes: int, links: int, spec: str, fam: Family):
    if nodes > MAX_NODES or links > MAX_LINKS:
        _fail(spec, fam, f"too large ({nodes} nodes, {links} links; at most {MAX_NODES} nodes and "
                         f"{MAX_LINKS} links)")


def _connect(g: nx.Graph, rng: random.Random, pos: dict | None = None):
    """Join the components of g in a fixed order: each smaller component gets one link to the component
    holding node 0 (to the nearest node when positions are known, else to a seeded random one)."""
    parts = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: c[0])
    main = list(parts[0])
    for part in parts[1:]:
        if pos:
            a, b = min(((x, y) for x in part for y in main),
                       key=lambda e: ((pos[e[0]][0] - pos[e[1]][0]) ** 2 + (pos[e[0]][1] - pos[e[1]][1]) ** 2, e))
        else:
            a, b = part[0], main[rng.randrange(len(main))]
        g.add_edge(a, b)
        main.extend(part)


# --- families ----------------------------------------------------------------------------------------------

def _line(args, seed, spec):
    n = _int(_args(args, 1, spec, F["line"])[0], "N", spec, F["line"])
    names = [f"n{i}" for i in range(1, n + 1)]
    return _topology(names, zip(names, names[1:]))


def _ring(args, seed, spec):
    n = _int(_args(args, 1, spec, F["ring"])[0], "N", spec, F["ring"], minimum=3)
    names = [f"n{i}" for i in range(1, n + 1)]
    return _topology(names, [*zip(names, names[1:]), (names[-1], names[0])])


def _star(args, seed, spec):
    n = _int(_args(args, 1, spec, F["star"])[0], "N", spec, F["star"], minimum=2)
    names = [f"n{i}" for i in range(1, n + 1)]
    return _topology(names, [("n1", leaf) for leaf in names[1:]])


def _grid_common(args, spec, fam, diagonal: bool):
    r, c = (_int(a, what, spec, fam) for a, what in zip(_args(args, 2, spec, fam), ("R", "C")))
    _check_size(r * c, 4 * r * c, spec, fam)
    name = {(i, j): f"r{i}c{j}" for i in range(1, r + 1) for j in range(1, c + 1)}
    steps = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if diagonal else [])
    edges = [(name[i, j], name[i + di, j + dj]) for (i, j) in name for di, dj in steps if (i + di, j + dj) in name]
    attrs = {v: {"x": j - 1, "y": r - i} for (i, j), v in name.items()}
    return _topology(list(name.values()), edges, attrs)


def _grid(args, seed, spec):
    return _grid_common(args, spec, F["grid"], diagonal=False)


def _grid8(args, seed, spec):
    return _grid_common(args, spec, F["grid8"], diagonal=True)


def _tree(args, seed, spec):
    fam = F["tree"]
    d_text, f_text = _args(args, 2, spec, fam)
    depth = _int(d_text, "DEPTH", spec, fam, minimum=0, maximum=20)
    fanout = _int(f_text, "FANOUT", spec, fam, minimum=1, maximum=MAX_NODES)
    size = sum(fanout ** k for k in range(depth + 1)) if fanout > 1 else depth + 1
    _check_size(size, size - 1, spec, fam)
    return _numbered(nx.balanced_tree(fanout, depth))  # breadth-first numbering: n1 is the root


def _full(args, seed, spec):
    fam = F["full"]
    n = _int(_args(args, 1, spec, fam)[0], "N", spec, fam)
    _check_size(n, n * (n - 1) // 2, spec, fam)
    return _numbered(nx.complete_graph(n))


def _random(args, seed, spec):
    fam = F["random"]
    n_text, p_text = _args(args, 2, spec, fam)
    n = _int(n_text, "N", spec, fam)
    p = _float(p_text, "P", spec, fam, 0.0, 1.0)
    _check_size(n, int(p * n * (n - 1) / 2), spec, fam)
    if 1.0 - p == 1.0:   # below float resolution networkx divides by log(1 - p) = 0: no edge is drawn anyway
        p = 0.0
    g = nx.fast_gnp_random_graph(n, p, seed=seed)  # O(n + m), same distribution as G(n,p)
    _connect(g, random.Random(seed))
    return _numbered(g)


def _geometric(args, seed, spec):
    fam = F["geometric"]
    n_text, r_text = _args(args, 2, spec, fam)
    n = _int(n_text, "N", spec, fam, maximum=2000)
    radius = _float(r_text, "R", spec, fam, 0.0, 1.5)
    _check_size(n, int(min(1.0, 3.2 * radius * radius) * n * (n - 1) / 2), spec, fam)
    g = nx.random_geometric_graph(n, radius, seed=seed)
    pos = nx.get_node_attributes(g, "pos")
    _connect(g, random.Random(seed), pos)
    return _numbered(g, pos)


def _smallworld(args, seed, spec):
    fam = F["smallworld"]
    n_text, k_text, p_text = _args(args, 3, spec, fam)
    n = _int(n_text, "N", spec, fam, minimum=3)
    k = _int(k_text, "K", spec, fam, minimum=2, maximum=n - 1)
    p = _float(p_text, "P", spec, fam, 0.0, 1.0)
    _check_size(n, n * k // 2, spec, fam)
    g = nx.watts_strogatz_graph(n, k, p, seed=seed)
    _connect(g, random.Random(seed))
    return _numbered(g)


def _scalefree(args, seed, spec):
    fam = F["scalefree"]
    n_text, m_text = _args(args, 2, spec, fam)
    n = _int(n_text, "N", spec, fam, minimum=2)
    m = _int(m_text, "M", spec, fam, minimum=1, maximum=n - 1)
    _check_size(n, n * m, spec, fam)
    return _numbered(nx.barabasi_albert_graph(n, m, seed=seed))


def _multi_isp(args, seed, spec):
    """I Cloud ISPs of N nodes each. ISP k's provider is ISP k//2 (isp1 is the top-tier transit), ISPs with
    the same provider peer with the next one. Inside an ISP the nodes form a ring (a line for N=2); the first
    node is the ISP's route server; each relation gets one link between edge nodes of the two ISPs."""
    fam = F["multi-isp"]
    i_text, n_text = _args(args, 2, spec, fam)
    count = _int(i_text, "ISPS", spec, fam, minimum=2, maximum=50)
    size = _int(n_text, "NODES", spec, fam, minimum=1, maximum=200)
    topo = Topology()
    members = {}
    for k in range(1, count + 1):
        isp = f"isp{k}"
        topo.isps[isp] = Isp(isp)
        names = [f"i{k}n{j}" for j in range(1, size + 1)]
        members[isp] = names
        for j, name in enumerate(names):
            roles = ["router", "route_server"] if j == 0 else ["router"]
            topo.nodes[name] = Node(name, roles, isp, {})
        edges = list(zip(names, names[1:])) + ([(names[-1], names[0])] if size >= 3 else [])
        topo.links += [Link(a, b, attrs={"isp": isp}) for a, b in edges]
    pairs = []
    for k in range(2, count + 1):
        provider, customer = f"isp{k // 2}", f"isp{k}"
        topo.isps[provider].relations[customer] = "customer"
        topo.isps[customer].relations[provider] = "provider"
        pairs.append((customer, provider, "provider"))
        sibling = k + 1
        if k % 2 == 0 and sibling <= count:
            topo.isps[customer].relations[f"isp{sibling}"] = "peer"
            topo.isps[f"isp{sibling}"].relations[customer] = "peer"
            pairs.append((customer, f"isp{sibling}", "peer"))
    used = {isp: 0 for isp in members}

    def edge_node(isp):  # rotate over the non-route-server nodes so links spread out
        names = members[isp]
        pick = names[1 + used[isp] % (len(names) - 1)] if len(names) > 1 else names[0]
        used[isp] += 1
        topo.nodes[pick].attrs["edge"] = True
        return pick

    for x, y, rel in pairs:
        # relation: what y is to x ("provider": y is x's provider)
        topo.links.append(Link(edge_node(x), edge_node(y), attrs={"relation": rel}))
    return topo


FAMILIES: dict[str, Family] = {
    "line": Family("line:N", "N nodes in a chain", _line),
    "ring": Family("ring:N", "N >= 3 nodes in a cycle", _ring),
    "star": Family("star:N", "hub n1 and N-1 leaves", _star),
    "grid": Family("grid:RxC", "R rows x C columns, 4 neighbours, nodes r1c1..", _grid),
    "grid8": Family("grid8:RxC", "R x C grid with diagonals, 8 neighbours", _grid8),
    "tree": Family("tree:DEPTHxFANOUT", "balanced tree, root n1", _tree),
    "full": Family("full:N", "complete graph on N nodes", _full),
    "random": Family("random:N,P", "connected G(N,P) random graph", _random, random=True),
    "geometric": Family("geometric:N,R", "connected random geometric graph in the unit square, radius R",
                        _geometric, random=True),
    "smallworld": Family("smallworld:N,K,P", "connected Watts-Strogatz: ring of N, K neighbours, rewire P",
                         _smallworld, random=True),
    "scalefree": Family("scalefree:N,M", "Barabasi-Albert: N nodes, M links per new node", _scalefree,
                        random=True),
    "multi-isp": Family("multi-isp:ISPS,NODES", "ISPS Cloud ISPs of NODES nodes with route servers and "
                        "provider/customer/peer relations", _multi_isp),
}
F = FAMILIES
FORMS = [fam.form for fam in FAMILIES.values()]


def two_isp_grid(rows: int, cols: int) -> Topology:
    """For Python callers (the route-server grid test, bench.reroute): a rows x cols grid, nodes n{row}x{col};
    the left half of the columns is isp1 (route servers at two corners), the rest isp2 (one route server); the
    two ISPs peer."""
    topo = Topology(name=f"grid{rows}x{cols}-2isp")
    topo.isps["isp1"] = Isp("isp1", relations={"isp2": "peer"})
    topo.isps["isp2"] = Isp("isp2", relations={"isp1": "peer"})
    split = (cols + 1) // 2
    servers = {(0, split - 1), (rows - 1, 0), (0, cols - 1)}
    for r in range(rows):
        for c in range(cols):
            roles = ["router", "route_server"] if (r, c) in servers else ["router"]
            topo.nodes[f"n{r}x{c}"] = Node(f"n{r}x{c}", roles, "isp1" if c < split else "isp2", {})
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                topo.links.append(Link(f"n{r}x{c}", f"n{r}x{c + 1}"))
            if r + 1 < rows:
                topo.links.append(Link(f"n{r}x{c}", f"n{r + 1}x{c}"))
    return topo
