"""Lab 1: the address of a key, and a label decoded by hand (a random walk from r1c1, not a path any table holds)."""
import hashlib
import ipaddress
import json

from node.cjdns import keys, labels
from testbed.labs.checking import Check, missing, node_list

START = "r1c1"


def _interfaces(mesh, node):
    cfg = json.loads(mesh.run.path("nodes", node, "agent.json").read_text())
    return {p["peer_name"]: p["switch_index"] for p in cfg["peers"]}


def setup(lab):
    rng = lab.rng
    key = keys.Identity.from_seed(f"lab1:{lab.seed}".encode(), 0)
    walk = [START]
    g = lab.mesh.topo.graph()
    while len(walk) < 6:
        options = [n for n in sorted(g[walk[-1]]) if n not in walk]
        if not options:
            break
        walk.append(rng.choice(options))
    hops = []
    for i, node in enumerate(walk):
        back = labels.one_hop_label(_interfaces(lab.mesh, node)[walk[i - 1]]) if i else None
        ahead = labels.one_hop_label(_interfaces(lab.mesh, node)[walk[i + 1]]) if i + 1 < len(walk) else None
        hops.append((back, ahead))
    label, _ = labels.build_label(hops)
    lab.facts = {"key": key.pubkey_text, "label": labels.label_text(label), "label starts at": START}
    lab.private = {"address": key.ip6_text, "walk": walk, "label": label,
                   "hashed_once": str(ipaddress.IPv6Address(hashlib.sha512(key.public_key).digest()[:16]))}


def check(lab):
    results = missing(lab, "address", "path")
    want = ipaddress.IPv6Address(lab.private["address"])
    given = lab.answer("address")
    if given is not None:
        try:
            got = ipaddress.IPv6Address(given)
        except ValueError:
            results.append(Check("address", False, f"{given!r} is not an IPv6 address",
                                 "eight groups of four hex digits, as pktlab status prints addresses"))
        else:
            hint = "decode the base32 key into 32 bytes, SHA-512 it, SHA-512 the 64-byte digest, keep 16 bytes"
            if str(got) == lab.private["hashed_once"]:
                hint = "close: that is SHA-512 of the key once; the address hashes the digest a second time"
            results.append(Check("address", got == want,
                                 f"{got.compressed} is the address of the key" if got == want else
                                 f"{got.compressed} is not the key's address", hint))
    given = lab.answer("path")
    if given is not None:
        walk, got = lab.private["walk"], node_list(given)
        unknown = [n for n in got if n not in lab.mesh.topo.nodes]
        if unknown:
            results.append(Check("path", False, f"no node {', '.join(unknown)} in this mesh",
                                 f"the nodes are {', '.join(lab.mesh.topo.nodes)}"))
        elif got == walk:
            results.append(Check("path", True, f"{' -> '.join(walk)}: {len(walk) - 1} hops decoded"))
        else:
            right = next((i for i, (a, b) in enumerate(zip(got, walk)) if a != b), min(len(got), len(walk)))
            if right == 0:
                seen, hint = f"the label starts at {START}, not {got[0]}", f"start at {START}"
            elif right < len(walk) and right < len(got):
                seen = f"the first {right - 1} hop(s) are right; at {walk[right - 1]} the label does not go to " \
                       f"{got[right]}"
                hint = (f"at {walk[right - 1]}, take the lowest director of what is left of the label and find the "
                        f"peer whose one-hop label ends in that director")
            elif len(got) < len(walk):
                seen = f"right so far, but the label goes on after {got[-1]}"
                hint = "the walk ends only when the label is down to 0001"
            else:
                seen, hint = f"the label ends at {walk[-1]}", "0001 means: this node's own router, stop"
            results.append(Check("path", False, seen, hint))
    return results
