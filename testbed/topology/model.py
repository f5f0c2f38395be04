"""The topology model: nodes, links, Cloud ISPs; load, validate and save.

A topology comes from a native file (YAML or JSON, see ``json_schema()``), an imported file (meshnet-lab JSON,
GraphML, GML; see ``testbed.topology_io``), a generator string such as ``"grid:3x3,delay=5ms"`` (see
``testbed.topologies.generators``) or the name of a bundled example (``"default"``).

Values in files carry units: rates ``"10mbit"`` (bit/s, SI prefixes), times ``"5ms"``, fractions ``"1%"``.
A bare number where a unit is needed is an error, except 0 (which needs none).

Disconnected graphs: ``load()`` rejects them for native files and generators unless the file says
``allow_disconnected: true``; imported real-world data (meshnet-lab, GraphML, GML) is often disconnected, so
importers allow it and ``validate()`` only reports a warning. ``load(..., allow_disconnected=...)`` overrides both.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import networkx as nx
import yaml

BUNDLED_DIR = Path(__file__).parent / "topologies"
IFNAME_MAX = 15  # Linux IFNAMSIZ - 1
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ROLES = ("router", "route_server", "miner", "pool", "chain", "issuer")
RELATIONS = ("customer", "provider", "peer")
_OPPOSITE = {"customer": "provider", "provider": "customer", "peer": "peer"}


class TopologyError(ValueError):
    """A topology cannot be used. ``errors`` lists every problem found; str() shows them all."""

    def __init__(self, message: str | list[str]):
        self.errors = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.errors))


# --- units -------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]{1,4}))?\s*([A-Za-z%µ/]*)\s*$")
RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}
TIME_UNITS = {"s": Decimal(1), "ms": Decimal("1e-3"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"),
              "ns": Decimal("1e-9")}
MAX_RATE = 10**15  # 1 Pbit/s: anything above is a typo
MAX_TIME = Decimal(3600)


def _split_number(text, what: str) -> tuple[Decimal, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise TopologyError(f"expected a {what} string such as {_EXAMPLE[what]!r}, got {text!r}")
    if isinstance(text, (int, float)):
        if text == 0:
            return Decimal(0), ""
        raise TopologyError(f"missing unit in {text!r} (write e.g. {_EXAMPLE[what]!r})")
    m = _NUMBER.match(text)
    if not m:
        if text.strip().startswith("-"):
            raise TopologyError(f"negative {what} {text!r}")
        raise TopologyError(f"bad {what} {text!r} (write e.g. {_EXAMPLE[what]!r})")
    number = Decimal(m.group(1) + (f"e{m.group(2)}" if m.group(2) else ""))
    unit = m.group(3)
    if not unit and number != 0:
        raise TopologyError(f"missing unit in {text!r} (write e.g. {_EXAMPLE[what]!r})")
    return number, unit


_EXAMPLE = {"rate": "10mbit", "time": "5ms", "fraction": "1%"}


def parse_rate(value) -> int | None:
    """'10mbit' -> 10_000_000 bit/s; None or 'unlimited' -> None (unshaped). Raises TopologyError."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("unlimited", "none")):
        return None
    number, unit = _split_number(value, "rate")
    if unit.lower() not in RATE_UNITS:
        if number == 0 and not unit:
            raise TopologyError("rate must be positive (use null or 'unlimited' for an unshaped link)")
        hint = " (bytes are not accepted: use bit units)" if unit.lower().endswith(("bps", "b/s")) else ""
        raise TopologyError(f"unknown rate unit {unit!r} in {value!r}; use one of {', '.join(RATE_UNITS)}{hint}")
    bps = number * RATE_UNITS[unit.lower()]
    if bps > MAX_RATE:
        raise TopologyError(f"rate {value!r} is too large (at most 1000tbit)")
    if bps != bps.to_integral_value():
        raise TopologyError(f"rate {value!r} is not a whole number of bit/s")
    if bps <= 0:
        raise TopologyError("rate must be positive (use null or 'unlimited' for an unshaped link)")
    return int(bps)


