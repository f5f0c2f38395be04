"""`make demo` (python -m testbed.demo [--out DIR]): the PKT story on one mesh, each step ending with what it proved.

The mesh is testbed/topologies/demo.yaml: an Edge Point operator (edge) and a Cloud ISP (cloud), a route server
each (federated); the Edge Point sells the Cloud ISP the lease cloud_in on its access link c2--ep; f1 holds no
lease (the free tier); ep's uplink to gw is the congested 2 mbit/s link. The Edge Point's market (ep) sells the
lease c4_up on its 2 mbit/s link to the Cloud ISP's device c4, which buys it by atomic swap for PKT (f2, behind c4,
floods the same link on the free tier). The live view is served while it runs.

A step is a function ``fn(demo) -> Proof`` registered with ``@step(title)`` (STEPS keeps the order of definition):
it shows what it does and returns one line of what it proved (with the figures it measured), or raises StepFailed
saying what did not hold. The mesh shows no role that does nothing (step 1 refuses it). Each proof is also logged as an
assertion event, so the report (last step) lists them. The run is removed at the end, also after a failure.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from node.agent.control_client import AgentError
from node.cjdns import labels
from node.leases import requests as lease_requests
from testbed import runs, ui
from testbed.backends import exec_in
from testbed.chain_view import ChainViewError
from testbed.cli.common import Bars
from testbed.console import data_table, make_console, styled
from testbed.events import ASSERTION, PING, FILENAME as EVENTS_FILE, EventLog
from testbed.labs.checking import flood
from testbed.mesh import Mesh
from testbed.report import render_report
from testbed.runs import RunError
from testbed.topology import RUNNING_ROLES, idle_roles
from testbed.topology.leases import declared_leases, holder_identity
from testbed.topology.units import format_rate
from testbed.waiting import TimedOut

console = make_console(width=120)                         # data prints as data (testbed/console.py)
TOPOLOGY = "demo"
OUT = Path(os.environ.get("PKTLAB_DEMO_OUT", "demo-output"))
LEASE, SELLER_NODE, HOLDER = "cloud_in", "ep", "cloud"   # the lease the Cloud ISP configures, on the Edge Point
CUSTOMER, FREE, RECEIVER = "c2", "f1", "gw"               # who floods ep's congested uplink, and where to
PROBE = ("c1", "gw")                                      # the pair whose path loses a link in step 5
MAX_OUTAGE_S = 5.0
MARKET_LEASE, BUYER, BEHIND, SINK = "c4_up", "c4", "f2", "f1"  # the lease sold, its buyer, who floods behind it, to
PRICE = 1 << 30                                            # 1 PKT, in atomic units
FUNDER = "c3"                                              # the block miner: paid by every block
TERM_S = 600


class StepFailed(Exception):
    """A step's claim did not hold; the message says what was seen."""


@dataclass
class Proof:
    text: str                                   # "proved: ..." without the prefix
    facts: dict = field(default_factory=dict)   # what was measured, for tests and the event log


@dataclass
class Demo:
    mesh: Mesh
    out: Path
    console: Console
    note: Callable[[str], None]                 # note("flooding ...") shows what a long step is doing now
    events: EventLog
    ui_url: str = ""
    proofs: list = field(default_factory=list)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise StepFailed(message)


def path_text(mesh: Mesh, src: str, dst: str) -> str:
    return " -> ".join([h[0] for h in mesh.route(src, dst)] + [dst])


# -- the steps, in the order they run ------------------------------------------------------------------------------

STEPS = []


def step(title: str):
    """Register a step function (STEPS keeps the order of definition) under the title the demo shows."""
    def register(fn):
        fn.title = title
        STEPS.append(fn)
        return fn
    return register


