"""Bring-up benchmark: build and tear down grids with shaped links, pktlab against one process per operation.

The baseline builds the same grid the way meshnet-lab and Mininet do: one `ip` or `tc` process per operation
(named namespaces, veth pairs, link up, address, HTB qdisc and class), measured in the same run on the same
machine. `python -m bench.bringup [--sizes 25,100,400,1000] [--baseline-max 400]`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import console, previous, ratio, table, write
from testbed.backends.netns import link_addresses, run_prefix
from testbed.mesh import Mesh
from testbed.topology import load

RATE = "10mbit"


def grid(n: int) -> str:
    side = int(round(n ** 0.5))
    return f"grid:{side}x{side},rate={RATE}"


def pktlab_once(spec: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    mesh = Mesh.up(spec, name=f"bench-{os.getpid()}", agents=False)
    t1 = time.perf_counter()
    mesh.down()
    return t1 - t0, time.perf_counter() - t1


def _sh(*argv) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def baseline_once(spec: str) -> tuple[float, float]:
    """One process per operation, as meshnet-lab's shell scripts and Mininet's link code do."""
    topo = load(spec)
    tag = f"pb{os.getpid()}"
    ns = {n: f"{tag}-{i}" for i, n in enumerate(topo.nodes)}
    prefix = run_prefix(tag)
    t0 = time.perf_counter()
    try:
        for n in topo.nodes:
            _sh("ip", "netns", "add", ns[n])
            _sh("ip", "-n", ns[n], "link", "set", "lo", "up")
        count = {n: 0 for n in topo.nodes}
        for i, link in enumerate(topo.links):
            a_if, b_if = f"{link.a}-eth{count[link.a]}", f"{link.b}-eth{count[link.b]}"
            count[link.a] += 1
            count[link.b] += 1
            _sh("ip", "link", "add", f"{tag}a", "netns", ns[link.a], "type", "veth", "peer", "name", f"{tag}b",
                "netns", ns[link.b])
            a_addr, b_addr = link_addresses(prefix, i)
            for node, tmp, ifname, addr in ((link.a, f"{tag}a", a_if, a_addr), (link.b, f"{tag}b", b_if, b_addr)):
                _sh("ip", "-n", ns[node], "link", "set", tmp, "name", ifname)
                _sh("ip", "-n", ns[node], "link", "set", ifname, "up")
                _sh("ip", "-n", ns[node], "addr", "add", f"{addr}/64", "dev", ifname, "nodad")
                _sh("tc", "-n", ns[node], "qdisc", "add", "dev", ifname, "root", "handle", "1:", "htb", "default", "1")
                _sh("tc", "-n", ns[node], "class", "add", "dev", ifname, "parent", "1:", "classid", "1:1", "htb",
                    "rate", RATE, "ceil", RATE)
        t1 = time.perf_counter()
    finally:
        t_down = time.perf_counter()
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return t1 - t0, time.perf_counter() - t_down


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="25,100,400,1000")
    ap.add_argument("--baseline-max", type=int, default=400,
                    help="largest grid for the one-process-per-operation baseline (it is slow)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        console.print("bench.bringup needs root")
        return 2
    prev = {r["nodes"]: r for r in (previous("bringup") or {}).get("rows", [])}
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        spec = grid(n)
        topo = load(spec)
        console.print(f"grid of {len(topo.nodes)} nodes, {len(topo.links)} links ...")
        up, down = pktlab_once(spec)
        b_up = b_down = None
        if n <= args.baseline_max:
            b_up, b_down = baseline_once(spec)
        p = prev.get(len(topo.nodes), {})
        rows.append({"nodes": len(topo.nodes), "links": len(topo.links), "pktlab_up_s": up, "pktlab_down_s": down,
                     "baseline_up_s": b_up, "baseline_down_s": b_down,
                     "speedup_up": ratio(b_up, up), "speedup_down": ratio(b_down, down),
                     "previous_up_s": p.get("pktlab_up_s"), "previous_down_s": p.get("pktlab_down_s")})
    console.print(table("bring-up of shaped grids (seconds; speed-up = baseline / pktlab)",
                        ["nodes", "links", "pktlab up", "baseline up", "speed-up", "pktlab down", "baseline down",
                         "speed-up", "previous up", "previous down"],
                        [[r["nodes"], r["links"], r["pktlab_up_s"], r["baseline_up_s"], r["speedup_up"],
                          r["pktlab_down_s"], r["baseline_down_s"], r["speedup_down"], r["previous_up_s"],
                          r["previous_down_s"]] for r in rows]))
    targets = {"up_100_s": 2.0, "up_1000_s": 20.0, "down_1000_s": 5.0}
    path = write("bringup", {"rate": RATE, "targets": targets, "rows": rows})
    console.print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