def parse_time(value) -> float:
    """'5ms' -> 0.005 seconds. Raises TopologyError."""
    number, unit = _split_number(value, "time")
    if unit and unit not in TIME_UNITS:
        raise TopologyError(f"unknown time unit {unit!r} in {value!r}; use one of s, ms, us, ns")
    seconds = number * TIME_UNITS.get(unit, Decimal(1))
    if seconds > MAX_TIME:
        raise TopologyError(f"time {value!r} is too large (at most 3600s)")
    return float(seconds)


def parse_fraction(value) -> float:
    """'1%' -> 0.01. Raises TopologyError."""
    number, unit = _split_number(value, "fraction")
    if unit and unit != "%":
        raise TopologyError(f"unknown unit {unit!r} in {value!r}; write a percentage such as '1%'")
    if number > 100:
        raise TopologyError(f"fraction {value!r} is above 100%")
    return float(number / 100)


def format_rate(bps: int | None) -> str | None:
    if bps is None:
        return None
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        if bps % RATE_UNITS[unit] == 0:
            return f"{bps // RATE_UNITS[unit]}{unit}"
    return f"{bps}bit"


def format_time(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit in ("s", "ms", "us", "ns"):
        number = Decimal(repr(seconds)) / TIME_UNITS[unit]
        if number >= 1 and number == number.to_integral_value():
            return f"{int(number)}{unit}"
    return f"{seconds!r}s"


def format_fraction(fraction: float) -> str:
    if fraction == 0:
        return "0%"
    # scaling the shortest decimal form by 100 is exact, so the text reads back as the same float
    return f"{format((Decimal(repr(fraction)) * 100).normalize(), 'f')}%"


# --- the model ---------------------------------------------------------------------------------------------

@dataclass
class LinkParams:
    """Emulation parameters for one direction of a link."""
    rate_bps: int | None = None  # None = unshaped
    delay_s: float = 0
    jitter_s: float = 0
    loss: float = 0  # fractions 0..1
    duplicate: float = 0
    reorder: float = 0
    corrupt: float = 0


# file key -> (LinkParams attribute, parser, formatter)
PARAMS = {
    "rate": ("rate_bps", parse_rate, format_rate),
    "delay": ("delay_s", parse_time, format_time),
    "jitter": ("jitter_s", parse_time, format_time),
    "loss": ("loss", parse_fraction, format_fraction),
    "duplicate": ("duplicate", parse_fraction, format_fraction),
    "reorder": ("reorder", parse_fraction, format_fraction),
    "corrupt": ("corrupt", parse_fraction, format_fraction),
}


def params_to_dict(p: LinkParams, base: LinkParams | None = None) -> dict:
    """The file form of p, only the fields that differ from base."""
    base = base or LinkParams()
    out = {}
    for key, (attr, _, fmt) in PARAMS.items():
        if getattr(p, attr) != getattr(base, attr):
            out[key] = fmt(getattr(p, attr))
    return out


def params_problems(p: LinkParams) -> list[str]:
    """Range checks for LinkParams built in code (files are checked while parsing)."""
    problems = []
    if p.rate_bps is not None and (isinstance(p.rate_bps, bool) or not isinstance(p.rate_bps, int)
                                   or p.rate_bps <= 0):
        problems.append(f"rate: must be a positive whole number of bit/s or None, got {p.rate_bps!r}")
    for key in ("delay", "jitter"):
        v = getattr(p, PARAMS[key][0])
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(f"{key}: must be a time >= 0, got {v!r}")
    for key in ("loss", "duplicate", "reorder", "corrupt"):
        v = getattr(p, key)
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            problems.append(f"{key}: must be a fraction between 0 and 1, got {v!r}")
    return problems


@dataclass
class Node:
    name: str
    roles: list[str] = field(default_factory=lambda: ["router"])
    isp: str | None = None
    attrs: dict = field(default_factory=dict)


@dataclass
class Link:
    a: str
    b: str
    ab: LinkParams = field(default_factory=LinkParams)  # a -> b
    ba: LinkParams = field(default_factory=LinkParams)  # b -> a
    attrs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.a}--{self.b}"

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def params_from(self, node: str) -> LinkParams:
        """Parameters of the direction leaving ``node``."""
        return self.ab if node == self.a else self.ba


@dataclass
class Isp:
    """A Cloud ISP. relations[other] = "customer" means other is this ISP's customer."""
    name: str
    relations: dict[str, str] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    leases: list = field(default_factory=list)  # bandwidth leases as written (format and checks: testbed/leases.py)