@step("the mesh: two ISPs, their route servers, the Edge Point's lease")
def show_mesh(demo: Demo) -> Proof:
    """Nodes, the roles their agents run, ISPs and leases; each route server answers."""
    mesh, topo = demo.mesh, demo.mesh.topo
    idle = idle_roles(topo.nodes.values())
    check(not idle, f"roles no agent runs yet: {idle} (the demo never shows a role that does nothing)")
    ends = {}
    for rec in mesh.run.state["links"]:
        ends.setdefault(rec["a"], []).append(f"{rec['a_if']} -> {rec['b']}")
        ends.setdefault(rec["b"], []).append(f"{rec['b_if']} -> {rec['a']}")
    t = data_table("node", "roles", "ISP", "fc00::/8 address", "links",
                   title=f"run {mesh.run.name}: {len(topo.nodes)} PKT routing devices, {len(topo.links)} links")
    for name, node in topo.nodes.items():
        isp = node.isp or "none (free tier)"
        if node.attrs.get("edge"):
            isp += " (its Edge Point device)"
        t.add_row(name, ", ".join(node.roles), isp, mesh.ip6(name), "\n".join(ends.get(name, [])))
    demo.console.print(t)
    for role in sorted({r for n in topo.nodes.values() for r in n.roles}):
        demo.console.print(f"   {role}: {RUNNING_ROLES[role]}")
    servers = topo.nodes_with_role("route_server")
    federated = route_servers(demo, servers)
    t = data_table("ISP", "relations", "route servers", "leases it sells (link, holder, settings)", title="ISPs")
    leases = declared_leases(topo)
    for name, isp in topo.isps.items():
        sold = [f"{l.id} on {topo.links[l.link_index].name} to {l.holder_isp}: guarantee "
                f"{format_rate(l.guarantee_bps) if l.guarantee_bps else 'none'}, max-priority-bandwidth "
                f"{'unlimited' if l.max_priority_bandwidth is None else f'{l.max_priority_bandwidth:g}'}"
                for l in leases if l.isp == name]
        t.add_row(name, ", ".join(f"{other} is its {rel}" for other, rel in isp.relations.items()) or "-",
                  ", ".join(s for s in servers if topo.nodes[s].isp == name), "\n".join(sold) or "-")
    demo.console.print(t)
    return Proof(f"{len(topo.nodes)} PKT routing devices of {len(topo.isps)} ISPs run; route servers "
                 f"{' and '.join(servers)} each know all {len(topo.nodes)} nodes, federated "
                 f"({federated} announcements passed between them); every role shown is one the agents run",
                 {"nodes": len(topo.nodes), "route_servers": servers, "forwarded_in": federated})


def route_servers(demo: Demo, servers: list[str]) -> int:
    """Wait until every route server knows every node (its own ISP's announce to it, the others' come federated);
    show what each holds; the number of announcements they forwarded to each other."""
    mesh, want = demo.mesh, len(demo.mesh.topo.nodes)

    def status():
        try:
            found = {rs: mesh.agent(rs).call("rs_status", timeout=5) for rs in servers}
        except (OSError, AgentError, ValueError) as e:
            raise StepFailed(f"a route server does not answer: {e}") from None
        return found if all(st["nodes"] == want and st["announcements_forwarded_in"] for st in found.values()) \
            else None
    try:
        found = mesh.wait_until(status, 20, f"every route server knowing all {want} nodes")
    except TimedOut as e:
        raise StepFailed(str(e)) from None
    t = data_table("route server", "ISP", "nodes known", "links known", "announcements from nodes",
                   "forwarded in by federated servers", title="route servers")
    for rs, st in found.items():
        t.add_row(rs, mesh.topo.nodes[rs].isp, str(st["nodes"]), str(st["edges"]),
                  str(st["announcements_accepted"]), str(st["announcements_forwarded_in"]))
    demo.console.print(t)
    return sum(st["announcements_forwarded_in"] for st in found.values())


@step("reachability: every node pings every other")
def reachability(demo: Demo) -> Proof:
    """Every node pings every other end to end (CryptoAuth sessions over the route servers' labels)."""
    mesh = demo.mesh
    demo.note("pinging every pair")
    stats = mesh.pingall(count=3)
    nodes = mesh.nodes
    t = data_table("from \\ to", *nodes, title="end-to-end ping over fc00::/8 (rtt ms of 3 pings, x: no reply)")
    for a in nodes:
        cells = []
        for b in nodes:
            st = stats.get((a, b))
            cells.append("." if st is None else styled((f"{st['avg']:.1f}", "green")) if st["received"]
                         else styled(("x", "red")))
        t.add_row(a, *cells)
    demo.console.print(t)
    reached = {f"{a} -> {b}": st["received"] > 0 for (a, b), st in stats.items()}
    missing = [pair for pair, ok in reached.items() if not ok]
    check(not missing, f"{len(missing)} of {len(reached)} pairs got no reply: {', '.join(missing[:6])}")
    return Proof(f"all {len(reached)} ordered pairs reach each other across both ISPs",
                 {"pairs": len(reached), "reach": reached})


