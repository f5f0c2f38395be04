"""Route server benchmark: `python -m bench.route_server`.

On the imported Freifunk Aachen mesh (meshnet-lab, ~2000 nodes) every node gets an identity, V358 interface
numbers and a signed announcement (peers, link quality from the link's TQ). Everything runs in-process through
the real message layer (`RouteServerService.handle` on bencoded messages):

* announcement ingest rate: reset announcements, then a second round of incremental ones (graph kept up to date);
  baseline in the same run: bare Ed25519 verification of the same announcements (the floor of the work);
* path query latency (p50/p99) for random pairs of the largest component, answered with spliced labels;
  baseline in the same run: networkx BFS shortest path (no weights, no labels) on the same graph;
* every answer is checked by walking it through the V358 switch logic of the topology: one label, or for a path
  that does not fit the 59 usable label bits (this mesh has hubs with up to 138 links: 10-bit directors) a label per
  waypoint segment (node/cjdns/waypoints.py), each segment ending at the node the answer names.

Over the mesh, smaller graph: a 5x5 grid of real data-plane Nodes (node.tun_switch.node: switches, CryptoAuth
sessions) joined by in-memory links, one route-server node, every node's path provider the route-server client
(node/tun_switch/route_server_plane.py). Measured: simulated time until every node has a route server and the
server the whole grid, and the wall-clock round trip of a path query (client -> sessions and switches -> route
server -> back), p50/p99; baseline in the same run: the same query handled in-process.

Writes bench/results/route_server.json.
"""
from __future__ import annotations
from testbed.paths import MESHNET_LAB

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import networkx as nx

from node.route_server import announcement as A
from node.route_server import messages as M
from node.route_server.service import RouteServerService
from node.cjdns import keys
from node.cjdns.keys import Identity
from node.cjdns.labels import V358, one_hop_label
from node.cjdns.switch import Switch
from node.cjdns.switch_header import SwitchHeader

GRAPH = MESHNET_LAB / "freifunk" / "freifunk-aachen.json"
RESULTS = Path(__file__).resolve().parent / "results" / "route_server.json"
T0 = 1_700_000_000_000
QUERIES = 1000


def _interfaces(topo):
    """{node: {neighbour: interface index}}: 0, 2, 3, ... in neighbour order (1 is the router)."""
    out = {}
    for name in topo.nodes:
        nbrs = sorted(set(topo.neighbors(name)))
        idx = [0] + list(range(2, len(nbrs) + 1))
        out[name] = dict(zip(nbrs, idx))
    return out


def _tq(link, a):
    tq = link.attrs.get("source_tq" if link.a == a else "target_tq")
    return float(tq) if isinstance(tq, (int, float)) and tq > 0 else 1.0


def build(topo, server: Identity):
    names = sorted(topo.nodes)
    ids = {n: Identity.from_seed(b"bench-rs", i) for i, n in enumerate(names)}
    ifaces = _interfaces(topo)
    links = {}
    for link in topo.links:
        links[(link.a, link.b)] = links[(link.b, link.a)] = link

    def announcement(n, ts, reset):
        ents = [A.VersionEntity(22), A.EncodingSchemeEntity(V358)]
        for peer, idx in ifaces[n].items():
            ours = one_hop_label(idx)
            ents.append(A.PeerEntity(ids[peer].ip6, one_hop_label(ifaces[peer][n]), peer_num=ours,
                                     encoding_form=V358.get_form_num(ours)))
            loss = int((1 - _tq(links[(n, peer)], n)) * 1_000_000)
            ents.append(A.LinkQualityEntity(ours, rtt_us=2000, loss_ppm=loss, capacity_kbps=50_000))
        return A.Announcement.build(ids[n], server.ip6, ts, tuple(ents), reset=reset).raw

    return names, ids, ifaces, announcement


