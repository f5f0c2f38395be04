"""Data-plane benchmark: TCP throughput (iperf3) and RTT (ping) over 1 and 5 hops for
(a) the raw veths (kernel IPv6 forwarding), (b) pktlab node agents, (c) yggdrasil, all on the same namespaces.

    python -m bench.dataplane [--hops 1 5] [--seconds 5]

Needs root. Prints a table with the ratio of every result to yggdrasil's and writes
bench/results/dataplane.json. Issue target: pktlab >= 0.5 x yggdrasil's 1-hop throughput.
"""

import argparse
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
from testbed.backends.netns import exec_in
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "dataplane.json")


def ping_rtt(mesh, src, dst_addr, count=10):
    r = mesh.exec(src, ["ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", dst_addr], timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def wait_ping(mesh, src, dst_addr, timeout=30):
    return wait_until(lambda: mesh.exec(src, ["ping", "-6", "-c", "1", "-W", "1", dst_addr], timeout=10).returncode == 0,
                      timeout)


def iperf(mesh, server, client, addr, seconds):
    srv = exec_in(mesh.run, server, ["iperf3", "-s", "-1", "-B", addr], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.5)
        r = mesh.exec(client, ["iperf3", "-c", addr, "-t", str(seconds), "-J"], timeout=seconds + 60)
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
def setup_raw_routes(mesh):
    """Kernel IPv6 forwarding along the line, over the links' underlay /64s (routes inside the run's namespaces)."""
    links = mesh.run.state["links"]                         # link k joins n(k+1) (a, ::1) and n(k+2) (b, ::2)
    nets = [rec["a_addr"].rsplit("::", 1)[0] + "::/64" for rec in links]
    for i, node in enumerate(mesh.nodes):
        assert mesh.exec(node, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]).returncode == 0
        for k, net in enumerate(nets):
            if k > i:          # to the right: via the next node's address on my right-hand link
                via = links[i]["b_addr"]
            elif k < i - 1:    # to the left: via the previous node's address on my left-hand link
                via = links[i - 1]["a_addr"]
            else:
                continue
            assert mesh.exec(node, ["ip", "-6", "route", "add", net, "via", via]).returncode == 0


# -- (c) yggdrasil --------------------------------------------------------------------------------------------
def start_yggdrasil(mesh, workdir):
    procs, addrs = [], {}
    links = mesh.run.state["links"]
    # Everyone dials its right-hand neighbour, so start from the right: each listener is up before it is dialled
    # (yggdrasil backs off for a long time after a refused dial).
    for i in reversed(range(len(mesh.nodes))):
        node = mesh.nodes[i]
        mine = [rec["a_addr"] for rec in links if rec["a"] == node] + [rec["b_addr"] for rec in links if rec["b"] == node]
        peers = [f"tcp://[{rec['b_addr']}]:{YGG_PORT}" for rec in links if rec["a"] == node]   # dial to the right
        path, addrs[node] = write_config(workdir, node, peers, [f"tcp://[{a}]:{YGG_PORT}" for a in mine])
        log_path = os.path.join(workdir, f"ygg-{node}.log")
        with open(log_path, "w") as log:
            procs.append(exec_in(mesh.run, node, [YGG, "-useconffile", path], stdout=log, stderr=log,
                                 start_new_session=True))
        wait_listening(log_path, len(mine))
    return procs, addrs


def run_hops(hops, seconds, console):
    """The three systems on one run's namespaces and veths: a line of hops + 1 nodes."""
    from testbed.mesh import Mesh
    results = {}
    mesh = Mesh.up(f"line:{hops + 1}", name=f"bench-dataplane-{hops}", seed=1, agents=False)
    try:
        first, last = mesh.nodes[0], mesh.nodes[-1]
        console.log(f"{hops} hop(s): raw veth")
        setup_raw_routes(mesh)
        results["raw"] = measure(mesh, first, last, mesh.run.state["links"][-1]["b_addr"], seconds)
        console.log(f"{hops} hop(s): pktlab agents")
        mesh.start_all_agents(lambda *a: None, None)
        mesh.wait_reachable(lambda *a: None, 30)
        results["pktlab"] = measure(mesh, first, last, mesh.ip6(last), seconds)
        for node in mesh.nodes:
            mesh.stop_agent(node)
        console.log(f"{hops} hop(s): yggdrasil")
        with tempfile.TemporaryDirectory(prefix="pktlab-bench-") as workdir:
            procs, addrs = start_yggdrasil(mesh, workdir)
            try:
                results["yggdrasil"] = measure(mesh, first, last, addrs[last], seconds)
            finally:
                stop_procs(procs)
    finally:
        mesh.down()
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
    all_results = {}
    for hops in args.hops:
        all_results[str(hops)] = run_hops(hops, args.seconds, console)

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
                   "note": "same run's namespaces and veths for all three (pktlab up line:N --no-agents, then each "
                           "system in turn); MTU 65535 on veths, pktlab TUN MTU default, yggdrasil IfMTU 65535"},
                  f, indent=2)
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
