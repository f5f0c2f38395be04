"""What the live view shows, read from a running mesh: the static map (nodes, links, layout), then on every tick
the live state (links up or down and their load, active faults, each agent's status, new events) and, for nodes
someone looks at, the node's panel (peers, paths with their labels decoded hop by hop, leases and meters,
route-server state, and whatever else its agent reports).

Everything here is blocking (agent control sockets, files); the server runs it in a worker thread.

Where a value comes from:

* a link is *down* when an active fault takes it down (link-down, flap, partition: known at once) or when both its
  agents report the peer link dead (no answer to link pings for 3.5 s: how hidden faults show);
* its load is the busier direction's transmit rate (the monitor's samples in counters.jsonl, one a second) over
  that direction's configured rate; unshaped links are scaled logarithmically between 1 kbit/s and 100 Mbit/s;
* a node is *down* when its agent does not answer (crash, pause) or an active fault stops it.
"""
from __future__ import annotations

import json
import math
import time

import networkx as nx

from node.agent.control_client import AgentError
from node.cjdns.labels import label_text
from testbed import faults as F
from testbed.events import FILENAME as EVENTS_FILE
from testbed.faults.base import end_of
from testbed.monitor import COUNTERS_FILE, want_counters
from testbed.ui.layout import layout

AGENT_TIMEOUT = 1.0
BACKLOG = 200                 # events sent to a page when it connects
PANEL_PATHS = 24              # paths a node's panel shows (the nearest destinations)
KNOWN_STATUS = {"ok", "node", "ip6", "public_key", "uptime_s", "healthy", "peers_up", "peers", "tun", "mtu",
                "clock_offset_s"}


