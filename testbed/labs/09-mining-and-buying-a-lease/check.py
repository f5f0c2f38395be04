"""Lab 9: needs the chain, pool, miner and issuer roles (lab.yaml `needs`; session.start refuses the lab while no
agent reports them). Its checks read what those roles report in the agents' status: the chain height
(status["chain"]["height"]), a miner's upload rate (status["miner"]["upload_kbit"]) and the leases an issuer sold
(status["issuer"]["sold"]), the keys the chain and market work (issues 14, 16) are to report."""
from testbed.labs.checking import Check, close, missing, number


def _status(mesh, role):
    node = mesh.topo.nodes_with_role(role)[0]
    return mesh.agent(node).call("status", timeout=3).get(role) or {}


def setup(lab):
    lab.private = {"height": _status(lab.mesh, "chain").get("height", 0)}


def check(lab):
    results = missing(lab, "blocks", "upload_kbit", "lease")
    chain, miner, issuer = (_status(lab.mesh, r) for r in ("chain", "miner", "issuer"))
    found = chain.get("height", 0) - lab.private["height"]
    results.append(Check("blocks mined", found > 0, f"{found} block(s) since the lab started",
                         "give the pool a minute; the miners need their announcements through the uplink"))
    if lab.answer("blocks") is not None:
        got = number(lab.answer("blocks"))
        results.append(Check("blocks", got is not None and 0 < got <= found, f"you counted {lab.answer('blocks')}",
                             "the chain height on t2's panel, now minus when you started"))
    if lab.answer("upload_kbit") is not None and miner.get("upload_kbit") is not None:
        results.append(Check("upload_kbit", close(number(lab.answer("upload_kbit")), miner["upload_kbit"], 0.5),
                             f"you said {lab.answer('upload_kbit')}", "a miner's panel in the live view"))
    if lab.answer("lease") is not None:
        sold = issuer.get("sold") or []
        results.append(Check("lease", lab.answer("lease") in sold, f"you said {lab.answer('lease')}",
                             "the issuer on t3 lists the leases it sold"))
    return results