@dataclass
class Topology:
    name: str = "topology"
    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    isps: dict[str, Isp] = field(default_factory=dict)
    defaults: LinkParams = field(default_factory=LinkParams)
    seed: int | None = None
    source: str = "<memory>"
    description: str = ""
    allow_disconnected: bool = False  # the source's own default; load()/validate() may override
    attrs: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list, compare=False)  # filled by load()

    # --- queries ---

    def graph(self) -> nx.Graph:
        """networkx view: node data has roles, isp, node (the Node) and its attrs; edge data has link
        (the Link), rate_bps/delay_s (a->b direction) and the link's attrs."""
        g = nx.Graph(name=self.name)
        for n in self.nodes.values():
            g.add_node(n.name, **{**n.attrs, "roles": list(n.roles), "isp": n.isp, "node": n})
        for link in self.links:
            g.add_edge(link.a, link.b, **{**link.attrs, "link": link, "rate_bps": link.ab.rate_bps,
                                          "delay_s": link.ab.delay_s})
        return g

    def links_of(self, name: str) -> list[Link]:
        return [link for link in self.links if name in (link.a, link.b)]

    def neighbors(self, name: str) -> list[str]:
        return [link.other(name) for link in self.links_of(name)]

    def interface_names(self, name: str) -> list[str]:
        """Mininet-style names of the node's link interfaces, in link order."""
        return [f"{name}-eth{k}" for k in range(len(self.links_of(name)))]

    def nodes_with_role(self, role: str) -> list[str]:
        return [n.name for n in self.nodes.values() if role in n.roles]

    def find_link(self, a: str, b: str) -> Link | None:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        return None

    # --- validation ---

    def validate(self, allow_disconnected: bool | None = None) -> list[str]:
        """Raise TopologyError listing every error; return warnings. allow_disconnected=None uses the
        topology's own setting (False for native files and generators, True for imported data)."""
        if allow_disconnected is None:
            allow_disconnected = self.allow_disconnected
        src = self.source
        errors: list[str] = []
        warnings: list[str] = []
        if not self.nodes:
            errors.append(f"{src}: no nodes")
        for key, n in self.nodes.items():
            if key != n.name:
                errors.append(f"{src}: node {key}: stored under a different name {n.name!r}")
            if not isinstance(n.name, str) or not NAME_RE.match(n.name):
                errors.append(f"{src}: node {n.name!r}: invalid name (start with a letter, then letters, "
                              f"digits or '_')")
            if not n.roles:
                errors.append(f"{src}: node {n.name}: roles: empty (use [router] for a plain node)")
            for role in n.roles:
                if role not in ROLES:
                    errors.append(f"{src}: node {n.name}: roles: unknown role {role!r} (known: "
                                  f"{', '.join(ROLES)})")
            if len(set(n.roles)) != len(n.roles):
                errors.append(f"{src}: node {n.name}: roles: listed twice in {n.roles}")
            if n.isp is not None and n.isp not in self.isps:
                errors.append(f"{src}: node {n.name}: unknown isp {n.isp!r}")
        seen: dict[frozenset, str] = {}
        degree = {name: 0 for name in self.nodes}
        for link in self.links:
            where = f"{src}: link {link.name}"
            for end in (link.a, link.b):
                if end not in self.nodes:
                    errors.append(f"{where}: unknown node {end!r}")
            if link.a == link.b:
                errors.append(f"{where}: self-loop (a link needs two different nodes)")
                continue
            pair = frozenset((link.a, link.b))
            if pair in seen:
                errors.append(f"{where}: duplicate link (already defined as {seen[pair]})")
            seen[pair] = link.name
            for end in (link.a, link.b):
                if end in degree:
                    degree[end] += 1
            for label, p in (("a_to_b", link.ab), ("b_to_a", link.ba)):
                errors += [f"{where}: {label}: {problem}" for problem in params_problems(p)]
        errors += [f"{src}: defaults: {problem}" for problem in params_problems(self.defaults)]
        for name, deg in degree.items():
            longest = f"{name}-eth{max(deg - 1, 0)}"
            if len(longest) > IFNAME_MAX:
                allowed = IFNAME_MAX - len(f"-eth{max(deg - 1, 0)}")
                errors.append(f"{src}: node {name}: name too long for interface names: {longest!r} has "
                              f"{len(longest)} characters, Linux allows {IFNAME_MAX}; with {deg} links "
                              f"the name may have at most {allowed} characters")
        isp_errors = self._isp_errors()
        errors += isp_errors
        if not isp_errors:
            from testbed.leases import lease_errors  # the lease rules read the isps' relations
            errors += [f"{src}: {e}" for e in lease_errors(self)]
        for isp in self.isps.values():
            members = [n for n in self.nodes.values() if n.isp == isp.name]
            if members and not any("route_server" in n.roles for n in members):
                warnings.append(f"{src}: isp {isp.name}: no node with role route_server")
        if self.nodes and not errors:
            parts = list(nx.connected_components(self.graph()))
            if len(parts) > 1:
                sizes = sorted((len(p) for p in parts), reverse=True)
                small = sorted(min(parts, key=len))[:5]
                msg = (f"{src}: graph is disconnected: {len(parts)} components of sizes "
                       f"{sizes[:10]}{'...' if len(sizes) > 10 else ''} (e.g. {', '.join(small)} "
                       f"cannot reach the rest)")
                if allow_disconnected:
                    warnings.append(msg)
                else:
                    errors.append(msg + "; set allow_disconnected: true or pass allow_disconnected=True")
        if errors:
            raise TopologyError(errors)
        return warnings

    def _isp_errors(self) -> list[str]:
        src, errors = self.source, []
        for isp in self.isps.values():
            if not isinstance(isp.name, str) or not NAME_RE.match(isp.name) or len(isp.name) > IFNAME_MAX:
                errors.append(f"{src}: isp {isp.name!r}: invalid name (a letter, then letters, digits or '_'; "
                              f"at most {IFNAME_MAX} characters)")
            for other, rel in isp.relations.items():
                where = f"{src}: isp {isp.name}: relations: {other}"
                if rel not in RELATIONS:
                    errors.append(f"{where}: unknown relation {rel!r} (known: {', '.join(RELATIONS)})")
                elif other == isp.name:
                    errors.append(f"{where}: an isp cannot be related to itself")
                elif other not in self.isps:
                    errors.append(f"{where}: unknown isp {other!r}")
                else:
                    back = self.isps[other].relations.get(isp.name)
                    if back is not None and back != _OPPOSITE[rel]:
                        errors.append(f"{where}: says {other} is its {rel}, but {other} says {isp.name} "
                                      f"is its {back} (expected {_OPPOSITE[rel]})")
        return errors

    # --- file form ---

    def to_dict(self) -> dict:
        """The native file form (what save() writes); only non-default values are written."""
        d: dict = {"name": self.name}
        if self.description:
            d["description"] = self.description
        if self.seed is not None:
            d["seed"] = self.seed
        if self.allow_disconnected:
            d["allow_disconnected"] = True
        defaults = params_to_dict(self.defaults)
        if defaults:
            d["defaults"] = defaults
        if self.isps:
            d["isps"] = {}
            for isp in self.isps.values():
                entry = {}
                if isp.relations:
                    entry["relations"] = dict(isp.relations)
                if isp.attrs:
                    entry["attrs"] = copy.deepcopy(isp.attrs)
                if isp.leases:
                    entry["leases"] = copy.deepcopy(isp.leases)
                d["isps"][isp.name] = entry
        d["nodes"] = {}
        for n in self.nodes.values():
            entry = {}
            if n.roles != ["router"]:
                entry["roles"] = list(n.roles)
            if n.isp is not None:
                entry["isp"] = n.isp
            if n.attrs:
                entry["attrs"] = copy.deepcopy(n.attrs)
            d["nodes"][n.name] = entry
        d["links"] = [_link_to_dict(link, self.defaults) for link in self.links]
        if self.attrs:
            d["attrs"] = copy.deepcopy(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d, source: str = "<dict>") -> "Topology":
        """Build from the native file form; raises TopologyError on structural problems (unknown fields,
        bad values, missing units, duplicate names). Graph problems are left to validate()."""
        return _Reader(source).topology(d)