class Tail:
    """New complete lines of an append-only JSON-lines file, from where the last read stopped."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue       # a line a killed writer left half-written: the event log's readers skip it too
            if isinstance(item, dict):
                out.append(item)
        return out


def load_fraction(bps: float, rate_bps: float | None) -> float:
    """0..1: how busy a link direction is."""
    if bps <= 0:
        return 0.0
    if rate_bps:
        return min(1.0, bps / rate_bps)
    return max(0.0, min(1.0, math.log10(bps / 1e3) / 5))


class Collector:
    """The live view's reader of one run (a testbed.mesh.Mesh)."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.events = Tail(mesh.run.path(EVENTS_FILE))
        self.counters = Tail(mesh.run.path(COUNTERS_FILE))
        self.last_tx: dict[tuple[str, str], tuple[float, float]] = {}    # (node, ifname) -> (ts, tx_bytes)
        self.bps: dict[tuple[str, str], float] = {}
        self.links = mesh.run.state.get("links", [])
        self.link_of_end = {}
        for i, rec in enumerate(self.links):
            self.link_of_end[(rec["a"], rec["a_if"])] = (i, "ab")
            self.link_of_end[(rec["b"], rec["b_if"])] = (i, "ba")

    # -- the map ----------------------------------------------------------------------------------------------
    def topology(self) -> dict:
        topo, state = self.mesh.topo, self.mesh.run.state
        pos = layout(topo, state.get("seed") or 1)
        nodes = [{"name": n, "x": pos[n][0], "y": pos[n][1], "roles": node.roles, "isp": node.isp,
                  "ip6": state.get("addresses", {}).get(n)} for n, node in topo.nodes.items()]
        links = []
        for i, (link, rec) in enumerate(zip(topo.links, self.links)):
            links.append({"id": i, "a": link.a, "b": link.b, "name": link.name, "a_if": rec["a_if"],
                          "b_if": rec["b_if"], "rate_ab": link.ab.rate_bps, "rate_ba": link.ba.rate_bps,
                          "delay_ms": round((link.ab.delay_s or 0) * 1000, 3)})
        return {"run": self.mesh.run.name, "routing": state.get("routing"), "source": state.get("source"),
                "seed": state.get("seed"), "isps": list(topo.isps), "nodes": nodes, "links": links}

    def backlog(self) -> list[dict]:
        events = self.events.read()
        return events[-BACKLOG:]

    # -- every tick -------------------------------------------------------------------------------------------
    def _call(self, node: str, cmd: str, **args) -> dict | None:
        try:
            return self.mesh.agent(node).call(cmd, timeout=AGENT_TIMEOUT, **args)
        except (OSError, AgentError, ValueError):
            return None

    def _rates(self) -> None:
        want_counters(self.mesh.run.dir)       # the monitor samples them while we read
        for e in self.counters.read():
            node, ifname, d = e.get("node"), e.get("link"), e.get("details") or {}
            tx, ts = d.get("tx_bytes"), e.get("ts")
            if ifname is None or not isinstance(tx, (int, float)) or not isinstance(ts, (int, float)):
                continue
            prev = self.last_tx.get((node, ifname))
            self.last_tx[(node, ifname)] = (ts, tx)
            if prev and ts > prev[0] and tx >= prev[1]:
                self.bps[(node, ifname)] = 8.0 * (tx - prev[1]) / (ts - prev[0])

    def _faults(self) -> tuple[list[dict], set[int], set[str]]:
        """(active faults as the page lists them, links they take down, nodes they stop)."""
        try:
            active = F.active_faults(self.mesh)
        except F.FaultError:
            return [], set(), set()
        listed, down_links, down_nodes = [], set(), set()
        for f in active:
            links = set()
            for i, rec in enumerate(self.links):
                try:
                    if hasattr(f, "downs") and f.downs(self.mesh, end_of(rec, i, rec["a"])):
                        down_links.add(i)
                        links.add(i)
                except F.FaultError:
                    continue
            target = f.target()
            if "--" in str(target) or "->" in str(target):
                a, b = [s for s in str(target).replace("->", "--").split("--")]
                links |= {i for i, rec in enumerate(self.links) if {rec["a"], rec["b"]} == {a, b}}
            if getattr(f, "node", None) and f.kind in ("crash", "pause"):
                down_nodes.add(f.node)
            listed.append({"id": f.id, "kind": f.kind, "description": f.describe(), "links": sorted(links),
                           "node": getattr(f, "node", None) or None, "effect": f.state.get("effect", "")})
        return listed, down_links, down_nodes

    def tick(self) -> dict:
        """The live state: {"ts", "links": [...], "nodes": {...}, "faults": [...], "events": [new events]}."""
        self._rates()
        active, fault_down, stopped = self._faults()
        nodes, peer_up = {}, {}
        for n in self.mesh.topo.nodes:
            st = self._call(n, "status")
            peers = self._call(n, "peers") if st else None
            for p in (peers or {}).get("peers", []):
                peer_up[(n, p["ifname"])] = (p["up"], p.get("rtt_ms"))
            nodes[n] = {"up": st is not None and n not in stopped}
            if st:
                nodes[n].update(peers_up=st.get("peers_up"), peers=st.get("peers"), uptime_s=st.get("uptime_s"),
                                clock_offset_s=st.get("clock_offset_s"),
                                extra={k: v for k, v in st.items() if k not in KNOWN_STATUS})
        links = []
        for i, rec in enumerate(self.links):
            ends = [(rec["a"], rec["a_if"]), (rec["b"], rec["b_if"])]
            alive = [peer_up.get(e, (None, None))[0] for e in ends]
            dead_by_agents = all(a is False for a in alive) or (False in alive and None in alive)
            bps_ab, bps_ba = (self.bps.get(e, 0.0) for e in ends)
            topo_link = self.mesh.topo.links[i]
            load = max(load_fraction(bps_ab, topo_link.ab.rate_bps), load_fraction(bps_ba, topo_link.ba.rate_bps))
            rtt = [peer_up.get(e, (None, None))[1] for e in ends]
            links.append({"id": i, "down": i in fault_down or dead_by_agents, "by_fault": i in fault_down,
                          "bps_ab": round(bps_ab), "bps_ba": round(bps_ba), "load": round(load, 3),
                          "rtt_ms": next((r for r in rtt if r is not None), None),
                          "faults": [f["id"] for f in active if i in f["links"]]})
        return {"ts": time.time(), "links": links, "nodes": nodes, "faults": active, "events": self.events.read()}

    # -- a node's panel ---------------------------------------------------------------------------------------
    def node_panel(self, node: str) -> dict:
        """Everything the page shows about one node. Sections a node does not have are left out; status keys this
        view does not know (a chain height, a miner's rate, ...) are passed on as they are."""
        if node not in self.mesh.topo.nodes:
            return {"node": node, "error": f"no node {node!r} in run {self.mesh.run.name}"}
        st = self._call(node, "status")
        topo_node = self.mesh.topo.nodes[node]
        panel = {"node": node, "roles": topo_node.roles, "isp": topo_node.isp, "ip6": self.mesh.ip6(node)}
        if st is None:
            panel["error"] = "the agent does not answer (crashed, paused or stopped)"
            return panel
        panel["status"] = {k: st[k] for k in ("public_key", "uptime_s", "healthy", "peers_up", "peers",
                                              "clock_offset_s") if k in st}
        panel["extra"] = {k: v for k, v in st.items() if k not in KNOWN_STATUS}
        peers = self._call(node, "peers") or {}
        panel["peers"] = [{"ifname": p["ifname"], "peer": p.get("peer_name"), "label": p.get("label"),
                           "up": p.get("up"), "rtt_ms": p.get("rtt_ms"), "emulation": {
                               k: v for k, v in (p.get("link_emulation") or {}).items() if v}}
                          for p in peers.get("peers", [])]
        panel["paths"] = self._paths(node)
        routes = self._call(node, "routes")
        if routes:
            names = {ip: n for n, ip in self.mesh.run.state.get("addresses", {}).items()}
            rs = routes.get("route_server")
            panel["route_server"] = {"server": names.get(rs, rs), "label": routes.get("route_server_label"),
                                     "candidates": {names.get(ip, ip): c for ip, c in
                                                    (routes.get("candidates") or {}).items()},
                                     "skew_ms": routes.get("skew_ms"), "counters": routes.get("counters", {})}
        rs = self._call(node, "rs_status")
        if rs:
            rs.pop("ok", None)
            panel["serves_routes"] = rs
        leases = self._call(node, "leases")
        if leases:
            panel["leases"] = {
                "leases": [{"link": link, **{k: l.get(k) for k in (
                    "id", "guarantee_bps", "max_priority_bandwidth", "clear_customer_bit",
                    "deprioritize_non_customer", "expired", "expires_in_s")}}
                           for link, ll in (leases.get("links") or {}).items() for l in ll.get("leases", [])],
                "meters": {name: {k: m.get(k) for k in ("packets", "bytes", "meter_priority_kBps", "scale",
                                                          "reprioritized", "customer_bit_cleared")}
                           for name, m in (leases.get("ingress") or {}).items()},
                "egress": {link: {"pace_bps": e.get("pace_bps"), "queued": e.get("queued_packets"),
                                  "sent_bytes_by_lease": e.get("sent_bytes_by_lease"), "drops": e.get("drops")}
                           for link, e in (leases.get("egress") or {}).items()}}
        return panel

    def _paths(self, node: str) -> list[dict]:
        out = []
        g = self.mesh.topo.graph()
        near = sorted((d for d in self.mesh.topo.nodes if d != node),
                      key=lambda d: (nx.shortest_path_length(g, node, d) if nx.has_path(g, node, d) else 1 << 30))
        for dst in near[:PANEL_PATHS]:
            hops = self.mesh.route(node, dst)
            out.append({"dst": dst, "label": label_text(hops[0][2]) if hops else None,
                        "hops": [h[0] for h in hops] + [dst] if hops else []})
        return out