@step("a path decoded hop by hop from the route server's answer")
def decoded_path(demo: Demo) -> Proof:
    """The label the customer's route server gave it for the receiver, decoded one director per hop."""
    mesh = demo.mesh
    mesh.ping(CUSTOMER, RECEIVER, count=1)

    def over_the_lease():
        hops = mesh.route(CUSTOMER, RECEIVER)
        return hops if hops and hops[0][1].endswith(f":{LEASE}") else None
    try:
        mesh.route_over_lease(LEASE, holder_identity(mesh.run.state["seed"], HOLDER).pubkey_text, [CUSTOMER])
        hops = mesh.wait_until(over_the_lease, 20, f"{CUSTOMER}'s path to {RECEIVER} over the lease {LEASE}")
    except TimedOut as e:
        raise StepFailed(f"{e}; its path now: {path_text(mesh, CUSTOMER, RECEIVER)}") from None
    t = data_table("hop", "node", "leaves by (interface:lease)", "label on arrival",
                   title=f"{CUSTOMER} -> {RECEIVER}: the label its route server gave it, one director per hop")
    for i, (node, ifname, label) in enumerate(hops, 1):
        tier = f"paid lease {ifname.split(':')[1]}" if ":" in ifname else "free tier"
        t.add_row(str(i), node, f"{ifname} ({tier})", labels.label_text(label))
    t.add_row("", RECEIVER, "its own router", labels.label_text(1))
    demo.console.print(t)
    over = [h[0] for h in hops if ":" in h[1]]
    return Proof(f"the route server's label {labels.label_text(hops[0][2])} decodes to "
                 f"{' -> '.join([h[0] for h in hops] + [RECEIVER])}, leaving {', '.join(over)} over a paid lease",
                 {"hops": [list(h) for h in hops]})


def configure_lease(mesh: Mesh, changes: dict) -> None:
    """A signed configuration request to the Edge Point, as the lease's holder (its key from the run seed)."""
    key = holder_identity(mesh.run.state["seed"], HOLDER).private_key
    request = lease_requests.make_request(key, LEASE, changes, time.time()).decode()
    answer = mesh.agent(SELLER_NODE).request({"cmd": "lease_config", "request": request}, timeout=5)
    check(answer.get("ok"), f"{SELLER_NODE} refused the signed request: {answer.get('error')} "
                            f"{answer.get('detail', '')}")


