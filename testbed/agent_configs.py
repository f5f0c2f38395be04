"""Topology + run state -> one agent config per node (the JSON each `python -m node.agent` reads).

The run state supplies what building the mesh decided (the seed, each link's interface names and underlay
addresses, the routing mode); the topology supplies the rest: peers (with link encryption on or off), emulated
link parameters, static paths or route-server settings, fair-share links and bandwidth leases (testbed/topology/leases.py declares them; here they become the agents'
"leases" sections). Node keys derive from the run seed, so a node has the same identity every time it starts.
"""
from __future__ import annotations

import functools
from pathlib import Path

from node.cjdns.keys import Identity
from node.cjdns.paths import path_entry, static_paths
from node.leases.table import FREE, Lease
from node.leases.tc_plan import htb_plan
from node.tun_switch.lease_plane import AGENT_PACE
from testbed.topology.dataplane import fair_share_ends, link_crypto
from testbed.topology.leases import LAST_INTERFACE, ORIGIN_ATTR, declared_leases, holder_identity
from testbed.topology.model import Topology

AGENT_UDP_PORT = 7100


class ConfigError(ValueError):
    """The topology cannot be turned into agent configs (e.g. a node with more links than it can number)."""


@functools.lru_cache(maxsize=None)
def _identity(seed: bytes, index: int) -> Identity:
    # derivation retries until the address starts with fc (about 256 tries): worth deriving once per node
    return Identity.from_seed(seed, index)


def identity(topo: Topology, seed, node: str) -> Identity:
    """The node's keys, derived from the run seed (the same every time the node starts)."""
    return _identity(str(seed).encode(), list(topo.nodes).index(node))


def switch_index(k: int) -> int:
    """The switch interface of a node's k-th link: 0, 2, 3, ... (1 is the node's own router). A node with more than
    256 links switches with a wider scheme (node/cjdns/labels.py scheme_for_interfaces)."""
    return 0 if k == 0 else k + 1


def agent_configs(topo: Topology, state: dict, run_dir: Path) -> dict[str, dict]:
    """{node: agent config}; ``state`` is the run journal (seed, links, routing, leases_started_at)."""
    ids = {n: identity(topo, state["seed"], n) for n in topo.nodes}
    peers = {n: [] for n in topo.nodes}
    adjacency = {n: {} for n in topo.nodes}
    for rec, link in zip(state["links"], topo.links):
        for me, other, my_if, my_addr, other_addr in ((rec["a"], rec["b"], rec["a_if"], rec["a_addr"], rec["b_addr"]),
                                                      (rec["b"], rec["a"], rec["b_if"], rec["b_addr"], rec["a_addr"])):
            index = switch_index(len(peers[me]))
            peers[me].append({"switch_index": index, "ifname": my_if, "local_addr": my_addr,
                              "peer_addr": other_addr, "peer_public_key": ids[other].pubkey_text,
                              "peer_name": other, "link_crypto": link_crypto(topo, link)})
            adjacency[me][other] = index
    route_servers = state.get("routing") == "route-server"
    holder_keys = _lease_holder_keys(topo, state["seed"]) if route_servers else {}
    configs = {}
    for n in topo.nodes:
        d = run_dir / "nodes" / n
        paths = {}  # with route servers, learned from them, the PKT way
        if not route_servers:
            paths = {ids[dest].ip6_text: path_entry(ids[dest].public_key, label, via)
                     for dest, (label, via) in static_paths(adjacency, n).items()}
        emulation = {}
        for rec, link in zip(state["links"], topo.links):
            for end, params in ((rec["a"], link.ab), (rec["b"], link.ba)):
                if end == n and params.emulated():
                    emulation[rec["a_if"] if end == rec["a"] else rec["b_if"]] = params.emulation_dict()
        configs[n] = {"node": n, "private_key": ids[n].private_key.hex(),
                      "control_socket": str(d / "agent.sock"), "log_file": str(d / "agent.log"),
                      "state_dir": str(d),
                      "tun": {"ifname": "tun0"}, "udp_port": AGENT_UDP_PORT, "peers": peers[n],
                      "paths": paths, "link_emulation": emulation}
        if route_servers:
            configs[n]["route_server"] = _route_server_settings(topo, n, ids, holder_keys)
    for node, i in fair_share_ends(topo):
        rec, link = state["links"][i], topo.links[i]
        ifname = rec["a_if"] if node == rec["a"] else rec["b_if"]
        # paced under the kernel's HTB of the same rate, like the lease plane: its queues, not HTB's FIFO, hold
        # the backlog
        rate = round(link.params_from(node).rate_bps * AGENT_PACE)
        configs[node].setdefault("fair_share", {"links": {}})["links"][ifname] = {"rate_bps": rate}
    _add_leases(topo, state, configs, adjacency)
    return configs


def _lease_holder_keys(topo: Topology, seed) -> dict:
    """{isp: its lease holder key} for every isp that holds a declared lease."""
    held = {lease.holder_isp for lease in declared_leases(topo) if lease.holder_isp is not None}
    return {isp: holder_identity(seed, isp).pubkey_text for isp in sorted(held)}


def announce_interval_s(nodes: int) -> float:
    """Every node re-announces at most this far apart (3/4 of it on average, node/route_server/client.py; a change
    of its peers is announced at once): 2 s on small meshes, about 25 announcements a second in all on big ones
    (each server takes them all, its own clients' and the others' passed on), which keeps the idle mesh's own
    traffic small."""
    return max(2.0, nodes / 19)


