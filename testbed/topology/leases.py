"""Bandwidth leases declared in a topology: the file format, its checks, and what a mesh makes of them.

A Cloud ISP lists the leases it sells on links of its own devices (format in testbed/topologies/README.md)::

    isps:
      backbone:
        relations: {shop: customer, other: peer}
        leases:
          - link: core--shop1            # a link of the topology with at least one end in this isp
            holder: shop                 # an isp name or a cjdns key "....k"; default: the isp at the other end
            id: shop_in                  # default "<isp>_<n>" (n counts this isp's leases from 1)
            guarantee: 2mbit             # default 0
            max_priority_bandwidth: 1000 # priority x kB/s; default null = unlimited
            clear_customer_bit: false    # default: true when the holder is a peer or provider of this isp
            deprioritize_non_customer: 4 # default: 4 when the holder is a customer of this isp, else null
            term: 1h                     # the lease expires this long after `up`; default null = never

testbed/agent_configs.py turns them into each node's agent "leases" section (node/leases/config.py): both ends
of the link get the lease with the same UDP port (LEASE_PORT_BASE + its number in the topology). Holder keys come
from the run seed like node keys (``holder_identity``). A node's paths go over the leases its own isp holds, so a
label chooses the lease as on a PKT device: computed by testbed/agent_configs.py with static routing, handed out by
the route servers otherwise (node/route_server/server.py). Link ends with a rate get the per-lease HTB plan
(node/leases/tc_plan.py) instead of the single shaping class; the agents' lease sockets reach the classes through
SO_PRIORITY, so no classifier is needed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from node.cjdns.keys import Identity, parse_pubkey_text
from node.leases.table import FREE
from node.cjdns.switch_header import MAX_PRIORITY
from testbed.topology.units import TopologyError, parse_rate

LEASE_FIELDS = ("link", "holder", "id", "guarantee", "max_priority_bandwidth", "clear_customer_bit",
                "deprioritize_non_customer", "term")
DEFAULT_DEPRIORITIZE = 4        # a provider's lease to a customer caps non-customer traffic at this priority
LEASE_PORT_BASE = 7300          # UDP port of lease n (both ends); peer links use 7100
LAST_INTERFACE = 256            # lease interfaces count down from here
ORIGIN_ATTR = "lease_origin"    # node attrs: {"priority": 0..15, "customer": bool} for the node's own packets
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
TERM_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_TERM = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-z]+)\s*$")


@dataclass
class DeclaredLease:
    id: str
    isp: str                        # the seller
    number: int                     # 0.. in the topology (its UDP port is LEASE_PORT_BASE + number)
    link_index: int                 # into Topology.links
    holder_isp: str | None          # the holder, an isp of the topology ...
    holder_key: str | None          # ... or an outside key
    guarantee_bps: int = 0
    max_priority_bandwidth: float | None = None
    clear_customer_bit: bool = False
    deprioritize_non_customer: int | None = None
    term_s: float | None = None

    @property
    def udp_port(self) -> int:
        return LEASE_PORT_BASE + self.number


def holder_identity(seed, isp: str) -> Identity:
    """The key pair of an isp's lease holder, derived from the run seed (as node keys are)."""
    return Identity.from_seed(f"{seed}:isp:{isp}".encode(), 0)


def parse_term(value) -> float | None:
    if value is None:
        return None
    m = _TERM.match(value) if isinstance(value, str) else None
    if not m or m.group(2) not in TERM_UNITS:
        raise ValueError(f"term: expected a duration such as '600s', '30m', '2h' or '1d', got {value!r}")
    seconds = float(Decimal(m.group(1)) * TERM_UNITS[m.group(2)])
    if seconds <= 0:
        raise ValueError(f"term: must be positive, got {value!r}")
    return seconds