def walk(topo_ifaces, back, switches, src, label):
    """Forward a packet from src along label through the V358 switches; the node that receives it.
    back: {node: {interface index: neighbour}}."""
    name, iface, pkt = src, 1, SwitchHeader(label).pack()
    for _ in range(64):
        [(dest, pkt)] = switches[name].receive(iface, pkt)
        if dest == 1:
            return name
        peer = back[name][dest]
        name, iface = peer, topo_ifaces[peer][name]
    return None


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(graph_path=GRAPH, queries=QUERIES, seed=1):
    from testbed import topology
    topo = topology.load(str(graph_path), allow_disconnected=True)
    server = Identity.from_seed(b"bench-rs-server", 0)
    t = time.perf_counter()
    names, ids, ifaces, announcement = build(topo, server)
    setup_ids_s = time.perf_counter() - t
    svc = RouteServerService(server.public_key)

    t = time.perf_counter()
    anns = [announcement(n, T0, True) for n in names]
    build_s = time.perf_counter() - t
    msgs = [M.pack_query(M.Query("ann", b"a%d" % i, ann=raw)) for i, raw in enumerate(anns)]

    # baseline: bare signature checks of the same announcements
    t = time.perf_counter()
    for raw in anns:
        assert keys.verify(raw[64:96], raw[64:], raw[:64])
    verify_s = time.perf_counter() - t

    t = time.perf_counter()
    for n, msg in zip(names, msgs):
        reply = M.parse_reply(svc.handle(msg, ids[n].public_key, T0))
        assert reply.error is None, reply.error
    ingest_s = time.perf_counter() - t

    t = time.perf_counter()
    g = svc.core.graph()
    graph_build_s = time.perf_counter() - t

    # second round: incremental announcements while the graph is live
    again = [M.pack_query(M.Query("ann", b"b%d" % i, ann=announcement(n, T0 + 5000, False)))
             for i, n in enumerate(names)]
    t = time.perf_counter()
    for n, msg in zip(names, again):
        assert M.parse_reply(svc.handle(msg, ids[n].public_key, T0 + 5000)).error is None
    ingest2_s = time.perf_counter() - t

    und = g.to_undirected(as_view=True)
    giant = max(nx.connected_components(und), key=len)
    ip6_to_name = {ids[n].ip6: n for n in names}
    members = sorted(ip6_to_name[x] for x in giant)
    rng = random.Random(seed)
    pairs = [tuple(rng.sample(members, 2)) for _ in range(queries)]
    switches = {}
    for n, nb in ifaces.items():
        sw = Switch()
        for idx in nb.values():
            sw.add_interface(idx)
        switches[n] = sw
    back = {n: {i: p for p, i in nb.items()} for n, nb in ifaces.items()}

    key_to_name = {ids[n].public_key: n for n in names}
    lat, cpu, wrong, missing, hops, waypointed = [], [], 0, 0, [], 0
    for i, (a, b) in enumerate(pairs):
        q = M.pack_query(M.Query("gr", b"g%d" % i, src=ids[a].ip6, tar=ids[b].ip6))
        t, c = time.perf_counter(), time.thread_time()
        raw = svc.handle(q, ids[a].public_key, T0 + 6000)
        lat.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        r = M.parse_reply(raw)
        segments = r.waypoints or r.nodes          # a path longer than one label comes as waypoint segments
        if not segments:
            missing += 1
            continue
        waypointed += bool(r.waypoints)
        at = a
        for seg in segments:                       # each segment ends at the node whose key it names
            at = walk(ifaces, back, switches, at, seg.label)
            if at is None or at != key_to_name.get(bytes(seg.public_key)):
                break
        if at != b:
            wrong += 1
        else:
            hops.append(len(svc.core.route(ids[a].ip6, ids[b].ip6).nodes) - 1)

    base, base_cpu = [], []
    for a, b in pairs:
        t, c = time.perf_counter(), time.thread_time()
        nx.shortest_path(g, ids[a].ip6, ids[b].ip6)
        base.append(time.perf_counter() - t)
        base_cpu.append(time.thread_time() - c)

    return {
        "graph": str(graph_path),
        "nodes": len(names), "links": len(topo.links),
        "graph_nodes": g.number_of_nodes(), "graph_edges": g.number_of_edges(), "largest_component": len(giant),
        "identity_setup_s": round(setup_ids_s, 2), "announcement_build_s": round(build_s, 2),
        "announcement_bytes_mean": round(statistics.mean(len(a) for a in anns), 1),
        "ingest_reset_per_s": round(len(anns) / ingest_s, 1),
        "ingest_incremental_per_s": round(len(anns) / ingest2_s, 1),
        "verify_only_per_s": round(len(anns) / verify_s, 1),
        "graph_build_ms": round(graph_build_s * 1000, 2),
        "queries": queries, "query_wrong": wrong, "query_no_label": missing, "query_waypoints": waypointed,
        "route_counters": {k: v for k, v in svc.core.counters.items() if k.startswith("route_")},
        "query_p50_ms": round(pct(lat, 50) * 1000, 3), "query_p99_ms": round(pct(lat, 99) * 1000, 3),
        "query_mean_hops": round(statistics.mean(hops), 2) if hops else None,
        "bfs_baseline_p50_ms": round(pct(base, 50) * 1000, 3), "bfs_baseline_p99_ms": round(pct(base, 99) * 1000, 3),
        # CPU time of the same queries: what a busy machine's descheduling adds to the wall time is not in it
        "query_cpu_p50_ms": round(pct(cpu, 50) * 1000, 3), "query_cpu_p99_ms": round(pct(cpu, 99) * 1000, 3),
        "bfs_cpu_p50_ms": round(pct(base_cpu, 50) * 1000, 3), "bfs_cpu_p99_ms": round(pct(base_cpu, 99) * 1000, 3),
        "load_average": round(os.getloadavg()[0], 2),
        "rejected": svc.status()["rejected"],
    }


