"""Lab 2: splice r1c1->r2c2 and r2c2->r1c3 into r1c1->r1c3 via r2c2; the checker decodes the student's label over
the real interfaces, then sends a ping over it (r1c1's path table for r1c3 replaced, and restored)."""
import json

from node.cjdns import labels
from testbed.labs.checking import Check, missing

A, B, C = "r1c1", "r2c2", "r1c3"


def setup(lab):
    via, go = lab.mesh.label(A, B), lab.mesh.label(B, C)
    lab.facts = {f"label {A} uses for {B}": labels.label_text(via),
                 f"label {B} uses for {C}": labels.label_text(go)}
    lab.private = {"want": labels.splice(go, via)}


def walk(mesh, start, label):
    """The nodes a label leads through from start (decoded as each switch does), and whether it ends at a router."""
    ports = {}
    for n in mesh.topo.nodes:
        cfg = json.loads(mesh.run.path("nodes", n, "agent.json").read_text())
        ports[n] = {p["switch_index"]: p["peer_name"] for p in cfg["peers"]}
    nodes, node = [start], start
    while label != 1 and len(nodes) <= 16:
        bits = labels.bits_for_label(label)
        nxt = ports[node].get(labels.decompress(label, bits))
        if nxt is None:
            return nodes, False
        nodes.append(nxt)
        node, label = nxt, label >> bits
    return nodes, label == 1


def ping_over(mesh, label) -> float | None:
    """RTT of a ping from A to C with A's path for C set to `label`; A's path table is restored after."""
    agent = mesh.agent(A)
    paths = agent.call("config")["config"]["paths"]
    ip6 = mesh.ip6(C)
    table = {ip: {"public_key": e["public_key"], "label": e["label"]} for ip, e in paths.items()}
    try:
        agent.call("set_paths", paths=dict(table, **{ip6: dict(table[ip6], label=labels.label_text(label))}))
        return mesh.ping(A, C, count=3)
    finally:
        agent.call("set_paths", paths=table)


def check(lab):
    results = missing(lab, "label")
    given = lab.answer("label")
    if given is None:
        return results
    try:
        label = labels.parse_label_text(given)
    except labels.LabelError as e:
        return [Check("label", False, str(e), "write it like the labels in your lab's values")]
    nodes, ends = walk(lab.mesh, A, label)
    route = " -> ".join(nodes)
    hint = "splice: ((go ^ 1) << log2(via)) ^ via, with via = r1c1->r2c2 and go = r2c2->r1c3"
    if label != lab.private["want"]:
        where = f"your label leads {route}" + ("" if ends else " and then names an interface that is not there")
        if nodes[-1] == C and ends and B in nodes:
            return [Check("label", True, f"{where}: not the splice of the two labels, but a path from {A} to {C} "
                                         f"through {B} all the same")] + _live(lab, label)
        return [Check("label", False, where, hint)]
    return [Check("label", True, f"{route}: the splice of the two labels")] + _live(lab, label)


def _live(lab, label):
    rtt = ping_over(lab.mesh, label)
    if rtt is None:
        return [Check("ping over your label", False, f"{A} could not reach {C} over it",
                      "the label decodes right; is a fault active? pktlab faults")]
    return [Check("ping over your label", True, f"{A} -> {C} over your label: rtt {rtt:.2f} ms")]
