"""Lab 7: one hidden fault, chosen by the seed: 25 % loss on one link, or one node partitioned off."""
from testbed.labs.checking import Check, missing, node_list

LOSS = "25%"


def setup(lab):
    rng = lab.rng
    if rng.random() < 0.5:
        link = rng.choice(lab.mesh.topo.links)
        lab.hide_fault(f"loss {link.a}--{link.b} {LOSS}")
        lab.private.update(kind="loss", where=sorted([link.a, link.b]))
    else:
        node = rng.choice(sorted(lab.mesh.topo.nodes))
        lab.hide_fault(f"partition {node}")
        lab.private.update(kind="partition", where=[node])


def check(lab):
    results = missing(lab, "kind", "where")
    kind, where = lab.private["kind"], lab.private["where"]
    given = lab.answer("kind")
    if given is not None:
        ok = given.lower() == kind
        results.append(Check("kind", ok, f"you said {given}" + ("" if ok else ": that is not what is wrong"),
                             "does a pair fail completely (no reply at all), or only now and then?"))
    given = lab.answer("where")
    if given is not None:
        got = sorted(node_list(given))
        ok = got == where
        if ok:
            seen = f"{'--'.join(where) if kind == 'loss' else ', '.join(where)}: found"
        elif kind == "loss" and len(got) == 2 and set(got) & set(where):
            seen = f"{'--'.join(got)} touches the right node, but it is another of its links"
        else:
            seen = f"{', '.join(got) or 'nothing'}: not where the fault is"
        hint = ("ping every pair of neighbours 50 times and compare the loss" if kind == "loss" else
                "which node can nobody reach?")
        results.append(Check("where", ok, seen, hint))
    return results
