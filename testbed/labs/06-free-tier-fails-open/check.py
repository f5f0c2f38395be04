"""Lab 6: the free tier gets an idle link (work-conserving) and nothing against a saturating paid lease; a lease cut
to priority 0 still gets an idle link (fail open). The checker measures all three itself."""
from testbed.labs.checking import Check, close, flood, missing, number


def check(lab):
    results = missing(lab, "free_alone", "free_contended", "zero_alone")
    leases = lab.mesh.agent("core1").call("leases", timeout=5)
    a_in = next(l for ll in leases["links"].values() for l in ll["leases"] if l["id"] == "a_in")
    cut = a_in["max_priority_bandwidth"] == 0
    results.append(Check("a_in cut to 0", cut, f"core1: a_in max-priority-bandwidth {a_in['max_priority_bandwidth']}",
                         "pktlab lease-config core1 a_in max_priority_bandwidth=0 --holder shopa"))
    if results and not all(c.ok for c in results):
        return results       # measure only what the student has measured too
    alone = flood(lab.mesh, ["f1"], "sink")["f1"]
    both = flood(lab.mesh, ["f1", "a1"], "sink")
    zero = flood(lab.mesh, ["a1"], "sink")["a1"]
    results.append(Check("free tier on an idle link", alone > 0 and both["a1"] > 0.7 * alone,
                         f"the checker measured f1 alone {alone:.0f} kbit/s", "is a fault active? pktlab faults"))
    results.append(Check("free_alone", close(number(lab.answer("free_alone")), alone, 0.3),
                         f"you measured {lab.answer('free_alone')}", "pktlab lab measure --from f1 --to sink"))
    results.append(Check("free tier against a paid lease", both["f1"] < 0.1 * alone,
                         f"f1 {both['f1']:.0f} kbit/s while a1 gets {both['a1']:.0f}", "is a fault active?"))
    got = number(lab.answer("free_contended"))
    results.append(Check("free_contended", got is not None and got <= max(0.1 * alone, 2 * both["f1"]),
                         f"you measured {lab.answer('free_contended')}",
                         "pktlab lab measure --from f1,a1 --to sink: f1's line"))
    results.append(Check("priority 0 fails open", zero > 0.7 * alone,
                         f"a1 at priority 0, alone: {zero:.0f} kbit/s", "is a fault active?"))
    results.append(Check("zero_alone", close(number(lab.answer("zero_alone")), zero, 0.3),
                         f"you measured {lab.answer('zero_alone')}", "pktlab lab measure --from a1 --to sink"))
    return results
