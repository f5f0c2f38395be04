"""Data-plane benchmark: TCP throughput (iperf3) and RTT (ping) over 1 and 5 hops for
(a) the raw veths (kernel IPv6 forwarding), (b) pktlab node agents, (c) yggdrasil, all on the same namespaces.

    python -m bench.dataplane [--hops 1 5] [--seconds 5]

Needs root. Prints a table with the ratio of every result to yggdrasil's and writes
bench/results/dataplane.json. Issue target: pktlab >= 0.5 x yggdrasil's 1-hop throughput.
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from testbed.console import make_console
from rich.table import Table

from bench.yggdrasil import YGG, YGG_PORT, stop_procs, wait_listening, write_config
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "dataplane.json")


def _load_harness():
    spec = importlib.util.spec_from_file_location(
        "agent_harness", os.path.join(ROOT, "tests", "integration", "agent_harness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ping_rtt(mesh, src, dst_addr, count=10):
    r = mesh.run(src, "ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", dst_addr, timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def wait_ping(mesh, src, dst_addr, timeout=30):
    return wait_until(lambda: mesh.run(src, "ping", "-6", "-c", "1", "-W", "1", dst_addr, timeout=10).returncode == 0,
                      timeout)


def iperf(mesh, server, client, addr, seconds):
    srv = mesh.popen(server, "iperf3", "-s", "-1", "-B", addr, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = mesh.run(client, "iperf3", "-c", addr, "-t", str(seconds), "-J", timeout=seconds + 60)
        data = json.loads(r.stdout or "{}")
        if "end" not in data:
            return None
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(5)


def measure(mesh, first, last, addr, seconds):
    if not wait_ping(mesh, first, addr):
        return {"mbps": None, "rtt_ms": None, "error": "not reachable"}
    return {"mbps": iperf(mesh, last, first, addr, seconds), "rtt_ms": ping_rtt(mesh, first, addr)}


# -- (a) raw veth with kernel forwarding ---------------------------------------------------------------------
def setup_raw_routes(mesh, nodes):
    n = len(nodes)
    for i, node in enumerate(nodes):
        mesh.run(node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", check=True)
        for k in range(1, n):          # link k joins nodes k-1 (::1) and k (::2)
            if k > i + 1:
                mesh.run(node, "ip", "-6", "route", "add", f"fd00:{k:x}::/64", "via", f"fd00:{i + 1:x}::2",
                         check=True)
            elif k < i:
                mesh.run(node, "ip", "-6", "route", "add", f"fd00:{k:x}::/64", "via", f"fd00:{i:x}::1",
                         check=True)


# -- (c) yggdrasil --------------------------------------------------------------------------------------------
def start_yggdrasil(mesh, nodes, workdir):
    procs, addrs = [], {}
    # Everyone dials its right-hand neighbour, so start from the right: each listener is up before it is dialled
    # (yggdrasil backs off for a long time after a refused dial).
    for node in reversed(nodes):
        peers = [f"tcp://[{p['peer_addr']}]:{YGG_PORT}" for p in node.peers
                 if p["local_addr"].endswith("::1")]       # dial only to the right: one connection per link
        path, addrs[node.name] = write_config(workdir, node.name, peers,
                                              [f"tcp://[{p['local_addr']}]:{YGG_PORT}" for p in node.peers])
        log_path = os.path.join(workdir, f"ygg-{node.name}.log")
        with open(log_path, "w") as log:
            procs.append(mesh.popen(node, YGG, "-useconffile", path, stdout=log, stderr=log))
        wait_listening(log_path, len(node.peers))
    return procs, addrs


def run_hops(harness, hops, seconds, console):
    results = {}
    with tempfile.TemporaryDirectory(prefix="pktlab-bench-") as workdir:
        mesh = harness.Mesh(workdir, seed=b"bench-dataplane")
        try:
            nodes = mesh.line(hops + 1)
            first, last = nodes[0], nodes[-1]
            console.log(f"{hops} hop(s): raw veth")
            setup_raw_routes(mesh, nodes)
            results["raw"] = measure(mesh, first, last, f"fd00:{hops:x}::2", seconds)
            console.log(f"{hops} hop(s): pktlab agents")
            mesh.start(timeout=30)
            results["pktlab"] = measure(mesh, first, last, last.ip6, seconds)
            for node in nodes:
                mesh.stop_agent(node)
            console.log(f"{hops} hop(s): yggdrasil")
            procs, addrs = start_yggdrasil(mesh, nodes, workdir)
            try:
                results["yggdrasil"] = measure(mesh, first, last, addrs[last.name], seconds)
            finally:
                stop_procs(procs)
        finally:
            mesh.cleanup()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane", description=__doc__.split("\n")[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per measurement")
    args = parser.parse_args(argv)
    console = make_console()
    if os.geteuid() != 0:
        console.print("bench.dataplane needs root (network namespaces, TUN)", style="red")
        return 1
    for tool in ("iperf3", "ping", YGG):
        if not shutil.which(tool):
            console.print(f"missing {tool}", style="red")
            return 1
    harness = _load_harness()
    all_results = {}
    for hops in args.hops:
        all_results[str(hops)] = run_hops(harness, hops, args.seconds, console)

    table = Table(title="pktlab data plane vs yggdrasil (TCP via iperf3, RTT via ping)")
    for col in ("hops", "system", "Mbit/s", "x yggdrasil", "RTT ms", "RTT x yggdrasil"):
        table.add_column(col, justify="right")
    for hops, res in all_results.items():
        ygg = res.get("yggdrasil", {})
        for system in ("raw", "pktlab", "yggdrasil"):
            r = res.get(system, {})
            mbps, rtt = r.get("mbps"), r.get("rtt_ms")
            ratio = mbps / ygg["mbps"] if mbps and ygg.get("mbps") else None
            rtt_ratio = rtt / ygg["rtt_ms"] if rtt and ygg.get("rtt_ms") else None
            r["throughput_ratio_to_yggdrasil"] = ratio
            r["rtt_ratio_to_yggdrasil"] = rtt_ratio
            table.add_row(hops, system, f"{mbps:.0f}" if mbps else "-", f"{ratio:.2f}" if ratio else "-",
                          f"{rtt:.3f}" if rtt else "-", f"{rtt_ratio:.2f}" if rtt_ratio else "-")
    console.print(table)
    one = all_results.get("1", {})
    target = one.get("pktlab", {}).get("throughput_ratio_to_yggdrasil")
    if target is not None:
        console.print(f"1-hop throughput ratio pktlab/yggdrasil = {target:.2f} (target >= 0.5: "
                      f"{'met' if target >= 0.5 else 'NOT met'})")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"seconds": args.seconds, "results": all_results,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "note": "same namespaces and veths for all three; MTU 65535 on veths, pktlab TUN MTU "
                           "default, yggdrasil IfMTU 65535"}, f, indent=2)
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
