"""Reading the native file form (YAML or JSON, see ``schema``) into a Topology, with errors that name the
source, item and field; the YAML loader keeps booleans strict and reports duplicate keys.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import replace

import yaml

from testbed.topology.model import _OPPOSITE, PARAMS, RELATIONS, Isp, Link, LinkParams, Node, Topology
from testbed.topology.units import TopologyError

TOP_FIELDS = ("name", "description", "seed", "allow_disconnected", "defaults", "isps", "nodes", "links", "attrs",
              "chain", "chains")
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
        bad = _non_string_keys(value)
        if bad:
            bad_key = bad[0]
            self.fail(where, f"attrs: keys must be strings, got {_kind(bad_key)} {_short(bad_key)}"
                      + (" (quote it in YAML)" if isinstance(bad_key, (bool, int, float)) else ""))
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
        if d.get("chain") is not None:
            from testbed.services import ChainConfigError, check_section
            try:
                topo.chain = check_section(d["chain"])
            except ChainConfigError as e:
                self.fail("chain", str(e).removeprefix("chain: "))
        if d.get("chains") is not None:
            from testbed.services import ChainConfigError, check_chains
            try:
                topo.chains = check_chains(d["chains"], topo)
            except ChainConfigError as e:
                self.fail("chains", str(e).removeprefix("chains: "))
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


def _non_string_keys(value) -> list:
    """[the first mapping key anywhere in value that is not a string] (JSON would turn 1 into "1"), or []."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return [k]
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
    return []


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
    match = difflib.get_close_matches(str(key), allowed, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


# --- reading and writing files -----------------------------------------------------------------------------

MAX_YAML_NODES = 1_000_000     # a document's nodes with every alias copied out (a file of real data has fewer)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-like booleans (only true/false: a node named 'y' or 'no' stays a string), duplicate-key
    tracking, and a bound on alias expansion: a 500-byte file of nested aliases ("billion laughs") would
    otherwise become gigabytes once anything walks it."""

    def construct_document(self, node):
        _expanded_size(node, {}, set())
        return super().construct_document(node)


def _expanded_size(node, memo: dict, active: set) -> int:
    """Nodes under `node` with aliases copied out (the composed graph shares them), up to MAX_YAML_NODES."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise yaml.constructor.ConstructorError(None, None, "an alias refers to its own anchor", node.start_mark)
    active.add(key)
    children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else [])
    size = 1
    for child in children:
        size += _expanded_size(child, memo, active)
        if size > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases expand to more than {MAX_YAML_NODES} values", node.start_mark)
    active.discard(key)
    memo[key] = size
    return size



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


def from_dict(d, source: str = "<dict>") -> Topology:
    """Build from the native file form; raises TopologyError on structural problems (unknown fields, bad values,
    missing units, duplicate names). Graph problems are left to check.validate()."""
    return _Reader(source).topology(d)