@step("the lease's priority against the free tier on a congested link")
def lease_priority(demo: Demo) -> Proof:
    """The customer (over the lease) and the free tier flood ep's uplink; shares at the receiver before and after
    the holder gives the lease priority with a signed request."""
    mesh = demo.mesh
    demo.console.print(f"   {CUSTOMER} marks its packets priority 15 + customer and reaches {SELLER_NODE} over the "
                       f"lease {LEASE}; {FREE} holds no lease (priority 0). Both leave {SELLER_NODE} on its uplink's "
                       f"free lease, where its PKT scheduler orders packets by the priority the lease let through.")
    t = data_table(f"lease {LEASE}", f"{CUSTOMER} (customer, over the lease)", f"{FREE} (free tier)",
                   f"{CUSTOMER}'s share", title=f"UDP floods {CUSTOMER} + {FREE} -> {RECEIVER} over {SELLER_NODE}'s "
                                                f"2 mbit/s uplink, kbit/s received at {RECEIVER}")
    bought = next(l for ll in mesh.agent(SELLER_NODE).call("leases", timeout=5)["links"].values()
                  for l in ll["leases"] if l["id"] == LEASE)
    check(bought["max_priority_bandwidth"] == 0, f"{LEASE} on {SELLER_NODE} has max-priority-bandwidth "
                                                 f"{bought['max_priority_bandwidth']}, not 0 as bought")
    shares = {}
    for label, changes in (("as bought: max-priority-bandwidth 0", None),
                           ("holder's signed request: unlimited", {"max_priority_bandwidth": None})):
        if changes:
            configure_lease(mesh, changes)
        demo.note(f"flooding {CUSTOMER} + {FREE} -> {RECEIVER} ({label})")
        got = flood(mesh, [CUSTOMER, FREE], RECEIVER)
        total = got[CUSTOMER] + got[FREE]
        check(total > 0, f"{RECEIVER} received nothing from {CUSTOMER} or {FREE}")
        shares[label] = dict(got, share=got[CUSTOMER] / total)
        t.add_row(label, f"{got[CUSTOMER]:.0f}", f"{got[FREE]:.0f}", f"{100 * got[CUSTOMER] / total:.0f} %")
    demo.console.print(t)
    before, after = shares.values()
    check(before["share"] < 0.7, f"without priority {CUSTOMER} already took {100 * before['share']:.0f} % "
                                 f"(expected about half: both are priority 0 in the free tier at ep's uplink)")
    check(after["share"] > 0.85, f"with priority {CUSTOMER} got only {100 * after['share']:.0f} % "
                                 f"(expected nearly all: priority 15 goes before the free tier's 0)")
    return Proof(f"the lease's priority, set by its holder's signed request, takes {CUSTOMER} from "
                 f"{100 * before['share']:.0f} % to {100 * after['share']:.0f} % of the congested link "
                 f"({before[CUSTOMER]:.0f} -> {after[CUSTOMER]:.0f} kbit/s; the free tier "
                 f"{before[FREE]:.0f} -> {after[FREE]:.0f})", {"before": before, "after": after})


