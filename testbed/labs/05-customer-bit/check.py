"""Lab 5: the traffic class of packets from a customer (kept), a customer's node without the bit (capped at P = 4
where it leaves over its ISP's lease), a peer and a provider (customer bit cleared) as they reach t2, seen in a
capture at t2."""
import re

from testbed.labs.checking import Check, missing, traffic_classes

SENDERS = ("c1", "c2", "p1", "u1")
WHY = {"c1": "c1 is transit's customer: its bit is believed",
       "c2": "c2's packets have no customer bit; they reach c1 over shop's own lease c_own, so they may leave over "
             "c_in, and there P caps them",
       "p1": "p_in is held by a peer: the bit is cleared as its packets come in",
       "u1": "u_in is held by transit's provider: the bit is cleared as its packets come in"}


def check(lab):
    results = missing(lab, *SENDERS)
    given = {s: lab.answer(s) for s in SENDERS if lab.answer(s) is not None}
    if not given:
        return results
    seen = traffic_classes(lab.mesh, "t2", list(given))
    for s, text in given.items():
        m = re.fullmatch(r"\s*(\d+)\s*/\s*([01])\s*", text)
        classes = sorted(seen[s])
        shown = ", ".join(f"{p}/{c}" for p, c in classes) or "nothing"
        if not m:
            results.append(Check(s, False, f"{text!r}: write PRIORITY/CUSTOMER, e.g. 15/1", WHY[s]))
            continue
        got = (int(m.group(1)), int(m.group(2)))
        ok = classes == [got]
        results.append(Check(s, ok, f"t2 sees {shown}" if ok else f"you said {got[0]}/{got[1]}; not what t2 sees",
                             WHY[s]))
    return results