def run_mesh(n=5, queries=200, seed=2):
    """The grid over in-memory links; None when the data plane has no route-server hooks."""
    from node.agent.config import parse_config
    from node.tun_switch.node import Node
    from node.tun_switch.memory_links import ManualLoop, MemoryLink, MemoryWire
    from node.tun_switch.route_server_plane import RouteServerGlue, parse_settings
    if not hasattr(Node, "send_content_to"):
        return None
    loop, wire = ManualLoop(), MemoryWire()
    names = [f"{r}{c}" for r in range(n) for c in range(n)]
    ids = {name: Identity.from_seed(b"bench-rs-mesh", i) for i, name in enumerate(names)}
    server = names[len(names) // 2]
    nodes, glues = {}, {}
    for name in names:
        cfg = parse_config({"node": name, "private_key": ids[name].private_key.hex(), "control_socket": "/tmp/x",
                            "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})
        node = Node(cfg, loop, clock=loop.clock)
        node.deliver = lambda packet: None
        nodes[name] = node
        settings = parse_settings({"serve": name == server, "allowed": [ids[server].pubkey_text],
                                   "announce_interval_s": 1, "hunt_interval_s": 0.5})
        glues[name] = RouteServerGlue(node, settings, clock_ms=lambda: T0 + int(loop.now * 1000))
        glues[name].install(loop)
    for r in range(n):
        for c in range(n):
            for dr, dc, mine, theirs in ((0, 1, 0, 2), (1, 0, 3, 4)):
                if r + dr < n and c + dc < n:
                    a, b = f"{r}{c}", f"{r + dr}{c + dc}"
                    wire.join(nodes[a], MemoryLink(wire, a, mine, f"to{b}", b, ids[b].public_key),
                              nodes[b], MemoryLink(wire, b, theirs, f"to{a}", a, ids[a].public_key))

    def step():
        loop.now += 0.1
        if int(round(loop.now * 10)) % 10 == 0:
            for node in nodes.values():
                node.housekeeping()
        wire.pump()
        for g in glues.values():
            g.tick()
        wire.pump()

    for node in nodes.values():
        node.housekeeping()
    started, status = loop.now, None
    while loop.now - started < 60:
        step()
        status = glues[server].service.status()
        if status["nodes"] == len(names) and all(g.client.server for g in glues.values()):
            break
    converged_s = loop.now - started
    rng = random.Random(seed)
    rtt, local, unanswered = [], [], 0
    for _ in range(queries):
        a, b = rng.sample([x for x in names if x != server], 2)
        client = glues[a].client
        client.flush_cache()
        client.lookup(ids[b].ip6)
        t = time.perf_counter()
        for _ in range(20):
            glues[a].tick()            # sends the query
            wire.pump()                     # through the switches and sessions to the server's backlog
            glues[server].tick()            # the server serves its backlog (the real loop: a call_later(0))
            wire.pump()                     # the answer back
            if client.lookup(ids[b].ip6) is not None:
                break
        else:
            unanswered += 1
        rtt.append(time.perf_counter() - t)
        q = M.pack_query(M.Query("gr", b"x", src=ids[a].ip6, tar=ids[b].ip6))
        t = time.perf_counter()
        glues[server].service.handle(q, ids[a].public_key, T0)
        local.append(time.perf_counter() - t)
    return {"mesh_nodes": len(names), "mesh_converged_simulated_s": round(converged_s, 1),
            "mesh_graph_edges": status["edges"], "mesh_queries": queries, "mesh_query_unanswered": unanswered,
            "mesh_query_rtt_p50_ms": round(pct(rtt, 50) * 1000, 3), "mesh_query_rtt_p99_ms": round(pct(rtt, 99) * 1000, 3),
            "mesh_query_local_p50_ms": round(pct(local, 50) * 1000, 3),
            "mesh_query_local_p99_ms": round(pct(local, 99) * 1000, 3)}


def main() -> int:
    from testbed.console import make_console
    from rich.table import Table

    t = time.perf_counter()
    r = run()
    mesh = run_mesh()
    if mesh:
        r.update(mesh)
    r["total_s"] = round(time.perf_counter() - t, 1)
    table = Table(title=f"Route server, in-process: {Path(r['graph']).name} ({r['nodes']} nodes, {r['links']} links;"
                        f" graph {r['graph_nodes']} nodes / {r['graph_edges']} directed edges)")
    for col in ("measurement", "value", "baseline (same run)", "ratio"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    table.add_row("announcement ingest (reset)", f"{r['ingest_reset_per_s']:.0f} ann/s",
                  f"{r['verify_only_per_s']:.0f} ann/s (Ed25519 verify only)",
                  f"{r['ingest_reset_per_s'] / r['verify_only_per_s']:.2f}x")
    table.add_row("announcement ingest (incremental, live graph)", f"{r['ingest_incremental_per_s']:.0f} ann/s",
                  f"{r['verify_only_per_s']:.0f} ann/s (Ed25519 verify only)",
                  f"{r['ingest_incremental_per_s'] / r['verify_only_per_s']:.2f}x")
    table.add_row("graph build (first query)", f"{r['graph_build_ms']:.1f} ms", "-", "-")
    table.add_row("path query p50", f"{r['query_p50_ms']:.3f} ms", f"{r['bfs_baseline_p50_ms']:.3f} ms (nx BFS)",
                  f"{r['query_p50_ms'] / r['bfs_baseline_p50_ms']:.1f}x")
    table.add_row("path query p99", f"{r['query_p99_ms']:.3f} ms", f"{r['bfs_baseline_p99_ms']:.3f} ms (nx BFS)",
                  f"{r['query_p99_ms'] / r['bfs_baseline_p99_ms']:.1f}x")
    for p in ("p50", "p99"):
        table.add_row(f"path query {p}, CPU time", f"{r[f'query_cpu_{p}_ms']:.3f} ms",
                      f"{r[f'bfs_cpu_{p}_ms']:.3f} ms (nx BFS)", f"{r[f'query_cpu_{p}_ms'] / r[f'bfs_cpu_{p}_ms']:.1f}x")
    answered = r["queries"] - r["query_no_label"]
    table.add_row("answered, label delivered through switches", f"{answered - r['query_wrong']}/{answered}",
                  "-", f"mean {r['query_mean_hops']} hops")
    table.add_row("answered with waypoints (longer than one label)", f"{r['query_waypoints']}/{r['queries']}", "-",
                  "-")
    table.add_row("no answer", f"{r['query_no_label']}/{r['queries']}", "-", "-")
    make_console(width=140).print(table)
    if mesh:
        t2 = Table(title=f"Over the mesh: {mesh['mesh_nodes']}-node grid of data-plane Nodes (in-memory links, "
                         f"CryptoAuth sessions), one route server")
        for col in ("measurement", "value", "baseline (same run)", "ratio"):
            t2.add_column(col, justify="left" if col == "measurement" else "right")
        t2.add_row("converged (server knows all, all nodes use it)", f"{mesh['mesh_converged_simulated_s']} s "
                   "simulated", "-", "-")
        t2.add_row("path queries answered", f"{mesh['mesh_queries'] - mesh['mesh_query_unanswered']}/"
                   f"{mesh['mesh_queries']}", "-", "-")
        t2.add_row("path query round trip p50", f"{mesh['mesh_query_rtt_p50_ms']:.3f} ms",
                   f"{mesh['mesh_query_local_p50_ms']:.3f} ms (in-process)",
                   f"{mesh['mesh_query_rtt_p50_ms'] / mesh['mesh_query_local_p50_ms']:.1f}x")
        t2.add_row("path query round trip p99", f"{mesh['mesh_query_rtt_p99_ms']:.3f} ms",
                   f"{mesh['mesh_query_local_p99_ms']:.3f} ms (in-process)",
                   f"{mesh['mesh_query_rtt_p99_ms'] / mesh['mesh_query_local_p99_ms']:.1f}x")
        make_console(width=140).print(t2)
    else:
        print("over-the-mesh part skipped: this data plane has no route-server hooks")
    print(f"setup: identities {r['identity_setup_s']} s, announcements {r['announcement_build_s']} s "
          f"(mean {r['announcement_bytes_mean']} B); total {r['total_s']} s; load average {r['load_average']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["query_wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
