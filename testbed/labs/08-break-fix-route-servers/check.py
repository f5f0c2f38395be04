"""Lab 8: one hidden route-server fault, chosen by the seed: a node's clock 90 s ahead (the answer: that node), or
a node sending five forged announcements (bad signatures) to its route server (the answer: that route server)."""
from testbed.labs.checking import Check, missing

KINDS = ("clock-skew", "forged-announcement")


def setup(lab):
    rng = lab.rng
    kind = rng.choice(KINDS)
    node = rng.choice(sorted(n for n in lab.mesh.topo.nodes if n not in lab.mesh.topo.nodes_with_role("route_server")))
    hidden = lab.hide_fault(f"clock-skew {node} 90s" if kind == "clock-skew" else f"forged-announcement {node} 5")
    # forged announcements name no sender a tool can show: the evidence is the route server that rejected them
    lab.private.update(kind=kind, node=node if kind == "clock-skew" else hidden["state"]["server"])


def check(lab):
    results = missing(lab, "kind", "node")
    kind, node = lab.private["kind"], lab.private["node"]
    given = lab.answer("kind")
    if given is not None:
        ok = given.lower() == kind
        results.append(Check("kind", ok, f"you said {given}" + ("" if ok else ": not what is wrong"),
                             "pktlab rs: which rejection reason is counted?"))
    given = lab.answer("node")
    if given is not None:
        ok = given == node
        results.append(Check("node", ok, f"you said {given}" + ("" if ok else ": not where the fault is"),
                             "pktlab rs counts rejections per route server; pktlab routes NODE --json shows each "
                             "node's clock difference to its server (skew_ms)"))
    return results
