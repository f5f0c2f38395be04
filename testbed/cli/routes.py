"""`pktlab routes NODE` and `pktlab rs [NODE]`: what a node learned from its route server, and the route servers."""
from __future__ import annotations

import json


from node.agent.control_client import AgentError
from testbed import runs
from testbed.cli.common import attach, out, run_option
from testbed.console import data_table, styled


def _mesh(args):
    mesh = attach(args)
    if mesh.run.state.get("routing") != "route-server":
        raise runs.RunError(f"run {mesh.run.name} routes statically (its topology has no route_server nodes)")
    return mesh


def _names(mesh) -> dict[str, str]:
    return {ip6: n for n, ip6 in mesh.run.state.get("addresses", {}).items()}


def cmd_routes(args):
    mesh = _mesh(args)
    if args.node not in mesh.topo.nodes:
        raise runs.RunError(f"run {mesh.run.name} has no node {args.node!r}")
    try:
        info = mesh.agent(args.node).call("routes", timeout=5)
    except (OSError, AgentError, ValueError) as e:
        raise runs.RunError(f"{args.node}: agent did not answer: {e}") from None
    if args.json:
        print(json.dumps(info, indent=1))
        return
    names = _names(mesh)
    rs = info.get("route_server")
    out.print(f"{args.node} uses route server {names.get(rs, rs) or '(none found yet)'} "
              f"via label {info.get('route_server_label')}")
    t = data_table("destination", "address", "label", "hops", title=f"paths cached by {args.node}")
    for ip6, entry in sorted(info.get("paths", {}).items(), key=lambda kv: names.get(kv[0], kv[0])):
        dst = names.get(ip6, "?")
        hops = " -> ".join([h[0] for h in mesh.route(args.node, dst)] + [dst]) if dst in mesh.topo.nodes else ""
        t.add_row(dst, ip6, entry["label"], hops)
    out.print(t)
    c, a = info.get("counters", {}), info.get("agent_counters", {})
    out.print(f"look-ups answered {c.get('path_found', 0)}, failures reported {c.get('failures_reported', 0)}, "
              f"re-asked after the other end moved {a.get('return_path_moves', 0)}, "
              f"silent paths {a.get('silent_paths_reported', 0)}, server failovers {c.get('failovers', 0)}")


def cmd_rs(args):
    mesh = _mesh(args)
    all_servers = mesh.topo.nodes_with_role("route_server")
    if args.node and args.node not in all_servers:
        what = "is not a route server" if args.node in mesh.topo.nodes else "is no node of it"
        raise runs.RunError(f"{args.node} {what} in run {mesh.run.name}; its route servers: "
                            f"{', '.join(all_servers)}")
    servers = [args.node] if args.node else all_servers
    rows = {}
    for n in servers:
        try:
            rows[n] = mesh.agent(n).call("rs_status", timeout=5)
        except (OSError, AgentError, ValueError) as e:
            if args.node:
                raise runs.RunError(f"{n}: its agent did not answer rs_status: {e}") from None
            rows[n] = {"error": str(e)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    t = data_table("route server", "ISP", "graph nodes", "edges", "announcements", "forwarded in", "rejected by reason",
              "queries (path found/not)")
    for n, st in rows.items():
        if "error" in st:
            t.add_row(n, mesh.topo.nodes[n].isp or "-", styled((st['error'], "red")), "", "", "", "", "")
            continue
        c = st.get("counters", {})
        rejected = ", ".join(f"{k} {v}" for k, v in st.get("rejected", {}).items()) or "none"
        t.add_row(n, mesh.topo.nodes[n].isp or "-", str(st.get("nodes")), str(st.get("edges")),
                  str(st.get("announcements_accepted")), str(st.get("announcements_forwarded_in")), rejected,
                  f"{c.get('path_found', 0)}/{c.get('path_not_found', 0)}")
    out.print(t)


def register(add):
    sp = add("routes", cmd_routes, "a node's route server and the paths it learned, hop by hop")
    run_option(sp)
    sp.add_argument("node")
    sp.add_argument("--json", action="store_true")
    sp = add("rs", cmd_rs, "route servers: graph size, announcements, rejections by reason, queries")
    run_option(sp)
    sp.add_argument("node", nargs="?", help="one route server (default: all)")
    sp.add_argument("--json", action="store_true")
