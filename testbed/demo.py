"""`make demo`: a guided tour of one mesh, from `up` to `down`.

Brings up the bundled default topology, shows nodes/links/addresses, pings every link's two ends, shows the
end-to-end reachability matrix over the nodes' fc00::/8 addresses, measures iperf3 TCP over the longest path,
draws the topology, takes a link down under a running ping, watches the PKT chain's blocks appear (the default
topology's pool, miners and chain nodes) and tears everything down again.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from node.cjdns import labels
from testbed import faults, scenario
from testbed.backends.netns import exec_in
from testbed.cli.common import Bars
from testbed.console import data_table, make_console, styled
from testbed.mesh import Mesh
from testbed.topology import RUNNING_ROLES, save
from testbed.waiting import wait_until

console = make_console(width=120)
OUT = Path(os.environ.get("PKTLAB_DEMO_OUT", "demo-output"))


def shown_roles(roles) -> str:
    """The roles the node agent runs (a role it does not run yet is not shown as a feature)."""
    return ", ".join(r for r in roles if r in RUNNING_ROLES)


def summary(mesh: Mesh) -> Table:
    t = data_table("node", "roles", "ISP", "fc00::/8 address", "links (interface, underlay address)",
              title=f"run {mesh.run.name}: {len(mesh.topo.nodes)} nodes, {len(mesh.topo.links)} links")
    ends = {}
    for rec in mesh.run.state["links"]:
        ends.setdefault(rec["a"], []).append(f"{rec['a_if']} {rec['a_addr']} -> {rec['b']}")
        ends.setdefault(rec["b"], []).append(f"{rec['b_if']} {rec['b_addr']} -> {rec['a']}")
    for name, node in mesh.topo.nodes.items():
        t.add_row(name, shown_roles(node.roles), node.isp or "-", mesh.ip6(name), "\n".join(ends.get(name, [])))
    return t


def matrix(mesh: Mesh, ok: dict) -> Table:
    nodes = list(mesh.topo.nodes)
    t = data_table("from \\ to", *nodes, title="end-to-end reachability over fc00::/8 (ping6)")
    for a in nodes:
        t.add_row(a, *("·" if a == b else styled(("✓", "green") if ok[(a, b)] else ("✗", "red")) for b in nodes))
    return t


def iperf(mesh: Mesh, src: str, dst: str, seconds: int = 3) -> float:
    srv = exec_in(mesh.run, dst, ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = mesh.exec(src, ["iperf3", "-c", mesh.ip6(dst), "-t", str(seconds), "-J"], timeout=seconds + 20)
        data = json.loads(r.stdout)
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


def path_table(mesh: Mesh, src: str, dst: str) -> Table:
    t = data_table("hop", "node", "leaves by", "label on arrival", title=f"{src} -> {dst}")
    for i, (node, ifname, label) in enumerate(mesh.route(src, dst), 1):
        t.add_row(str(i), node, ifname, labels.label_text(label))
    t.add_row("", dst, "(its router: label 0000.0000.0000.0001)", "")
    return t


def link_fault(mesh: Mesh) -> None:
    """Take down a link on the path between two nodes that have another way round, measure the outage of a
    10 pings/s probe, let the path move, heal."""
    g = mesh.topo.graph()
    bridges = {frozenset(e) for e in nx.bridges(g)}
    candidates = []
    for a, b in ((a, b) for a in g for b in g if a < b):
        hops = mesh.route(a, b)
        nodes = [h[0] for h in hops] + [b]
        spare = [(x, y) for x, y in zip(nodes, nodes[1:]) if frozenset((x, y)) not in bridges]
        if spare:
            candidates.append((len(hops), a, b, spare[0]))
    if not candidates:
        console.print("   (this topology has no link with a way round it)")
        return
    _, src, dst, (x, y) = max(candidates)
    probe = exec_in(mesh.run, src, ["ping", "-6", "-n", "-D", "-i", "0.1", "-w", "12", mesh.ip6(dst)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    before = [h[0] for h in mesh.route(src, dst)] + [dst]
    fault = faults.apply_fault(mesh, f"link-down {x}--{y}", check=False)
    console.print(f"   probe {src} -> {dst} on {' -> '.join(before)}; link {x}--{y} down ({fault.id})")
    wait_until(lambda: frozenset((x, y)) not in _links_on(mesh, src, dst), 5)  # the mesh's own failover first
    static = mesh.run.state.get("routing") != "route-server"
    if static and frozenset((x, y)) in _links_on(mesh, src, dst):
        moved = scenario.reroute(mesh)
        console.print(f"   the orchestrator recomputed the paths around the down link ({moved} entries changed)")
    after = [h[0] for h in mesh.route(src, dst)] + [dst]
    console.print(f"   new path: {' -> '.join(after)}")
    out, _ = probe.communicate()
    ended = time.time()
    times = [float(m) for m in re.findall(r"^\[([\d.]+)\].*icmp_seq=", out, re.M)] + [ended]
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    console.print(styled("   outage (longest gap between replies): ", (f"{gap:.2f} s", "bold"),
                         f"; {sent.group(1)} probes sent, {sent.group(2)} answered" if sent else ""))
    faults.heal(mesh, fault.id, check=False)
    if static:
        scenario.reroute(mesh)
    console.print(f"   healed: {x}--{y} up again, {src} -> {dst} rtt {mesh.ping(src, dst):.2f} ms")


def _links_on(mesh: Mesh, src: str, dst: str) -> set:
    nodes = [h[0] for h in mesh.route(src, dst)] + [dst]
    return {frozenset(p) for p in zip(nodes, nodes[1:])}


def chain_step(mesh: Mesh, blocks: int = 3, within: float = 60.0) -> None:
    """Blocks appearing: the pool's announcement miners and block miner at work, every chain node following."""
    params = mesh.run.state["chain"]["config"]
    console.print(f"   chain parameters: block time {params['block_time']} s, retarget every "
                  f"{params['retarget_interval']} blocks, maturity {params['maturity']}, starting bits "
                  f"0x{params['genesis_bits']:08x} (from this machine's measured hash rate)")
    start, seen = time.monotonic(), -1
    while time.monotonic() - start < within:
        nodes = mesh.chain()["nodes"]
        heights = {n: st.get("height", -1) for n, st in nodes.items()}
        top = max(heights.values(), default=-1)
        if top > seen:
            seen = top
            console.print(f"   {time.monotonic() - start:5.1f} s  heights " +
                          ", ".join(f"{n} {h}" for n, h in heights.items()))
        if min(heights.values(), default=-1) >= blocks:
            break
        time.sleep(0.5)
    data = mesh.mining()
    t = Table("miner", "announcements/s accepted", "bytes uploaded", title="announcement miners")
    for n, m in data["miners"].items():
        t.add_row(n, f"{m['accepted_per_s']:.1f}", str(m["bytes_sent"]))
    console.print(t)
    for n, p in data["pools"].items():
        payout = p["last_payout"]
        console.print(f"   pool {n}: {p['anns'].get('accepted', 0)} announcements, {p['shares']} shares, "
                      f"{p['blocks']} blocks" + (f"; block {payout['height']} paid " + ", ".join(
                          f"{a[:10]}… {v / (1 << 30):.2f} PKT" for a, v in payout["outputs"]) if payout else ""))


