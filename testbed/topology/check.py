"""Checks of a whole topology: names, links, parameters, Cloud ISPs and their relations, leases, connectivity.
``validate`` raises TopologyError listing every error found and returns the warnings.
"""
from __future__ import annotations


import networkx as nx

from testbed.topology.dataplane import dataplane_errors
from testbed.topology.leases import lease_errors
from testbed.topology.model import (_OPPOSITE, IFNAME_MAX, NAME_RE, RELATIONS, ROLES, RUNNING_ROLES, Topology,
                                    idle_roles)
from testbed.topology.units import TopologyError

MARKET_ATTR = "market"      # node attrs: settings of the node's market service (role issuer), node/market/service.py
MARKET_SETTINGS = {"hub": bool, "hub_fee": int}


def market_attr_errors(node) -> list[str]:
    """What is wrong with a node's `market` attribute: {hub: true|false, hub_fee: atomic units >= 0}, and only on a
    node with the role issuer (the market service that reads it)."""
    m = node.attrs.get(MARKET_ATTR) if isinstance(node.attrs, dict) else None
    if m is None:
        return []
    if "issuer" not in node.roles:
        return ["only a node with the role issuer runs a market"]
    if not isinstance(m, dict) or set(m) - set(MARKET_SETTINGS):
        return [f"expected {{hub: true|false, hub_fee: atomic units >= 0}}, got {m!r}"]
    errors = [f"{k}: expected {t.__name__}, got {m[k]!r}" for k, t in MARKET_SETTINGS.items()
              if k in m and (isinstance(m[k], bool) != (t is bool) or not isinstance(m[k], t))]
    if not errors and m.get("hub_fee", 0) < 0:
        errors.append(f"hub_fee: atomic units >= 0, got {m['hub_fee']}")
    return errors


def validate(topo: Topology, allow_disconnected: bool | None = None) -> list[str]:
    """Raise TopologyError listing every error; return warnings. allow_disconnected=None uses the
    topology's own setting (False for native files and generators, True for imported data)."""
    if allow_disconnected is None:
        allow_disconnected = topo.allow_disconnected
    src = topo.source
    errors: list[str] = []
    warnings: list[str] = []
    if not topo.nodes:
        errors.append(f"{src}: no nodes")
    for key, n in topo.nodes.items():
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
        if n.isp is not None and n.isp not in topo.isps:
            errors.append(f"{src}: node {n.name}: unknown isp {n.isp!r}")
        errors += [f"{src}: node {n.name}: attrs: {MARKET_ATTR}: {e}" for e in market_attr_errors(n)]
    seen: dict[frozenset, str] = {}
    degree = {name: 0 for name in topo.nodes}
    for link in topo.links:
        where = f"{src}: link {link.name}"
        for end in (link.a, link.b):
            if end not in topo.nodes:
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
            errors += [f"{where}: {label}: {problem}" for problem in p.problems()]
    errors += [f"{src}: defaults: {problem}" for problem in topo.defaults.problems()]
    for name, deg in degree.items():
        longest = f"{name}-eth{max(deg - 1, 0)}"
        if len(longest) > IFNAME_MAX:
            allowed = IFNAME_MAX - len(f"-eth{max(deg - 1, 0)}")
            errors.append(f"{src}: node {name}: name too long for interface names: {longest!r} has "
                          f"{len(longest)} characters, Linux allows {IFNAME_MAX}; with {deg} links "
                          f"the name may have at most {allowed} characters")
    isp_errors = _isp_errors(topo)
    errors += isp_errors
    if not isp_errors:
        errors += [f"{src}: {e}" for e in lease_errors(topo)]
    idle = idle_roles(topo.nodes.values())
    if idle:
        listed = "; ".join(f"{role} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})"
                           for role, names in idle.items())
        warnings.append(f"{src}: roles with no effect yet (a run acts only on "
                        f"{', '.join(RUNNING_ROLES)}): {listed}")
    if not errors:
        errors += [f"{src}: {e}" for e in dataplane_errors(topo)]
    for isp in topo.isps.values():
        members = [n for n in topo.nodes.values() if n.isp == isp.name]
        if members and not any("route_server" in n.roles for n in members):
            warnings.append(f"{src}: isp {isp.name}: no node with role route_server")
    if topo.nodes and not errors:
        parts = list(nx.connected_components(topo.graph()))
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

def _isp_errors(topo: Topology) -> list[str]:
    src, errors = topo.source, []
    for isp in topo.isps.values():
        if not isinstance(isp.name, str) or not NAME_RE.match(isp.name) or len(isp.name) > IFNAME_MAX:
            errors.append(f"{src}: isp {isp.name!r}: invalid name (a letter, then letters, digits or '_'; "
                          f"at most {IFNAME_MAX} characters)")
        for other, rel in isp.relations.items():
            where = f"{src}: isp {isp.name}: relations: {other}"
            if rel not in RELATIONS:
                errors.append(f"{where}: unknown relation {rel!r} (known: {', '.join(RELATIONS)})")
            elif other == isp.name:
                errors.append(f"{where}: an isp cannot be related to itself")
            elif other not in topo.isps:
                errors.append(f"{where}: unknown isp {other!r}")
            else:
                back = topo.isps[other].relations.get(isp.name)
                if back is not None and back != _OPPOSITE[rel]:
                    errors.append(f"{where}: says {other} is its {rel}, but {other} says {isp.name} "
                                  f"is its {back} (expected {_OPPOSITE[rel]})")
    return errors
