"""Topology import and export: meshnet-lab JSON, GraphML, GML (via networkx), Graphviz dot, PNG pictures.

Imported node ids that are not valid pktlab node names are mapped to short valid names (the original name or
id is kept in ``attrs["label"]`` / ``attrs["id"]``). Imported data is real-world data: it may be disconnected,
so imported topologies set ``allow_disconnected`` (a warning, not an error).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import networkx as nx

from testbed.topology.model import IFNAME_MAX, NAME_RE, PARAMS, Link, LinkParams, Node, Topology, params_to_dict
from testbed.topology.reader import from_dict
from testbed.topology.units import TopologyError

# --- naming imported nodes ---------------------------------------------------------------------------------


def _fits(name: str, degree: int) -> bool:
    return bool(NAME_RE.match(name)) and len(f"{name}-eth{max(degree - 1, 0)}") <= IFNAME_MAX


def assign_names(items: list[tuple[object, object]], degree: dict) -> dict:
    """items: (original id, original label or None) in order -> {id: valid node name}.

    Labels are used when every labelled node's label is a valid, unique name that fits the interface-name
    limit (hand-made files: A, B, C...); unlabelled nodes get n<id>. Otherwise every node is named from its id
    (n<id>), and when ids do not make short valid names either, nodes are numbered n1..nN in file order."""
    labels = [label for _, label in items if label is not None]
    use_labels = bool(labels) and len(set(labels)) == len(labels) and all(
        isinstance(label, str) and _fits(label, degree.get(key, 0)) for key, label in items if label is not None)
    names: dict = {}
    taken: set = set()
    if use_labels:
        for key, label in items:
            if label is not None:
                names[key] = label
                taken.add(label)
    rest = [key for key, _ in items if key not in names]
    by_id = {key: "n" + re.sub(r"[^A-Za-z0-9_]", "_", str(key)) for key in rest}
    if len(set(by_id.values())) == len(by_id) and not taken & set(by_id.values()) and all(
            _fits(by_id[key], degree.get(key, 0)) for key in rest):
        names.update(by_id)
        return names
    counter = 0
    for key in rest:
        counter += 1
        while f"n{counter}" in taken:
            counter += 1
        names[key] = f"n{counter}"
    return names


# --- meshnet-lab JSON --------------------------------------------------------------------------------------

def is_meshnet_lab(data) -> bool:
    """meshnet-lab files have links with source/target ids (and optional nodes with id/name/x/y)."""
    links = data.get("links") if isinstance(data, dict) else None
    return isinstance(links, list) and any(isinstance(link, dict) and "source" in link for link in links)


def _hashable_id(value, where: str, source: str):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TopologyError(f"{source}: {where}: id must be a string or integer, got {value!r}")
    return value


def from_meshnet_lab(data: dict, source: str) -> Topology:
    """Convert a meshnet-lab topology. Links to ids missing from "nodes" create those nodes; repeated nodes,
    repeated links and self-loops are dropped with a warning (meshnet-lab itself tolerates them)."""
    warnings = []
    node_list = data.get("nodes") or []
    if not isinstance(node_list, list):
        raise TopologyError(f"{source}: nodes: expected a list")
    for key in data:
        if key not in ("nodes", "links", "directed", "multigraph", "graph"):
            warnings.append(f"{source}: ignored top-level field {key!r}")
    raw_nodes: dict = {}
    repeated = 0
    for i, entry in enumerate(node_list):
        if not isinstance(entry, dict) or "id" not in entry:
            raise TopologyError(f"{source}: node #{i + 1}: expected a mapping with an 'id'")
        key = _hashable_id(entry["id"], f"node #{i + 1}", source)
        if key in raw_nodes:
            repeated += 1
            continue
        raw_nodes[key] = entry
    if repeated:
        warnings.append(f"{source}: {repeated} node entries repeat an earlier id (kept the first)")
    raw_links = []
    seen = set()
    dropped_dup = dropped_self = 0
    for i, entry in enumerate(data["links"]):
        if not isinstance(entry, dict) or "source" not in entry or "target" not in entry:
            raise TopologyError(f"{source}: link #{i + 1}: expected a mapping with 'source' and 'target'")
        a = _hashable_id(entry["source"], f"link #{i + 1}: source", source)
        b = _hashable_id(entry["target"], f"link #{i + 1}: target", source)
        if a == b:
            dropped_self += 1
            continue
        pair = frozenset((a, b))
        if pair in seen:
            dropped_dup += 1
            continue
        seen.add(pair)
        for end in (a, b):
            raw_nodes.setdefault(end, {"id": end})
        raw_links.append((a, b, entry))
    if dropped_dup:
        warnings.append(f"{source}: dropped {dropped_dup} repeated link(s)")
    if dropped_self:
        warnings.append(f"{source}: dropped {dropped_self} self-loop(s)")
    degree: dict = {}
    for a, b, _ in raw_links:
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
    for key, e in raw_nodes.items():
        if e.get("name") is not None and not isinstance(e["name"], str):
            raise TopologyError(f"{source}: node {key!r}: name must be a string, got {type(e['name']).__name__} "
                                f"{str(e['name'])[:40]}")
    names = assign_names([(key, e.get("name")) for key, e in raw_nodes.items()], degree)
    topo = Topology(name=Path(source).stem, source=source, allow_disconnected=True)
    for key, entry in raw_nodes.items():
        attrs = {"id": key}
        if entry.get("name") is not None and entry.get("name") != names[key]:
            attrs["label"] = entry["name"]
        attrs.update({k: v for k, v in entry.items() if k not in ("id", "name") and _plain_value(v)})
        topo.nodes[names[key]] = Node(names[key], ["router"], None, attrs)
    for a, b, entry in raw_links:
        attrs = {k: v for k, v in entry.items() if k not in ("source", "target") and _plain_value(v)}
        topo.links.append(Link(names[a], names[b], LinkParams(), LinkParams(), attrs))
    topo.warnings = warnings
    return topo


def _plain_value(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def to_meshnet_lab(topo: Topology) -> dict:
    """The meshnet-lab form (ids are our node names; x/y and attrs kept where they are scalars)."""
    nodes = []
    for n in topo.nodes.values():
        entry = {"id": n.name, "name": n.attrs.get("label", n.name)}
        for key in ("x", "y"):
            if key in n.attrs:
                entry[key] = n.attrs[key]
        nodes.append(entry)
    links = [{"source": link.a, "target": link.b, **{k: v for k, v in link.attrs.items()
                                                     if k not in ("source", "target")}} for link in topo.links]
    return {"nodes": nodes, "links": links}


def write_meshnet_lab(topo: Topology, path) -> None:
    Path(path).write_text(json.dumps(to_meshnet_lab(topo), indent=2) + "\n", encoding="utf-8")


# --- GraphML and GML ---------------------------------------------------------------------------------------
# Our own files carry the full model as flat scalar attributes (GML keys allow only letters, digits and '_'):
# node roles ("router route_server"), isp, attr_<key>; edge a, b, rate/delay/... (a->b and b->a when equal),
# ab_<param>/ba_<param> when they differ, attr_<key>; graph name, seed, default_<param>, isps (JSON).
# Files from other tools have none of that: their attributes are kept in attrs.

MARK = "pktlab_topology"


def to_networkx(topo: Topology) -> nx.Graph:
    g = nx.Graph()
    g.graph.update({MARK: 1, "name": topo.name})
    if topo.description:
        g.graph["description"] = topo.description
    if topo.seed is not None:
        g.graph["seed"] = topo.seed
    if topo.allow_disconnected:
        g.graph["allow_disconnected"] = 1
    for key, value in params_to_dict(topo.defaults).items():
        g.graph[f"default_{key}"] = _scalar(value)
    if topo.isps:
        g.graph["isps"] = json.dumps({i.name: {"relations": i.relations, "attrs": i.attrs}
                                      for i in topo.isps.values()})
    if topo.attrs:
        g.graph["attrs"] = json.dumps(topo.attrs)
    if topo.chain:
        g.graph["chain"] = json.dumps(topo.chain)
    if topo.chains:
        g.graph["chains"] = json.dumps(topo.chains)
    for n in topo.nodes.values():
        data = {"roles": " ".join(n.roles)}
        if n.isp is not None:
            data["isp"] = n.isp
        data.update({f"attr_{k}": _scalar(v) for k, v in n.attrs.items()})
        g.add_node(n.name, **data)
    for i, link in enumerate(topo.links):
        data = {"a": link.a, "b": link.b, "index": i}
        ab = params_to_dict(link.ab, topo.defaults)
        for key, (attr, _, fmt) in PARAMS.items():
            if getattr(link.ab, attr) == getattr(link.ba, attr):
                if key in ab:
                    data[key] = _scalar(ab[key])
            else:
                data[f"ab_{key}"] = _scalar(fmt(getattr(link.ab, attr)))
                data[f"ba_{key}"] = _scalar(fmt(getattr(link.ba, attr)))
        data.update({f"attr_{k}": _scalar(v) for k, v in link.attrs.items()})
        g.add_edge(link.a, link.b, **data)
    return g


def _scalar(value):
    """GraphML/GML hold only str/int/float: None -> 'unlimited' (only rates are None), the rest as JSON."""
    if value is None:
        return "unlimited"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return "json:" + json.dumps(value)


def _unscalar(value):
    if isinstance(value, str) and value.startswith("json:"):
        try:
            return json.loads(value[5:])
        except ValueError:
            return value
    return value


def from_networkx(g: nx.Graph, source: str) -> Topology:
    if g.graph.get(MARK):
        return _from_own_networkx(g, source)
    return _from_foreign_networkx(g, source)


def _from_own_networkx(g: nx.Graph, source: str) -> Topology:
    d: dict = {"name": str(g.graph.get("name", Path(source).stem))}
    for key in ("description", "seed"):
        if key in g.graph:
            d[key] = g.graph[key]
    if g.graph.get("allow_disconnected"):
        d["allow_disconnected"] = True
    d["defaults"] = {key: g.graph[f"default_{key}"] for key in PARAMS if f"default_{key}" in g.graph}
    for key in ("isps", "attrs", "chain", "chains"):
        if key in g.graph:
            try:
                d[key] = json.loads(g.graph[key])
            except (TypeError, ValueError):   # TypeError: a number or list where a JSON text belongs
                raise TopologyError(f"{source}: graph attribute {key}: expected a JSON text, got "
                                    f"{str(g.graph[key])[:40]}") from None
    d["nodes"] = {}
    for name, data in g.nodes(data=True):
        entry: dict = {"roles": str(data.get("roles", "router")).split()}
        if "isp" in data:
            entry["isp"] = data["isp"]
        attrs = {k[5:]: _unscalar(v) for k, v in data.items() if k.startswith("attr_")}
        if attrs:
            entry["attrs"] = attrs
        d["nodes"][str(name)] = entry
    for u, v, data in g.edges(data=True):
        index = data.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TopologyError(f"{source}: edge {u}--{v}: index must be a whole number, got {str(index)[:40]}")
    edges = sorted(g.edges(data=True), key=lambda e: e[2].get("index", 0))
    d["links"] = []
    for u, v, data in edges:
        a, b = str(data.get("a", u)), str(data.get("b", v))
        entry = {"a": a, "b": b}
        entry.update({k: data[k] for k in PARAMS if k in data})
        for side, prefix in (("a_to_b", "ab_"), ("b_to_a", "ba_")):
            side_params = {k: data[prefix + k] for k in PARAMS if prefix + k in data}
            if side_params:
                entry[side] = side_params
        attrs = {k[5:]: _unscalar(val) for k, val in data.items() if k.startswith("attr_")}
        if attrs:
            entry["attrs"] = attrs
        d["links"].append(entry)
    return from_dict(d, source)


def _from_foreign_networkx(g: nx.Graph, source: str) -> Topology:
    warnings = []
    edges = []
    seen = set()
    for u, v, data in g.edges(data=True):
        pair = frozenset((u, v))
        if u == v or pair in seen:
            warnings.append(f"{source}: dropped self-loop or repeated edge {u}--{v}")
            continue
        seen.add(pair)
        edges.append((u, v, data))
    degree = {n: 0 for n in g.nodes}
    for u, v, _ in edges:
        degree[u] += 1
        degree[v] += 1
    items = [(n, data.get("label", data.get("name"))) for n, data in g.nodes(data=True)]
    items = [(n, label if isinstance(label, str) else None) for n, label in items]
    names = assign_names(items, degree)
    topo = Topology(name=str(g.graph.get("name") or Path(source).stem), source=source, allow_disconnected=True)
    for n, data in g.nodes(data=True):
        attrs = {"id": n if isinstance(n, (int, str)) else str(n)}
        attrs.update({k: _json_safe(val) for k, val in data.items()})
        if attrs.get("label") == names[n]:
            del attrs["label"]
        topo.nodes[names[n]] = Node(names[n], ["router"], None, attrs)
    for u, v, data in edges:
        topo.links.append(Link(names[u], names[v], attrs={k: _json_safe(val) for k, val in data.items()}))
    topo.warnings = warnings[:20]
    return topo


def _json_safe(value):
    return value if _plain_value(value) else str(value)


def _read_with(reader, path: Path, source: str) -> nx.Graph:
    try:
        return reader(path)
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"{source}: cannot read: {e}") from None
    except Exception as e:  # networkx raises assorted errors (NetworkXError, ParseError, KeyError...)
        raise TopologyError(f"{source}: not a readable {path.suffix[1:]} file: {type(e).__name__}: {e}") from None


def read_graphml(path, source: str | None = None) -> Topology:
    path = Path(path)
    return from_networkx(_read_with(nx.read_graphml, path, source or str(path)), source or str(path))


def write_graphml(topo: Topology, path) -> None:
    nx.write_graphml(to_networkx(topo), str(path))


def read_gml(path, source: str | None = None) -> Topology:
    path = Path(path)
    g = _read_with(lambda p: nx.read_gml(p, label="label"), path, source or str(path)) \
        if _gml_has_labels(path) else _read_with(lambda p: nx.read_gml(p, label="id"), path, source or str(path))
    return from_networkx(g, source or str(path))


def _gml_has_labels(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return MARK in text


def write_gml(topo: Topology, path) -> None:
    nx.write_gml(to_networkx(topo), str(path))


# --- Graphviz dot ------------------------------------------------------------------------------------------

def _q(text) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _link_label(link: Link) -> str:
    def one(p: LinkParams) -> str:
        return " ".join(f"{k} {v}" if k not in ("rate", "delay") else str(v)
                        for k, v in params_to_dict(p).items())
    ab, ba = one(link.ab), one(link.ba)
    return ab if ab == ba else f"{ab or '-'} / {ba or '-'}"


def to_dot(topo: Topology) -> str:
    """Graphviz source: one cluster per Cloud ISP, route servers drawn as double circles, link labels with
    rate and delay (a->b / b->a when they differ)."""
    lines = [f"graph {_q(topo.name)} {{", "  node [shape=circle, fontsize=10];", "  edge [fontsize=8];"]

    def node_line(n: Node) -> str:
        shape = "doublecircle" if "route_server" in n.roles else "circle"
        extra = [r for r in n.roles if r != "router"]
        label = n.name + (f"\\n{' '.join(extra)}" if extra else "")  # names and roles hold no quotes
        return f"  {_q(n.name)} [shape={shape}, label=\"{label}\"];"

    for i, isp in enumerate(topo.isps.values()):
        lines.append(f"  subgraph {_q('cluster_' + isp.name)} {{")
        lines.append(f"    label={_q(isp.name)}; color={_q(PALETTE[i % len(PALETTE)])};")
        lines += ["  " + node_line(n) for n in topo.nodes.values() if n.isp == isp.name]
        lines.append("  }")
    lines += [node_line(n) for n in topo.nodes.values() if n.isp not in topo.isps]
    for link in topo.links:
        label = _link_label(link)
        lines.append(f"  {_q(link.a)} -- {_q(link.b)}" + (f" [label={_q(label)}];" if label else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(topo: Topology, path) -> None:
    Path(path).write_text(to_dot(topo), encoding="utf-8")


# --- PNG picture -------------------------------------------------------------------------------------------

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
NO_ISP_COLOUR = "#b0b0b0"
LABEL_LIMIT = 60  # above this many nodes labels are unreadable: leave them out


def layout(topo: Topology) -> dict:
    """Node positions: x/y attrs when (nearly) every node has them, else a spring layout seeded for
    determinism. Nodes without x/y among placed ones go to the mean of their placed neighbours."""
    placed = [n for n in topo.nodes.values() if _has_xy(n)]
    if placed and len(placed) >= 0.5 * len(topo.nodes):
        # imported meshnet-lab (freifunk) x/y are latitude/longitude: draw longitude across
        swap = "id" in placed[0].attrs and _looks_geographic(placed)
        pos = {n.name: ((n.attrs["y"], n.attrs["x"]) if swap else (n.attrs["x"], n.attrs["y"])) for n in placed}
        cx = sum(x for x, _ in pos.values()) / len(pos)
        cy = sum(y for _, y in pos.values()) / len(pos)
        neighbors = {name: [] for name in topo.nodes}
        for link in topo.links:
            neighbors[link.a].append(link.b)
            neighbors[link.b].append(link.a)
        for last_pass in (False, False, True):  # nodes next to other unplaced nodes get placed in a later pass
            for name in topo.nodes:
                if name not in pos:
                    near = [pos[m] for m in neighbors[name] if m in pos] or ([(cx, cy)] if last_pass else [])
                    if near:
                        pos[name] = (sum(x for x, _ in near) / len(near), sum(y for _, y in near) / len(near))
        return pos
    seed = topo.seed if topo.seed is not None else 1
    if len(topo.nodes) < 500:
        g = nx.Graph()
        g.add_nodes_from(topo.nodes)
        g.add_edges_from((link.a, link.b) for link in topo.links)
        return {name: (float(x), float(y)) for name, (x, y) in nx.spring_layout(g, seed=seed, method="force").items()}
    return _big_spring_layout(list(topo.nodes), [(link.a, link.b) for link in topo.links], seed)


def _big_spring_layout(names: list, edges: list, seed: int, iterations: int = 40) -> dict:
    """Fruchterman-Reingold in numpy, in row blocks so memory stays small (networkx needs scipy above 500
    nodes, which we do not depend on)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    pos = rng.random((n, 2), dtype=np.float32)
    ends = np.array([(index[a], index[b]) for a, b in edges], dtype=np.int64).reshape(-1, 2)
    k = np.float32(math.sqrt(1.0 / n))
    step = 0.1
    for _ in range(iterations):
        disp = np.zeros((n, 2), dtype=np.float32)
        for start in range(0, n, 256):  # repulsion between every pair, a block of rows at a time
            delta = pos[start:start + 256, None, :] - pos[None, :, :]
            dist2 = np.maximum((delta ** 2).sum(axis=2), 1e-6)
            disp[start:start + 256] += (delta * (k * k / dist2)[:, :, None]).sum(axis=1)
        if len(ends):  # attraction along links
            delta = pos[ends[:, 0]] - pos[ends[:, 1]]
            force = delta * (np.sqrt((delta ** 2).sum(axis=1)) / k)[:, None]
            np.add.at(disp, ends[:, 0], -force)
            np.add.at(disp, ends[:, 1], force)
        length = np.maximum(np.sqrt((disp ** 2).sum(axis=1)), 1e-6)
        pos += disp * (np.minimum(length, step) / length)[:, None]
        step *= 0.93
    return {name: (float(pos[i, 0]), float(pos[i, 1])) for i, name in enumerate(names)}