def main() -> int:
    if os.geteuid() != 0:
        console.print("the demo needs root: sudo make demo")
        return 2
    OUT.mkdir(exist_ok=True)
    console.rule("pktlab demo")
    console.print("1. pktlab up default  (namespaces, veth links with tc shaping, one PKT routing-device agent per node)")
    t0 = time.monotonic()
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        mesh = Mesh.up("default", name=f"demo-{os.getpid()}", progress=Bars(progress))
    console.print(f"   ready in {time.monotonic() - t0:.1f} s (every node reaches every other end to end)")
    try:
        console.print(summary(mesh))

        console.print("2. every link's two ends ping each other over the underlay")
        pings = mesh.ping_link_ends()
        t = data_table("link end", "rtt (ms)")
        for k, v in pings.items():
            t.add_row(k, styled(("no reply", "red")) if v is None else f"{v:.3f}")
        console.print(t)

        console.print("3. end-to-end reachability (CryptoAuth sessions over source-routed labels)")
        console.print(matrix(mesh, mesh.reachability(mesh.pairs(sample=None))))

        g = mesh.topo.graph()
        src, dst = max(((a, b) for a in g for b in g if a < b), key=lambda p: nx.shortest_path_length(g, *p))
        hops = nx.shortest_path_length(g, src, dst)
        console.print(f"4. iperf3 TCP from {src} to {dst} ({hops} hops, through the agents, encrypted end to end)")
        console.print(f"   {iperf(mesh, src, dst):.1f} Mbit/s")

        console.print(f"5. the path {src} uses for {dst}, decoded hop by hop from its switch label:")
        console.print(path_table(mesh, src, dst))

        png = OUT / "topology.png"
        save(mesh.topo, png)
        console.print(f"6. topology drawn to {png}")

        console.print("7. a fault: a link on the active path goes down under a running ping")
        link_fault(mesh)

        console.print("8. the PKT chain: announcements and blocks mined over the mesh (pktlab chain / mining)")
        chain_step(mesh)
    finally:
        t0 = time.monotonic()
        mesh.down()
        console.print(f"9. pktlab down: everything removed in {time.monotonic() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
