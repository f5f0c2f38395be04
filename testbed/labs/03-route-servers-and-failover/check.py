"""Lab 3: crash the route server r1; its clients fail over to r4, and r6's path to r2 moves off r1."""
from node.agent.control_client import AgentError
from testbed import faults as F
from testbed.labs.checking import Check, missing, node_list
from testbed.waiting import wait_until

KILLED, OTHER, SRC, DST = "r1", "r4", "r6", "r2"


def server_of(mesh, node):
    try:
        ip6 = mesh.agent(node).call("routes", timeout=2).get("route_server")
    except (OSError, AgentError, ValueError):
        return None
    return next((n for n in mesh.topo.nodes if mesh.ip6(n) == ip6), None) if ip6 else None


def route(mesh, src, dst):
    mesh.ping(src, dst, count=2)          # a fresh answer from the route server, if the old path is gone
    return [h[0] for h in mesh.route(src, dst)] + [dst]


def setup(lab):
    mesh = lab.mesh
    others = [n for n in mesh.topo.nodes if n != KILLED]
    wait_until(lambda: all(server_of(mesh, n) for n in others), 20)
    lab.private = {"users": sorted(n for n in others if server_of(mesh, n) == KILLED),
                   "path_before": route(mesh, SRC, DST)}


def check(lab):
    mesh = lab.mesh
    results = []
    crashed = [f for f in F.active_faults(mesh) if f.kind == "crash" and f.node == KILLED]
    if not crashed:
        return [Check(f"{KILLED} killed", False, f"no crash fault on {KILLED} is active",
                      f"look first (steps 1 and 2), then: pktlab fault crash {KILLED}")] + missing(
            lab, "moved", "server", "path")
    results.append(Check(f"{KILLED} killed", True, f"{crashed[0].id}: {crashed[0].describe()}"))
    users = lab.private["users"]
    moved = wait_until(lambda: all(server_of(mesh, n) == OTHER for n in users), 15)
    now = {n: server_of(mesh, n) for n in users}
    results.append(Check("failover", bool(moved),
                         f"{', '.join(users) or 'no node'} used {KILLED}; now: "
                         + ", ".join(f"{n} -> {s}" for n, s in now.items()),
                         "give it a few seconds: a client fails over when its server stops answering"))
    results += missing(lab, "moved", "server", "path")
    if lab.answer("moved") is not None:
        got = sorted(node_list(lab.answer("moved")))
        results.append(Check("moved", got == users, f"you said {', '.join(got)}",
                             f"pktlab routes NODE shows whose route server a node uses (before the crash); "
                             f"{len(users)} node(s) used {KILLED}"))
    if lab.answer("server") is not None:
        got = lab.answer("server")
        results.append(Check("server", got == OTHER, f"you said {got}",
                             "pktlab routes NODE, first line, for one of r1's former clients"))
    if lab.answer("path") is not None:
        got, live = node_list(lab.answer("path")), route(mesh, SRC, DST)
        before = lab.private["path_before"]
        ok = got == live
        results.append(Check("path", ok, f"{' -> '.join(live)} (before the crash: {' -> '.join(before)})" if ok else
                             f"you said {' -> '.join(got)}: that is not the path {SRC} uses now",
                             f"pktlab ping {SRC} {DST}, then pktlab routes {SRC}"))
    return results