def _route_server_settings(topo: Topology, node: str, ids: dict, holder_keys: dict) -> dict:
    """A node uses its Cloud ISP's route servers (any, if its ISP has none) and asks them for paths over its ISP's
    leases; route servers federate with those of other ISPs and share link state with the others of their own."""
    servers = topo.nodes_with_role("route_server")
    isp = topo.nodes[node].isp
    own = [s for s in servers if topo.nodes[s].isp == isp] or servers
    key = ids[node].pubkey_text
    settings = {"serve": node in servers, "allowed": [ids[s].pubkey_text for s in own],
                "announce_interval_s": announce_interval_s(len(topo.nodes)), "hunt_interval_s": 0.5,
                "query_timeout_s": 1}
    if isp in holder_keys:
        settings["lease_holders"] = [holder_keys[isp]]
    if node in servers:
        settings["same_isp"] = [ids[s].pubkey_text for s in own if ids[s].pubkey_text != key]
        settings["federation"] = [ids[s].pubkey_text for s in servers if s not in own and ids[s].pubkey_text != key]
    return settings


# --- bandwidth leases -------------------------------------------------------------------------------------------

def lease_sections(topo: Topology, links_state: list[dict], seed, started_at: float) -> tuple[dict, dict]:
    """({node: agent "leases" section}, {node: {neighbour: [(lease, interface)]}}) for a mesh.
    ``links_state``: the run's link records (a, b, a_if, b_if), in topology order.

    Both ends of a leased link get the lease with the same UDP port and an interface number of their own
    (counting down from 256, clear of the peer links' 0, 2, 3, ...)."""
    sections, lease_ifaces = {}, {}
    next_if = {}
    for lease in declared_leases(topo):
        link = topo.links[lease.link_index]
        ends = (link.a, link.b)
        rec = links_state[lease.link_index]
        holder = lease.holder_key or holder_identity(seed, lease.holder_isp).pubkey_text
        for end in ends:
            ifname = rec["a_if"] if end == rec["a"] else rec["b_if"]
            index = next_if.get(end, LAST_INTERFACE)
            next_if[end] = index - 1
            sec = sections.setdefault(end, {"links": {}})
            ls = sec["links"].setdefault(ifname, {"leases": []})
            rate = link.params_from(end).rate_bps
            if rate:
                ls["capacity_bps"] = rate
            ls["leases"].append({
                "id": lease.id, "interface": index, "udp_port": lease.udp_port,
                "guarantee_bps": lease.guarantee_bps,
                "max_priority_bandwidth": lease.max_priority_bandwidth,
                "clear_customer_bit": lease.clear_customer_bit,
                "deprioritize_non_customer": lease.deprioritize_non_customer, "holder": holder,
                "expires_at": None if lease.term_s is None else started_at + lease.term_s})
            other = ends[1] if end == ends[0] else ends[0]
            lease_ifaces.setdefault(end, {}).setdefault(other, []).append((lease, index))
    return sections, lease_ifaces


def _add_leases(topo: Topology, state: dict, configs: dict, adjacency: dict) -> None:
    """Put the leases into the agents' configs; with static routing a node's paths go over the leases its isp
    holds (with route servers, the servers hand out such paths: the agents announce their leases and name their
    isp's holder key in path queries). ``adjacency``: {node: {neighbour: switch index}}."""
    if not any(isp.leases for isp in topo.isps.values()) \
            and not any(ORIGIN_ATTR in n.attrs for n in topo.nodes.values()):
        return
    sections, lease_ifaces = lease_sections(topo, state["links"], state["seed"], state["leases_started_at"])
    for node, nbrs in lease_ifaces.items():
        taken = set(adjacency[node].values()) & {index for held in nbrs.values() for _, index in held}
        if taken:
            raise ConfigError(f"node {node}: {len(adjacency[node])} links and its leases need the same interface "
                              f"numbers ({min(taken)}..): leases count down from {LAST_INTERFACE}, links up from 0")
    for node in topo.nodes.values():
        origin = node.attrs.get(ORIGIN_ATTR)
        if origin is not None:
            sections.setdefault(node.name, {"links": {}})["origin"] = dict(origin)
    for node, sec in sections.items():
        configs[node]["leases"] = sec
    if state.get("routing") == "route-server":
        return
    ids = {n: Identity.from_private_key(configs[n]["private_key"]) for n in configs}
    for src, cfg in configs.items():
        isp = topo.nodes[src].isp
        if isp is None:
            continue
        adj = {n: dict(nbrs) for n, nbrs in adjacency.items()}
        changed = False
        for node, nbrs in lease_ifaces.items():
            for other, held in nbrs.items():
                for lease, index in held:
                    if lease.holder_isp == isp:
                        adj[node][other] = index
                        changed = True
                        break
        if changed:
            cfg["paths"] = {ids[d].ip6_text: path_entry(ids[d].public_key, label, via)
                            for d, (label, via) in static_paths(adj, src).items()}


def htb_plans(topo: Topology) -> dict:
    """{(node, link number): HTB plan (tc_plan.htb_plan)} for every link end with a rate and leases. Slots follow
    the order the leases enter the agent's table (topology order, as in lease_sections)."""
    if not any(isp.leases for isp in topo.isps.values()):
        return {}
    by_link = {}
    for lease in declared_leases(topo):
        by_link.setdefault(lease.link_index, []).append(lease)
    plans = {}
    for i, mine in by_link.items():
        link = topo.links[i]
        objs = [Lease(FREE, "x", slot=0)] + [Lease(l.id, "x", guarantee_bps=l.guarantee_bps, slot=n + 1)
                                             for n, l in enumerate(mine)]
        for node in (link.a, link.b):
            rate = link.params_from(node).rate_bps
            if rate:
                plans[(node, i)] = htb_plan(rate, objs)
    return plans