def _has_xy(n: Node) -> bool:
    x, y = n.attrs.get("x"), n.attrs.get("y")
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y))


def _looks_geographic(nodes: list) -> bool:
    xs = [n.attrs["x"] for n in nodes]
    ys = [n.attrs["y"] for n in nodes]
    return all(-90 <= x <= 90 for x in xs) and all(-180 <= y <= 180 for y in ys)


def isp_relations(topo: Topology) -> list[str]:
    """Each pair of related Cloud ISPs once, in words: `alpha is the provider of beta`, `x peers with y`."""
    out, seen = [], set()
    for isp in topo.isps.values():
        for other, rel in isp.relations.items():
            if frozenset((isp.name, other)) in seen:
                continue
            seen.add(frozenset((isp.name, other)))
            out.append(f"{isp.name} peers with {other}" if rel == "peer" else f"{other} is the {rel} of {isp.name}")
    return out


def node_label(n: Node) -> str:
    """The name and the roles beyond router; a role the agent does not run yet is marked with '*'."""
    from testbed.topology.model import RUNNING_ROLES
    extra = [r + ("" if r in RUNNING_ROLES else "*") for r in n.roles if r != "router"]
    return n.name + ("\n" + " ".join(extra) if extra else "")


def figure(topo: Topology, *, title: str | None = None, labels: bool | None = None):
    """The topology drawn headless (Agg): nodes coloured by Cloud ISP, route servers as large stars, and for small
    graphs node names with their roles, links with rate and delay (a->b / b->a when they differ) and the ISPs'
    relations, in a box."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pos = layout(topo)
    big = len(topo.nodes) > LABEL_LIMIT
    labels = (not big) if labels is None else labels
    fig = Figure(figsize=(10, 8) if big else (8, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_title(title or f"{topo.name}: {len(topo.nodes)} nodes, {len(topo.links)} links", fontsize=11)
    segments = [(pos[link.a], pos[link.b]) for link in topo.links if link.a in pos and link.b in pos]
    ax.add_collection(LineCollection(segments, colors="#888888", linewidths=0.4 if big else 1.2, zorder=1))
    colour = {isp: PALETTE[i % len(PALETTE)] for i, isp in enumerate(topo.isps)}
    size = 12 if big else 400
    for rs in (False, True):
        group = [n for n in topo.nodes.values() if ("route_server" in n.roles) == rs]
        if not group:
            continue
        ax.scatter([pos[n.name][0] for n in group], [pos[n.name][1] for n in group],
                   s=size * (2.5 if rs else 1), marker="*" if rs else "o",
                   c=[colour.get(n.isp, NO_ISP_COLOUR) for n in group],
                   edgecolors="black" if rs else "white", linewidths=1.2 if rs else 0.5, zorder=3 if rs else 2)
    if labels:
        for n in topo.nodes.values():
            name, _, roles = node_label(n).partition("\n")
            ax.annotate(name, pos[n.name], ha="center", va="center", fontsize=8, zorder=4)
            if roles:      # under the marker, not over it
                ax.annotate(roles, pos[n.name], xytext=(0, -17), textcoords="offset points", ha="center",
                            va="top", fontsize=7, color="#333333", zorder=4)
        for link in topo.links:
            text = _link_label(link)
            if text and link.a in pos and link.b in pos:
                (xa, ya), (xb, yb) = pos[link.a], pos[link.b]
                ax.annotate(text, ((xa + xb) / 2, (ya + yb) / 2), ha="center", va="center", fontsize=6,
                            color="#444444", zorder=4,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=isp, markersize=8)
               for isp, c in colour.items()]
    if topo.nodes_with_role("route_server"):
        handles.append(Line2D([], [], marker="*", linestyle="", color="white", markeredgecolor="black",
                              label="route server", markersize=12))
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    notes = isp_relations(topo) if labels else []
    if labels and any("*" in node_label(n) for n in topo.nodes.values()):
        notes.append("* role with no effect yet")
    if notes:
        ax.text(0.99, 0.01, "\n".join(notes), transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox={"boxstyle": "round", "fc": "#f4f4f4", "ec": "#cccccc"})
    ax.autoscale_view()
    ax.margins(0.1)
    return fig


def draw_png(topo: Topology, path, *, title: str | None = None, labels: bool | None = None) -> None:
    figure(topo, title=title, labels=labels).savefig(str(path), format="png")


__all__ = ["assign_names", "is_meshnet_lab", "from_meshnet_lab", "to_meshnet_lab", "write_meshnet_lab", "to_networkx",
           "from_networkx", "read_graphml", "write_graphml", "read_gml", "write_gml", "to_dot", "write_dot", "layout",
           "figure", "draw_png", "isp_relations", "node_label"]
