"""Data-plane switches a topology sets in its ``attrs``: per-link encryption and in-network fair share.

    attrs: {link_crypto: false}          top level: every peer link in plaintext (default true: each peer link
                                         rides in a CryptoAuth session, as in cjdns)
    links: [{a: x, b: y, attrs: {link_crypto: false}}]      one link (wins over the top level)
    links: [{a: x, b: y, rate: 20mbit, attrs: {fair_share: true}}]   both ends share the link's rate fairly among
                                         the flows that cross it (node/tun_switch/fair_share.py)
    nodes: {r1: {attrs: {fair_share: true}}}                every link of r1, on r1's side

A fair-share link end needs a rate in the direction leaving it (the capacity to share), and cannot be a link with
bandwidth leases (those are scheduled by their leases).
"""
from __future__ import annotations

from testbed.topology.leases import declared_leases, lease_errors
from testbed.topology.model import Link, Topology

LINK_CRYPTO = "link_crypto"
FAIR_SHARE = "fair_share"


def link_crypto(topo: Topology, link: Link) -> bool:
    """Does this link's traffic ride in a CryptoAuth session between its two ends?"""
    return link.attrs.get(LINK_CRYPTO, topo.attrs.get(LINK_CRYPTO, True))


def fair_share_ends(topo: Topology) -> list[tuple[str, int]]:
    """(node, link number) of every link end whose egress the node schedules by fair share."""
    ends = []
    for i, link in enumerate(topo.links):
        for end in (link.a, link.b):
            if link.attrs.get(FAIR_SHARE) or topo.nodes[end].attrs.get(FAIR_SHARE):
                ends.append((end, i))
    return ends


def dataplane_errors(topo: Topology) -> list[str]:
    errors = []
    where_attrs = [("top level", topo.attrs, (LINK_CRYPTO,))]
    where_attrs += [(f"node {n.name}", n.attrs, (FAIR_SHARE,)) for n in topo.nodes.values()]
    where_attrs += [(f"link {link.name}", link.attrs, (LINK_CRYPTO, FAIR_SHARE)) for link in topo.links]
    for where, attrs, keys in where_attrs:
        for key in keys:
            if key in attrs and not isinstance(attrs[key], bool):
                errors.append(f"{where}: attrs: {key}: expected true or false, got {attrs[key]!r}")
    if errors:
        return errors
    leased = set() if lease_errors(topo) else {lease.link_index for lease in declared_leases(topo)}
    for end, i in fair_share_ends(topo):
        link = topo.links[i]
        if not link.params_from(end).rate_bps:
            errors.append(f"link {link.name}: fair_share on {end}'s side needs a rate leaving {end} "
                          f"(the capacity it shares)")
        if i in leased:
            errors.append(f"link {link.name}: fair_share and bandwidth leases on one link: the leases schedule it")
    return errors