_MISSING = object()


def _link_to_dict(link: Link, defaults: LinkParams) -> dict:
    entry: dict = {"a": link.a, "b": link.b}
    ab, ba = params_to_dict(link.ab, defaults), params_to_dict(link.ba, defaults)
    entry.update({k: v for k, v in ab.items() if ba.get(k, _MISSING) == v})  # same both ways
    a_to_b, b_to_a = params_to_dict(link.ab, link.ba), params_to_dict(link.ba, link.ab)  # differ per direction
    if a_to_b:
        entry["a_to_b"] = a_to_b
    if b_to_a:
        entry["b_to_a"] = b_to_a
    if link.attrs:
        entry["attrs"] = copy.deepcopy(link.attrs)
    return entry
TOP_FIELDS = ("name", "description", "seed", "allow_disconnected", "defaults", "isps", "nodes", "links", "attrs")
NODE_FIELDS = ("name", "roles", "isp", "attrs")
LINK_FIELDS = ("a", "b", *PARAMS, "a_to_b", "b_to_a", "attrs")
ISP_FIELDS = ("relations", "attrs", "leases")


class _DupDict(dict):
    """A mapping from a file that remembers keys given twice (YAML and JSON would silently keep the last)."""
    duplicates: list


class _Reader:
    """Turns the native file form into a Topology with errors that name the source, item and field."""

    def __init__(self, source: str):
        self.src = source

    def fail(self, where: str, problem: str):
        raise TopologyError(f"{self.src}: {where}: {problem}" if where else f"{self.src}: {problem}")

    def mapping(self, value, where: str, allowed: tuple, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping of fields, got {_kind(value)} {_short(value)}")
        for key in getattr(value, "duplicates", ()):
            self.fail(where, f"field {key!r} given twice")
        for key in value:
            if key not in allowed:
                hint = _close(key, allowed)
                self.fail(where, f"unknown field {key!r} in {what}{hint} (allowed: {', '.join(allowed)})")
        return value

    def name(self, value, where: str, what: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"{what} must be a string, got {_kind(value)} {_short(value)}"
                      + (" (quote it in YAML)" if isinstance(value, (bool, int, float)) else ""))
        return value

    def attrs(self, value, where: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"attrs: expected a mapping, got {_kind(value)}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            self.fail(where, "attrs: values must be plain data (strings, numbers, lists, mappings)")
        return copy.deepcopy(dict(value))

    def params(self, value: dict, base: LinkParams, where: str) -> LinkParams:
        changes = {}
        for key, (attr, parse, _) in PARAMS.items():
            if key in value:
                try:
                    changes[attr] = parse(value[key])
                except ValueError as e:
                    self.fail(where, f"{key}: {e}")
        return replace(base, **changes)

    def topology(self, d) -> Topology:
        if not isinstance(d, dict):
            self.fail("", f"expected a mapping with nodes and links at the top, got {_kind(d)}")
        d = self.mapping(d, "top level", TOP_FIELDS, "a topology")
        topo = Topology(source=self.src)
        if "name" in d:
            topo.name = self.name(d["name"], "name", "name")
        if "description" in d:
            topo.description = self.name(d["description"], "description", "description")
        if d.get("seed") is not None:
            if isinstance(d["seed"], bool) or not isinstance(d["seed"], int) or d["seed"] < 0:
                self.fail("seed", f"must be a whole number >= 0, got {_short(d['seed'])}")
            topo.seed = d["seed"]
        if "allow_disconnected" in d:
            if not isinstance(d["allow_disconnected"], bool):
                self.fail("allow_disconnected", "must be true or false")
            topo.allow_disconnected = d["allow_disconnected"]
        topo.defaults = self.params(self.mapping(d.get("defaults"), "defaults", tuple(PARAMS), "defaults"),
                                    LinkParams(), "defaults")
        isps = d.get("isps") or {}
        if not isinstance(isps, dict):
            self.fail("isps", "expected a mapping of isp name -> {relations, attrs}")
        for key in getattr(isps, "duplicates", ()):
            self.fail("isps", f"duplicate isp name {key!r}")
        for name, entry in isps.items():
            name = self.name(name, "isps", "an isp name")
            entry = self.mapping(entry, f"isp {name}", ISP_FIELDS, "an isp")
            relations = entry.get("relations") or {}
            if not isinstance(relations, dict):
                self.fail(f"isp {name}: relations", "expected a mapping of other isp -> customer|provider|peer")
            rels = {}
            for other, rel in relations.items():
                if other not in isps:
                    self.fail(f"isp {name}: relations", f"unknown isp {_short(other)} (known: "
                              f"{', '.join(map(str, isps))})")
                if rel not in RELATIONS:
                    self.fail(f"isp {name}: relations: {other}",
                              f"unknown relation {_short(rel)} (known: {', '.join(RELATIONS)})")
                rels[other] = rel
            leases = entry.get("leases") or []
            if not isinstance(leases, list):
                self.fail(f"isp {name}: leases", f"expected a list of leases, got {_kind(leases)}")
            topo.isps[name] = Isp(name, rels, self.attrs(entry.get("attrs"), f"isp {name}"), copy.deepcopy(leases))
        _complete_relations(topo)
        for name, entry in self.node_entries(d.get("nodes")):
            where = f"node {name}"
            entry = self.mapping(entry, where, NODE_FIELDS, "a node")
            roles = entry.get("roles", ["router"])
            if isinstance(roles, str):
                roles = [roles]
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                self.fail(where, f"roles: expected a list of role names, got {_short(roles)}")
            isp = entry.get("isp")
            if isp is not None:
                isp = self.name(isp, where, "isp")
            topo.nodes[name] = Node(name, list(roles), isp, self.attrs(entry.get("attrs"), where))
        links = d.get("links") or []
        if not isinstance(links, list):
            self.fail("links", f"expected a list of links, got {_kind(links)}")
        for i, entry in enumerate(links):
            topo.links.append(self.link(entry, i, topo.defaults))
        if "attrs" in d:
            topo.attrs = self.attrs(d["attrs"], "top level")
        return topo

    def node_entries(self, nodes):
        """Nodes as a mapping {name: {...}} or a list of {name: ..., ...}; duplicates are an error."""
        if nodes is None:
            return []
        if isinstance(nodes, dict):
            for key in getattr(nodes, "duplicates", ()):
                self.fail(f"node {key}", "duplicate node name")
            return [(self.name(k, "nodes", "a node name"), v) for k, v in nodes.items()]
        if not isinstance(nodes, list):
            self.fail("nodes", f"expected a mapping or list of nodes, got {_kind(nodes)}")
        out, seen = [], set()
        for i, entry in enumerate(nodes):
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, dict) or "name" not in entry:
                self.fail(f"node #{i + 1}", "expected a node name or a mapping with a 'name' field")
            name = self.name(entry["name"], f"node #{i + 1}", "name")
            if name in seen:
                self.fail(f"node {name}", "duplicate node name")
            seen.add(name)
            out.append((name, {k: v for k, v in entry.items() if k != "name"}))
        return out

    def link(self, entry, i: int, defaults: LinkParams) -> Link:
        if isinstance(entry, str):  # shorthand "a--b"
            ends = entry.split("--")
            if len(ends) != 2 or not all(ends):
                self.fail(f"link #{i + 1}", f"expected 'a--b' or a mapping with a and b, got {entry!r}")
            entry = {"a": ends[0].strip(), "b": ends[1].strip()}
        if not isinstance(entry, dict):
            self.fail(f"link #{i + 1}", f"expected a mapping with a and b, got {_kind(entry)}")
        for end in ("a", "b"):
            if end not in entry:
                self.fail(f"link #{i + 1}", f"missing field {end!r} (the link's two nodes)")
        a = self.name(entry["a"], f"link #{i + 1}", "a")
        b = self.name(entry["b"], f"link #{i + 1}", "b")
        where = f"link {a}--{b}"
        entry = self.mapping(entry, where, LINK_FIELDS, "a link")
        both = self.params(entry, defaults, where)
        ab = self.params(self.mapping(entry.get("a_to_b"), f"{where}: a_to_b", tuple(PARAMS), "a_to_b"),
                         both, f"{where}: a_to_b")
        ba = self.params(self.mapping(entry.get("b_to_a"), f"{where}: b_to_a", tuple(PARAMS), "b_to_a"),
                         both, f"{where}: b_to_a")
        return Link(a, b, ab, ba, self.attrs(entry.get("attrs"), where))


def _complete_relations(topo: Topology):
    """A relation stated on one side implies the opposite on the other (conflicts are left to validate)."""
    for isp in list(topo.isps.values()):
        for other, rel in isp.relations.items():
            if other in topo.isps and other != isp.name and rel in _OPPOSITE:
                topo.isps[other].relations.setdefault(isp.name, _OPPOSITE[rel])


def _kind(value) -> str:
    if value is None:
        return "nothing"
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (dict, "a mapping"),
                        (list, "a list")):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _close(key, allowed) -> str:
    import difflib
    match = difflib.get_close_matches(str(key), allowed, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


# --- reading and writing files -----------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML 1.2-like booleans (only true/false: a node named 'y' or 'no' stays a string) and duplicate-key
    tracking."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    d = _DupDict()
    d.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "unhashable key", key_node.start_mark)
        if key in d:
            d.duplicates.append(key)
        d[key] = loader.construct_object(value_node, deep=True)
    return d


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_pairs(pairs):
    d = _DupDict()
    d.duplicates = []
    for k, v in pairs:
        if k in d:
            d.duplicates.append(k)
        d[k] = v
    return d


