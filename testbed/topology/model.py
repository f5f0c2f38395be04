"""The topology model: nodes, links, Cloud ISPs and the per-direction link parameters, with queries and the
native file form (``to_dict``). Reading files is ``reader``, checking ``check``, loading by name ``load``.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import networkx as nx

from node.tun_switch.link_emulation import LinkParams
from testbed.topology.units import (format_fraction, format_rate, format_time, parse_fraction, parse_rate,
                                    parse_time)

IFNAME_MAX = 15  # Linux IFNAMSIZ - 1
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ROLES = ("router", "route_server", "miner", "pool", "chain", "issuer", "block_miner")     # every role a node may have
# The roles a run acts on (the node agent, or a service beside it), and what it does for each: the one registry of implemented roles. A role of
# ROLES missing here is accepted in files but has no effect yet (`validate` and `up` say so, the demo hides it);
# register a role here when the agent runs it.
RUNNING_ROLES = {
    "router": "forwards packets (every node is a PKT routing device)",
    "route_server": "serves paths to the nodes of its Cloud ISP and federates with the other route servers",
    # the chain side (testbed/services.py starts them in the node's namespace)
    "chain": "keeps the PKT chain (P2P over the mesh, an RPC for wallets and pools)",
    "pool": "runs a PacketCrypt pool (master, announcement and block handlers, paymaker) over HTTP",
    "miner": "mines PacketCrypt announcements and uploads them to its nearest pool",
    "block_miner": "mines blocks from the pool's announcements and submits shares and blocks",
    "issuer": "runs the node's bandwidth market: issues lease tokens, sells and buys them by atomic swap",
}


def idle_roles(nodes) -> dict[str, list[str]]:
    """{role: [node names]} for the roles of these nodes that the agent does not run yet."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        for role in n.roles:
            if role in ROLES and role not in RUNNING_ROLES:
                out.setdefault(role, []).append(n.name)
    return out


RELATIONS = ("customer", "provider", "peer")
_OPPOSITE = {"customer": "provider", "provider": "customer", "peer": "peer"}


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
    chain: dict = field(default_factory=dict)  # the run's PKT chain (testbed/services.py check_section)
    chains: dict = field(default_factory=dict)  # or several named chain instances (testbed/services.py check_chains)
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

    def largest_component(self) -> Topology:
        """A new topology of the nodes and links of the largest connected component (of equal ones, the first in
        node order); ISPs, chain and defaults as they are."""
        keep = max(nx.connected_components(self.graph()), key=len, default=set())
        sub = copy.copy(self)
        sub.nodes = {name: n for name, n in self.nodes.items() if name in keep}
        sub.links = [link for link in self.links if link.a in keep]
        sub.warnings = list(self.warnings)
        return sub

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
        if self.chain:
            d["chain"] = copy.deepcopy(self.chain)
        if self.chains:
            d["chains"] = copy.deepcopy(self.chains)
        return d


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