@step("a link cut on the active path, and recovery")
def link_cut(demo: Demo) -> Proof:
    """A link on PROBE's active path goes down under a 10/s ping; the route servers find a way round; healed."""
    mesh = demo.mesh
    src, dst = PROBE
    mesh.ping(src, dst, count=1)
    nodes = [h[0] for h in mesh.route(src, dst)] + [dst]
    bridges = {frozenset(e) for e in nx.bridges(mesh.topo.graph())}
    spare = [(x, y) for x, y in zip(nodes, nodes[1:]) if frozenset((x, y)) not in bridges]
    check(bool(spare), f"{src} -> {dst} ({' -> '.join(nodes)}) has no link with a way round it")
    x, y = spare[0]
    before = " -> ".join(nodes)
    probe = exec_in(mesh.run, src, ["ping", "-6", "-n", "-D", "-i", "0.1", "-w", "9", mesh.ip6(dst)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    cut_at = time.time()
    fault = mesh.fault(f"link-down {x}--{y}", check=False)
    demo.note(f"link {x}--{y} down, {src} pinging {dst} 10 times a second")
    out, _ = probe.communicate(timeout=30)
    end = time.time()
    after = path_text(mesh, src, dst)
    mesh.heal(fault, check=False)
    replies = [float(m) for m in re.findall(r"^\[([\d.]+)\].*icmp_seq=", out, re.M)]
    times = [t for t in replies if t <= cut_at][-1:] + [t for t in replies if t > cut_at] + [end]
    gap = max(zip(times, times[1:]), key=lambda p: p[1] - p[0])
    outage = gap[1] - gap[0]
    demo.events.append(PING, src=src, dst=dst, reachable=False, ts=gap[0])    # the outage, for the report's plot
    if gap[1] in replies:
        demo.events.append(PING, src=src, dst=dst, reachable=True, ts=gap[1])
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    demo.console.print(f"   {src} -> {dst} was {before}; link {x}--{y} cut ({fault.id}); now {after}")
    demo.console.print(styled("   outage (longest gap between replies): ", (f"{outage:.2f} s", "bold"),
                              f"; {sent.group(1)} probes sent, {sent.group(2)} answered" if sent else ""))
    check(any(t > cut_at for t in replies), f"no reply after {x}--{y} went down ({end - cut_at:.1f} s)")
    check(f"{x} -> {y}" not in after and f"{y} -> {x}" not in after, f"{src}'s path still uses {x}--{y}: {after}")
    check(outage < MAX_OUTAGE_S, f"the outage lasted {outage:.1f} s (at most {MAX_OUTAGE_S:.0f} s expected)")
    rtt = mesh.ping(src, dst, count=1)
    demo.console.print(f"   healed: {x}--{y} up again, {src} -> {dst} rtt "
                       f"{'no reply' if rtt is None else f'{rtt:.1f} ms'}")
    return Proof(f"the route servers found a path around the cut link {x}--{y} in {outage:.1f} s ({after})",
                 {"cut": [x, y], "outage_s": outage, "before": before, "after": after})


@step("the PKT chain: blocks mined over the mesh")
def chain(demo: Demo) -> Proof:
    """c1 mines announcements for c3's pool, c3's block miner mines blocks with them, gw follows the chain over the
    Edge Point: every chain node at height 2 or more, on one tip."""
    mesh = demo.mesh
    params = mesh.run.state["chain"]["config"]
    demo.console.print(f"   block time {params['block_time']} s, starting bits 0x{params['genesis_bits']:08x} "
                       "(from this machine's measured hash rate), retarget every "
                       f"{params['retarget_interval']} blocks")
    demo.note("waiting for every chain node to reach block 2")
    def on_one_tip():
        nodes = mesh.chain()["nodes"]
        return nodes if len({st.get("tip") for st in nodes.values()}) == 1 else None
    try:
        mesh.wait_height(2, within=90)
        nodes = mesh.wait_until(on_one_tip, 30, "the chain nodes on one tip")
    except TimedOut as e:
        raise StepFailed(f"{e}; heights: " + ", ".join(f"{n} {st.get('height')}"
                                                         for n, st in mesh.chain()["nodes"].items())) from None
    mining = mesh.mining()
    t = data_table("chain node", "height", "tip", "reorgs", title="chain nodes")
    for n, st in nodes.items():
        t.add_row(n, str(st.get("height")), str(st.get("tip", ""))[:16], str(st.get("reorgs", 0)))
    demo.console.print(t)
    accepted = sum(p["anns"].get("accepted", 0) for p in mining["pools"].values())
    blocks = sum(p["blocks"] for p in mining["pools"].values())
    height = min(st.get("height", 0) for st in nodes.values())
    return Proof(f"{len(nodes)} chain nodes agree on block {height}; the pool took {accepted} announcements "
                 f"mined on another node and found {blocks} blocks, all over the mesh",
                 {"height": height, "announcements": accepted, "blocks": blocks})


@step("the Cloud ISP buys a lease by atomic swap and its traffic rises")
def market(demo: Demo) -> Proof:
    """The Edge Point's market sells the lease c4_up; the Cloud ISP's c4 finds the offer at the route servers (ep
    announces it in its link state), buys it by atomic swap for PKT, and its share of the flooded 2 mbit/s link
    c4--ep rises to the guarantee while f2 (behind c4, the free tier) floods the same link."""
    mesh = demo.mesh
    lease = next(l for l in declared_leases(mesh.topo) if l.id == MARKET_LEASE)
    guarantee = lease.guarantee_bps / 1000
    def spendable(node):
        return mesh.wallet(node)["balance"]["spendable"]
    # Which announcement miner a block pays depends on whose announcements it holds, so c4 may not have been paid
    # yet; the block miner is paid by every block, and pays c4 what it lacks on the chain.
    try:
        if spendable(BUYER) < 2 * PRICE:
            demo.note(f"{BUYER} is paid 2 PKT by {FUNDER} (the block miner's payouts), on the chain")
            mesh.wait_until(lambda: spendable(FUNDER) >= 3 * PRICE, 120, f"{FUNDER} earning 3 PKT of spendable payouts")
            mesh.send(FUNDER, BUYER, 2 * PRICE / 2 ** 30)
        mesh.wait_until(lambda: spendable(BUYER) >= 2 * PRICE, 120, f"{BUYER} holding 2 spendable PKT")
    except (TimedOut, ChainViewError) as e:
        raise StepFailed(str(e)) from None
    demo.note(f"flooding {BUYER} + {BEHIND} -> {SINK}, both on the free tier")
    free = flood(mesh, [BUYER, BEHIND], SINK)

    sold = mesh.market_sell(SELLER_NODE, MARKET_LEASE, PRICE, TERM_S)
    demo.note("waiting for the offer at the route servers")

    servers = mesh.topo.nodes_with_role("route_server")

    def listed():       # by every route server: the buyer's own ISP's has it by federation
        return next((o for o in mesh.market_offers() if o["token"] == sold["token"]
                     and set(o["route_servers"]) == set(servers)), None)
    try:
        offer = mesh.wait_until(listed, 20, f"every route server listing {SELLER_NODE}'s offer {sold['token']}")
    except TimedOut as e:
        raise StepFailed(str(e)) from None
    t = data_table("seller", "token", "link", "guarantee kbit/s", "term s", "price (PKT)", "found at",
                   "link RTT ms (measured, free tier)", title="what the buyer finds: offers at the route servers")
    t.add_row(offer["seller"], offer["token"], offer["link"], str(offer["kbps"]), str(offer["end"] - offer["start"]),
              f"{offer['price'] / 2 ** 30:g}", offer["source"], f"{offer['measured']['rtt_ms']:.1f}")
    demo.console.print(t)

    demo.note(f"{BUYER} buys {offer['token']} by atomic swap")
    done = mesh.market_buy(BUYER, offer["seller"], offer["token"], price=offer["price"], wait=90)
    check(done["outcome"] == "completed", f"the swap ended {done['outcome']} in phase {done['phase']}: {done}")
    configured = mesh.market_configure(BUYER, MARKET_LEASE, max_priority_bandwidth=None)
    check(all(a.get("ok") for a in configured.values()), f"the new holder's signed request refused: {configured}")
    up_if = next(r["a_if"] if r["a"] == BUYER else r["b_if"] for r in mesh.run.state["links"]
                 if {r["a"], r["b"]} == {BUYER, SELLER_NODE})
    try:
        mesh.wait_until(lambda: mesh.route(BUYER, SINK)[0][1] == f"{up_if}:{MARKET_LEASE}", 20,
                        f"{BUYER}'s path to {SINK} over the lease it bought")
    except TimedOut as e:
        raise StepFailed(f"{e}; its path now: {path_text(mesh, BUYER, SINK)}") from None
    demo.note(f"flooding {BUYER} + {BEHIND} -> {SINK}, {BUYER} on its lease")
    leased = flood(mesh, [BUYER, BEHIND], SINK)
    t = data_table("", f"{BUYER} (the buyer)", f"{BEHIND} (free tier)",
                   title=f"UDP floods {BUYER} + {BEHIND} -> {SINK} over the 2 mbit/s link {BUYER}--{SELLER_NODE}, "
                         f"kbit/s received")
    t.add_row("both on the free tier", f"{free[BUYER]:.0f}", f"{free[BEHIND]:.0f}")
    t.add_row(f"{BUYER} on the lease it bought ({guarantee:.0f} kbit/s guaranteed)", f"{leased[BUYER]:.0f}",
              f"{leased[BEHIND]:.0f}")
    demo.console.print(t)
    check(leased[BUYER] >= 0.85 * guarantee, f"{BUYER} got {leased[BUYER]:.0f} kbit/s on its lease, below the "
                                             f"{guarantee:.0f} kbit/s guarantee")
    check(leased[BUYER] >= 1.3 * free[BUYER], f"{BUYER} got {leased[BUYER]:.0f} kbit/s on its lease, not more than "
                                              f"its {free[BUYER]:.0f} kbit/s on the free tier")
    return Proof(f"{BUYER} found {SELLER_NODE}'s offer at {offer['source']}, bought {offer['token']} by atomic swap "
                 f"for {offer['price'] / 2 ** 30:g} PKT (HTLC {done['outpoint']}), and its flooded throughput rose "
                 f"from {free[BUYER]:.0f} to {leased[BUYER]:.0f} kbit/s (guarantee {guarantee:.0f}; the free tier "
                 f"behind it {free[BEHIND]:.0f} -> {leased[BEHIND]:.0f})",
                 {"free": free, "leased": leased, "guarantee_kbit": guarantee, "source": offer["source"],
                  "swap": done["swap"], "outpoint": done["outpoint"]})


@step("the report")
def report(demo: Demo) -> Proof:
    """`pktlab report` of the run so far: plots and an HTML page in the output folder."""
    demo.note("drawing the report")
    result = render_report(demo.mesh.run.dir, demo.out / "report")
    empty = [p for p in result["plots"] if not os.path.getsize(p)]
    check(not empty, f"empty plots: {', '.join(empty)}")
    for p in [result["index"]] + result["plots"]:
        demo.console.print(f"   {p}")
    return Proof(f"{result['events']} events of the run drawn to {len(result['plots'])} plots and "
                 f"{result['index']} ({result['faults']} fault, {result['assertions']} assertions)",
                 {"index": result["index"], "plots": result["plots"]})


# -- running them ---------------------------------------------------------------------------------------------------

def run(out: Path = OUT, console: Console = console, name: str | None = None, steps=None, on_ready=None) -> Demo:
    """Build the mesh, serve the live view, run the steps, tear down. Returns the Demo (its proofs); raises
    StepFailed for a claim that did not hold, after the run is removed. on_ready(demo): called once the mesh is up
    (the tests note the run's records there, to check nothing of it is left)."""
    steps = STEPS if steps is None else steps
    out.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        t0 = time.monotonic()
        mesh = Mesh.up(TOPOLOGY, name=name or f"demo-{os.getpid()}", progress=Bars(progress))
        for task in progress.task_ids:
            progress.remove_task(task)
        overall = progress.add_task("demo", total=len(steps))
        events = EventLog(mesh.run.path(EVENTS_FILE))
        demo = Demo(mesh, out, console, lambda text: progress.update(overall, description=text), events)
        server = None
        try:
            server = ui.start_background(mesh)
            demo.ui_url = server.url
            console.print(styled(("live view: ", "bold"), server.url, f"   (mesh up in {time.monotonic() - t0:.1f} s)"))
            if on_ready:
                on_ready(demo)
            for i, fn in enumerate(steps, 1):
                title = getattr(fn, "title", fn.__name__)
                console.rule(f"{i}. {title}")
                progress.update(overall, description=title)
                try:
                    proof = fn(demo)
                except Exception as e:          # a claim that did not hold, or a tool that failed: named, not a trace
                    failure = e if isinstance(e, StepFailed) else StepFailed(f"{type(e).__name__}: {e}")
                    events.append(ASSERTION, name=fn.__name__, ok=False, message=str(failure))
                    console.print(styled((f"FAILED ({fn.__name__}): ", "bold red"), str(failure)))
                    raise failure from (None if failure is e else e)
                events.append(ASSERTION, name=fn.__name__, ok=True, message=proof.text,
                              **({"reach": proof.facts["reach"]} if "reach" in proof.facts else {}))
                demo.proofs.append(proof)
                console.print(styled(("proved: ", "bold green"), proof.text))
                progress.advance(overall)
        finally:
            progress.update(overall, description="tearing down")
            if server is not None:
                server.stop()
            t1 = time.monotonic()
            mesh.down()
            left = [n for n, rec in mesh.run.state["nodes"].items() if runs.alive(rec["pid"], rec.get("start"))]
            gone = not left and not mesh.run.dir.exists()
            console.print(styled(("torn down" if gone else "NOT torn down", "bold" if gone else "bold red"),
                                 f" in {time.monotonic() - t1:.1f} s: "
                                 + ("nothing of the run is left" if gone else f"still there: {left or mesh.run.dir}")))
    console.print(f"demo done in {time.monotonic() - t0:.0f} s; report in {out / 'report' / 'index.html'}")
    return demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the report goes (default {OUT})")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        console.print("the demo needs root (namespaces, TUN devices): sudo make demo")
        return 2
    try:
        run(args.out, console)
    except StepFailed:
        return 1                        # run() said what did not hold
    except RunError as e:               # the mesh could not be built
        console.print(styled(("the demo's mesh did not come up: ", "bold red"), str(e)))
        return 1
    except KeyboardInterrupt as e:      # the run was removed on the way out (Mesh.up or run()'s finally)
        console.print(str(e) if isinstance(e, runs.Interrupted) else "interrupted: the run was removed")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