def parse_text(text: str, source: str, fmt: str):
    """Parse YAML or JSON text into plain data; syntax errors become TopologyError."""
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_Loader)
    except json.JSONDecodeError as e:
        raise TopologyError(f"{source}: line {e.lineno} column {e.colno}: bad JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise TopologyError(f"{source}: {at}bad YAML: {problem}") from None
    except RecursionError:
        raise TopologyError(f"{source}: nested too deeply") from None


def bundled_examples() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


REAL_MESHES_DIR = BUNDLED_DIR / "meshnet-lab"


def real_meshes() -> dict[str, Path]:
    """The bundled meshnet-lab data sets by file stem ("freifunk-ulm", "two_hop", ...)."""
    return {p.stem: p for p in sorted(REAL_MESHES_DIR.glob("*/*.json"))}


def load(spec: str, *, seed: int | None = None, allow_disconnected: bool | None = None) -> Topology:
    """Load a topology from a file path, a generator string ("grid:3x3,delay=5ms") or a bundled example name
    ("default"), validate it and return it (warnings in ``topo.warnings``). ``seed`` overrides the file's
    seed; for generators a seed inside the string wins over it."""
    from testbed.topologies import generators

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TopologyError(f"{spec!r}: expected a file path, generator string or bundled example name")
    path = Path(spec)
    if _is_file(path):
        topo = _load_file(path, spec)
        if seed is not None:
            topo.seed = seed
    elif generators.looks_like_generator(spec):
        topo = generators.generate(spec, seed=seed)
    elif "/" not in spec and (_is_file(BUNDLED_DIR / f"{spec}.yaml") or spec in real_meshes()):
        bundled = BUNDLED_DIR / f"{spec}.yaml"
        topo = _load_file(bundled if _is_file(bundled) else real_meshes()[spec], spec)
        if seed is not None:
            topo.seed = seed
    else:
        raise TopologyError(
            f"{spec}: no such file, generator or bundled example; generators: "
            f"{', '.join(generators.FORMS)}; bundled examples: {', '.join(bundled_examples())}; "
            f"real meshes: {', '.join(real_meshes())}")
    topo.warnings = list(topo.warnings) + topo.validate(allow_disconnected=allow_disconnected)
    return topo


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # names too long, NUL bytes: not a file we can read
        return False


def _load_file(path: Path, source: str) -> Topology:
    from testbed import topology_io

    suffix = path.suffix.lower()
    if suffix in (".graphml", ".xml"):
        return topology_io.read_graphml(path, source)
    if suffix == ".gml":
        return topology_io.read_gml(path, source)
    if suffix not in (".yaml", ".yml", ".json"):
        raise TopologyError(f"{source}: unknown file type {suffix!r} (use .yaml, .yml, .json, .graphml or .gml)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"{source}: cannot read: {e}") from None
    data = parse_text(text, source, "json" if suffix == ".json" else "yaml")
    if topology_io.is_meshnet_lab(data):
        return topology_io.from_meshnet_lab(data, source)
    return Topology.from_dict(data, source)


def _plain(value):
    """_DupDict and tuples -> plain dicts/lists for dumping."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dumps(topo: Topology, fmt: str = "yaml") -> str:
    d = _plain(topo.to_dict())
    if fmt == "json":
        return json.dumps(d, indent=2) + "\n"
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def save(topo: Topology, path) -> None:
    """Write the native form: YAML for .yaml/.yml, JSON for .json; .graphml/.gml/.dot/.png via topology_io."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        path.write_text(dumps(topo, "json" if suffix == ".json" else "yaml"), encoding="utf-8")
        return
    from testbed import topology_io
    writers = {".graphml": topology_io.write_graphml, ".gml": topology_io.write_gml,
               ".dot": topology_io.write_dot, ".gv": topology_io.write_dot, ".png": topology_io.draw_png}
    if suffix not in writers:
        raise TopologyError(f"{path}: unknown file type {suffix!r} (use .yaml, .json, .graphml, .gml, .dot or .png)")
    writers[suffix](topo, path)


# --- schema ------------------------------------------------------------------------------------------------

def _lease_schema() -> dict:
    from testbed.leases import json_schema as lease_schema
    return lease_schema()


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the native file format."""
    rate = {"oneOf": [{"type": "null"}, {"const": 0},
                      {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
                                                    r"([kKmMgGtT]?[bB][iI][tT])\s*$"},
                      {"type": "string", "pattern": "^(unlimited|none)$"}],
            "description": "bit/s with a unit: 100bit, 512kbit, 10mbit, 1gbit; null = unshaped"}
    time = {"oneOf": [{"const": 0},
                      {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
                                                    r"(s|ms|us|µs|ns)\s*$"}],
            "description": "a duration with a unit: 5ms, 1s, 250us"}
    fraction = {"oneOf": [{"const": 0},
                          {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*%\s*$"}],
                "description": "a percentage: 1%, 0.5%"}
    kinds = {"rate": rate, "delay": time, "jitter": time, "loss": fraction, "duplicate": fraction,
             "reorder": fraction, "corrupt": fraction}
    params = {k: {"$ref": f"#/$defs/{'rate' if k == 'rate' else 'time' if k in ('delay', 'jitter') else 'fraction'}"}
              for k in PARAMS}
    name = {"type": "string", "pattern": NAME_RE.pattern, "maxLength": IFNAME_MAX - len("-eth0")}
    isp_name = {"type": "string", "pattern": NAME_RE.pattern, "maxLength": IFNAME_MAX}
    attrs = {"type": "object"}
    node = {"type": "object", "additionalProperties": False, "properties": {
        "roles": {"type": "array", "items": {"enum": list(ROLES)}, "minItems": 1, "uniqueItems": True},
        "isp": isp_name, "attrs": attrs}}
    link = {"type": "object", "additionalProperties": False, "required": ["a", "b"], "properties": {
        "a": name, "b": name, **params,
        "a_to_b": {"$ref": "#/$defs/params"}, "b_to_a": {"$ref": "#/$defs/params"}, "attrs": attrs}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://pktlab.invalid/schema/topology.json",
        "title": "pktlab topology",
        "type": "object",
        "additionalProperties": False,
        "required": ["nodes"],
        "$defs": {"rate": kinds["rate"], "time": time, "fraction": fraction, "lease": _lease_schema(),
                  "params": {"type": "object", "additionalProperties": False, "properties": params}},
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "seed": {"type": ["integer", "null"], "minimum": 0},
            "allow_disconnected": {"type": "boolean"},
            "defaults": {"$ref": "#/$defs/params"},
            "isps": {"type": "object", "propertyNames": isp_name, "additionalProperties": {
                "type": ["object", "null"], "additionalProperties": False, "properties": {
                    "relations": {"type": "object", "additionalProperties": {"enum": list(RELATIONS)}},
                    "attrs": attrs, "leases": {"type": "array", "items": {"$ref": "#/$defs/lease"}}}}},
            "nodes": {"oneOf": [
                {"type": "object", "propertyNames": name,
                 "additionalProperties": {"oneOf": [{"type": "null"}, node]}},
                {"type": "array", "items": {"oneOf": [
                    name, {**node, "required": ["name"], "properties": {**node["properties"], "name": name}}]}}]},
            "links": {"type": "array", "items": {"oneOf": [
                {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*--[A-Za-z][A-Za-z0-9_]*$"}, link]}},
            "attrs": attrs,
        },
    }


__all__ = ["TopologyError", "LinkParams", "Node", "Link", "Isp", "Topology", "load", "save", "dumps",
           "json_schema", "parse_rate", "parse_time", "parse_fraction", "format_rate", "format_time",
           "format_fraction", "bundled_examples", "ROLES", "RELATIONS", "PARAMS"]
