"""`pktlab leases NODE` and `pktlab lease-config NODE LEASE key=value ...`.

`leases` shows a node's leases, ingress meters, egress schedulers and counters live, from the agent's `leases`
control command. `lease-config` sends a signed configuration request (node/leases/requests.py) as the
lease's holder would: the holder key of a topology isp comes from the run seed (testbed/topology/leases.py), or give
`--key HEX` (a 32-byte private key).
"""
from __future__ import annotations

import json
import time


from testbed.cli.common import attach, out, run_option
from testbed.console import data_table, styled
from testbed.topology.units import format_rate

SETTABLE = {"max_priority_bandwidth", "clear_customer_bit", "deprioritize_non_customer", "virtual_router"}


def _agent_call(mesh, node, cmd, **kw):
    from node.agent.control_client import AgentError
    if node not in mesh.topo.nodes:
        raise RuntimeError(f"no node {node!r} in run {mesh.run.id} (nodes: {', '.join(list(mesh.topo.nodes)[:20])})")
    try:
        return mesh.agent(node).request(dict(kw, cmd=cmd), timeout=5)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{node}: agent not answering: {e}") from None
    except AgentError as e:
        raise RuntimeError(f"{node}: {e}") from None


def _value(v):
    return "-" if v is None else str(v)


def _rate(bps):
    """bit/s as the topology files write rates (500kbit); '-' for none."""
    return "-" if bps is None else format_rate(round(bps))


def render(node: str, d: dict) -> None:
    t = data_table("link", "lease", "holder", "guarantee", "max prio bw", "clear cust", "deprio P",
                   "expires in", "slot", "ifaces", title=f"{node}: leases")
    ifaces = {}
    for num, entry in d.get("interfaces", {}).items():
        ifaces.setdefault((entry["link"], entry["lease"]), []).append(num)
    for link, ll in d.get("links", {}).items():
        for l in ll["leases"]:
            expires = "expired" if l["expired"] else _value(l["expires_in_s"] and f"{l['expires_in_s']:.0f}s")
            holder = l["holder"][:12] + "…" if l["holder"] else "-"
            t.add_row(link, l["id"], holder, _rate(l["guarantee_bps"]), _value(l["max_priority_bandwidth"]),
                      "yes" if l["clear_customer_bit"] else "no", _value(l["deprioritize_non_customer"]),
                      expires, str(l["slot"]), ",".join(ifaces.get((link, l["id"]), [])))
    out.print(t)
    m = data_table("lease", "packets", "bytes", "meter prio x kB/s", "scale", "reprioritized",
                   "customer bit cleared", title="ingress meters")
    for name, st in d.get("ingress", {}).items():
        m.add_row(name, str(st["packets"]), str(st["bytes"]), f"{st['meter_priority_kBps']:.1f}",
                  f"{st['scale']:.3f}", str(st["reprioritized"]), str(st["customer_bit_cleared"]))
    out.print(m)
    e = data_table("link", "capacity", "paced at", "queued", "sent pkts", "drops", "bytes by lease",
                   title="egress schedulers")
    for link, s in d.get("egress", {}).items():
        capacity = d.get("links", {}).get(link, {}).get("capacity_bps")
        e.add_row(link, _rate(capacity), _rate(s["pace_bps"]), f"{s['queued_packets']} / {s['queued_bytes']} B",
                  str(s["sent"]["packets"]), json.dumps(s["drops"]), json.dumps(s["sent_bytes_by_lease"]))
    out.print(e)
    out.print("counters:", json.dumps(d.get("counters", {})), " requests:", json.dumps(d.get("requests", {})))


def cmd_leases(args):
    mesh = attach(args)
    answer = _agent_call(mesh, args.node, "leases")
    if not answer.get("ok"):
        raise RuntimeError(f"{args.node}: {answer.get('error')}")
    answer.pop("ok", None)
    if args.json:
        print(json.dumps(answer))
        return
    render(args.node, answer)


def parse_changes(pairs: list[str]) -> dict:
    """["max_priority_bandwidth=1000", "clear_customer_bit=true"] -> the request's "set" object."""
    changes = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in SETTABLE:
            raise RuntimeError(f"bad setting {pair!r}: write KEY=VALUE with KEY one of {', '.join(sorted(SETTABLE))}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text          # a bare word: a virtual router id
        changes[key] = value
    if not changes:
        raise RuntimeError("nothing to set: give KEY=VALUE settings")
    return changes


def cmd_lease_config(args):
    from node.leases import requests as cr
    from testbed.topology.leases import holder_identity
    mesh = attach(args)
    if args.key:
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            raise RuntimeError("--key: expected 64 hex digits (a private key)") from None
    else:
        if args.holder not in mesh.topo.isps:
            raise RuntimeError(f"--holder: no isp {args.holder!r} in this run (isps: {', '.join(mesh.topo.isps)});"
                               " or give --key")
        key = holder_identity(mesh.run.state["seed"], args.holder).private_key
    request = cr.make_request(key, args.lease, parse_changes(args.set), time.time()).decode()
    answer = _agent_call(mesh, args.node, "lease_config", request=request)
    if args.json:
        print(json.dumps(answer))
    elif answer.get("ok"):
        out.print(styled(("ok", "green"), f" lease {args.lease} on {args.node}: {json.dumps(answer.get('lease'))}"))
    if not answer.get("ok"):
        raise RuntimeError(f"{args.node}: rejected: {answer.get('error')} {answer.get('detail', '')}")


def register(add) -> None:
    sp = add("leases", cmd_leases, "a node's bandwidth leases, meters and counters, live from its agent")
    sp.add_argument("node", metavar="NODE")
    run_option(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("lease-config", cmd_lease_config, "send a signed lease configuration request as the lease holder: "
                                               "pktlab lease-config core1 a_in max_priority_bandwidth=500 "
                                               "--holder shopa")
    sp.add_argument("node", metavar="NODE")
    sp.add_argument("lease", metavar="LEASE")
    sp.add_argument("set", nargs="+", metavar="KEY=VALUE", help=f"among {', '.join(sorted(SETTABLE))}")
    holder = sp.add_mutually_exclusive_group(required=True)
    holder.add_argument("--holder", metavar="ISP", help="sign with this isp's holder key (from the run seed)")
    holder.add_argument("--key", metavar="HEX", help="sign with this private key")
    run_option(sp)
    sp.add_argument("--json", action="store_true")
