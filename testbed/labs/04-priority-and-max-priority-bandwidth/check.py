"""Lab 4: predict a1:b1 from the leases' max-priority-bandwidth (2000:200 -> 10), measure it, then set b_in so that
the ratio is 2 (b_in = 1000) with a signed request; the checker measures the final ratio itself."""
from testbed.labs.checking import Check, close, flood, missing, number

TARGET = 2.0


def _mpb(mesh) -> dict:
    leases = mesh.agent("core1").call("leases", timeout=5)
    return {l["id"]: l["max_priority_bandwidth"] for ll in leases["links"].values() for l in ll["leases"]}


def setup(lab):
    mpb = _mpb(lab.mesh)
    lab.private = {"ratio": mpb["a_in"] / mpb["b_in"]}


def check(lab):
    results = missing(lab, "ratio", "measured", "new_ratio")
    want = lab.private["ratio"]
    if lab.answer("ratio") is not None:
        got = number(lab.answer("ratio"))
        results.append(Check("prediction", close(got, want, 0.1), f"you predicted {lab.answer('ratio')}",
                             "both meters settle at their limit: priority x rate = limit, and the priorities "
                             "fall by the same kind of scaling, so the rates go as the limits"))
    if lab.answer("measured") is not None:
        got = number(lab.answer("measured"))
        results.append(Check("first measurement", close(got, want, 0.35), f"you measured {lab.answer('measured')}",
                             "pktlab lab measure --from a1,b1 --to sink, before changing anything; a1 / b1"))
    mpb = _mpb(lab.mesh)
    changed = mpb["a_in"] == 2000 and close(mpb["a_in"] / max(mpb["b_in"] or 0, 1e-9), TARGET, 0.05)
    results.append(Check("b_in changed on core1", changed,
                         f"core1: a_in {mpb['a_in']:g}, b_in {mpb['b_in']:g}",
                         "leave a_in at 2000; rates go as the limits, so b_in = 2000 / 2: "
                         "pktlab lease-config core1 b_in max_priority_bandwidth=... --holder shopb"))
    if changed and lab.answer("new_ratio") is not None:
        rates = flood(lab.mesh, ["a1", "b1"], "sink")
        seen = rates["a1"] / max(rates["b1"], 1e-9)
        results.append(Check("the mesh gives 2:1", close(seen, TARGET, 0.3),
                             f"the checker measured a1 {rates['a1']:.0f} and b1 {rates['b1']:.0f} kbit/s: {seen:.2f}",
                             "is a fault active (pktlab faults)? is another flood running?"))
        got = number(lab.answer("new_ratio"))
        results.append(Check("new_ratio", close(got, seen, 0.3), f"you measured {lab.answer('new_ratio')}",
                             "pktlab lab measure --from a1,b1 --to sink, after the change; a1 / b1"))
    return results