def _parse_one(topo, isp, entry, n, number) -> tuple[DeclaredLease | None, list[str]]:
    where = f"isp {isp.name}: leases[{n}]"
    if not isinstance(entry, dict):
        return None, [f"{where}: expected a mapping with at least 'link', got {type(entry).__name__}"]
    errors = [f"{where}: unknown field {k!r} (known: {', '.join(LEASE_FIELDS)})" for k in entry
              if k not in LEASE_FIELDS]
    link = entry.get("link")
    ends = link.split("--") if isinstance(link, str) else None
    index = None
    if ends is None or len(ends) != 2:
        errors.append(f"{where}: link: expected 'a--b' naming a link of the topology, got {link!r}")
    else:
        found = [i for i, l in enumerate(topo.links) if {l.a, l.b} == set(ends)]
        if not found:
            errors.append(f"{where}: link: no link {link} in the topology")
        else:
            index = found[0]
    lease = DeclaredLease(entry.get("id", f"{isp.name}_{n + 1}"), isp.name, number, index, None, None)
    if not isinstance(lease.id, str) or not ID_RE.match(lease.id) or lease.id == FREE:
        errors.append(f"{where}: id: expected a letter then up to 31 letters, digits or '_' (not 'free'), "
                      f"got {lease.id!r}")
    other_isp = None
    if index is not None:
        l = topo.links[index]
        isps_at = [topo.nodes[e].isp for e in (l.a, l.b) if e in topo.nodes]
        if isp.name not in isps_at:
            errors.append(f"{where}: link {link}: neither end is a node of isp {isp.name} (set the nodes' isp)")
        others = [i for i in isps_at if i not in (None, isp.name)]
        other_isp = others[0] if others else None
    holder = entry.get("holder", other_isp)
    if holder is None:
        errors.append(f"{where}: holder: needed (no other isp at the link's far end); give an isp or a key")
    elif isinstance(holder, str) and holder.endswith(".k"):
        try:
            parse_pubkey_text(holder)
            lease.holder_key = holder
        except ValueError as e:
            errors.append(f"{where}: holder: bad cjdns key: {e}")
    elif isinstance(holder, str) and holder in topo.isps:
        lease.holder_isp = holder
    else:
        errors.append(f"{where}: holder: unknown isp {holder!r} (known: {', '.join(topo.isps)}) and not a key")
    relation = isp.relations.get(lease.holder_isp) if lease.holder_isp else None
    try:
        lease.guarantee_bps = parse_rate(entry.get("guarantee", 0) or None) or 0
    except TopologyError as e:
        errors.append(f"{where}: guarantee: {e}")
    mpb = entry.get("max_priority_bandwidth")
    if mpb is not None and (isinstance(mpb, bool) or not isinstance(mpb, (int, float)) or not 0 <= mpb < 1e12):
        errors.append(f"{where}: max_priority_bandwidth: expected null (unlimited) or a number >= 0, got {mpb!r}")
    else:
        lease.max_priority_bandwidth = None if mpb is None else float(mpb)
    clear = entry.get("clear_customer_bit", relation in ("peer", "provider"))
    if not isinstance(clear, bool):
        errors.append(f"{where}: clear_customer_bit: expected true or false, got {clear!r}")
    lease.clear_customer_bit = clear is True
    p = entry.get("deprioritize_non_customer", DEFAULT_DEPRIORITIZE if relation == "customer" else None)
    if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY):
        errors.append(f"{where}: deprioritize_non_customer: expected null or a priority 0..{MAX_PRIORITY}, "
                      f"got {p!r}")
    else:
        lease.deprioritize_non_customer = p
    try:
        lease.term_s = parse_term(entry.get("term"))
    except ValueError as e:
        errors.append(f"{where}: {e}")
    return (None if errors else lease), errors


def parse(topo) -> tuple[list[DeclaredLease], list[str]]:
    """Every declared lease in topology order, and every problem found."""
    out, errors, ids = [], [], {}
    for isp in topo.isps.values():
        for n, entry in enumerate(isp.leases):
            lease, errs = _parse_one(topo, isp, entry, n, len(out) + len(errors))
            errors += errs
            if lease is None:
                continue
            if lease.id in ids:
                errors.append(f"isp {isp.name}: leases[{n}]: id {lease.id!r} already used by isp {ids[lease.id]}")
                continue
            ids[lease.id] = isp.name
            out.append(lease)
    for i, link in enumerate(topo.links):       # the guarantees on a link must fit its rate, each way
        total = sum(l.guarantee_bps for l in out if l.link_index == i)
        for end in (link.a, link.b):
            rate = link.params_from(end).rate_bps
            if rate and total > rate:
                errors.append(f"link {link.a}--{link.b}: lease guarantees ({total} bit/s) exceed the rate "
                              f"from {end} ({rate} bit/s)")
    for n, lease in enumerate(out):
        lease.number = n
    for node in topo.nodes.values():
        origin = node.attrs.get(ORIGIN_ATTR) if isinstance(node.attrs, dict) else None
        if origin is None:
            continue
        p = origin.get("priority") if isinstance(origin, dict) else None
        if not isinstance(origin, dict) or set(origin) - {"priority", "customer"} or isinstance(p, bool) \
                or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY \
                or not isinstance(origin.get("customer", False), bool):
            errors.append(f"node {node.name}: attrs: {ORIGIN_ATTR}: expected {{priority: 0..{MAX_PRIORITY}, "
                          f"customer: true|false}}, got {origin!r}")
    if len(out) > LAST_INTERFACE - 100:
        errors.append(f"{len(out)} leases: at most {LAST_INTERFACE - 100} per topology")
    return out, errors


def lease_errors(topo) -> list[str]:
    return parse(topo)[1]


def declared_leases(topo) -> list[DeclaredLease]:
    leases, errors = parse(topo)
    if errors:
        raise TopologyError(errors)
    return leases


def json_schema() -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["link"], "properties": {
        "link": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*--[A-Za-z][A-Za-z0-9_]*$"},
        "holder": {"type": "string"},
        "id": {"type": "string", "pattern": ID_RE.pattern},
        "guarantee": {"$ref": "#/$defs/rate"},
        "max_priority_bandwidth": {"type": ["number", "null"], "minimum": 0},
        "clear_customer_bit": {"type": "boolean"},
        "deprioritize_non_customer": {"oneOf": [{"type": "null"},
                                                {"type": "integer", "minimum": 0, "maximum": MAX_PRIORITY}]},
        "term": {"oneOf": [{"type": "null"}, {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*(s|m|min|h|d)\s*$"}]}}}
