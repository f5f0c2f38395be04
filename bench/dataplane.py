"""Data-plane benchmark: TCP throughput (iperf3) and RTT (ping) over 1 and 5 hops for
(a) the raw veths (kernel IPv6 forwarding), (b) pktlab node agents with per-link encryption (the default: every
hop decrypts and re-encrypts each frame in its link session), (c) the same agents with plaintext links (only the
end-to-end sessions), (d) yggdrasil (which also encrypts every link), all on the same namespaces.

    python -m bench.dataplane [--hops 1 5] [--seconds 5]

Needs root. Prints a table with the ratio of every result to yggdrasil's and the cost of the link sessions per
hop ((b) against (c): throughput lost, RTT added per hop), and writes bench/results/dataplane.json. Issue
target: pktlab >= 0.5 x yggdrasil's 1-hop throughput.
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

from rich.console import Console
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


def ping_rtt(mesh, src, dst_addr, count=20):
    """(average, minimum) RTT in ms; the minimum is the least disturbed by other jobs on a shared machine."""
    r = mesh.run(src, "ping", "-6", "-c", str(count), "-i", "0.1", "-W", "2", dst_addr, timeout=60)
    m = re.search(r"= ([\d.]+)/([\d.]+)/", r.stdout)
    return (float(m.group(2)), float(m.group(1))) if m else (None, None)


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
    avg, least = ping_rtt(mesh, first, addr)
    return {"mbps": iperf(mesh, last, first, addr, seconds), "rtt_ms": avg, "rtt_min_ms": least}


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
            for system, link_crypto in (("pktlab", True), ("pktlab-plain", False)):
                console.log(f"{hops} hop(s): {system} agents")
                mesh.link_crypto = link_crypto
                mesh.start(timeout=30)
                results[system] = measure(mesh, first, last, last.ip6, seconds)
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


SYSTEMS = ("raw", "pktlab", "pktlab-plain", "yggdrasil")


def link_session_cost(res, hops):
    """What the per-link sessions cost over a path of ``hops`` hops: pktlab (encrypted links) against
    pktlab-plain, as throughput lost (fraction) and RTT added per hop (ms, from the minimum RTTs)."""
    on, off = res.get("pktlab", {}), res.get("pktlab-plain", {})
    out = {"throughput_lost": None, "rtt_added_per_hop_ms": None}
    if on.get("mbps") and off.get("mbps"):
        out["throughput_lost"] = round(1 - on["mbps"] / off["mbps"], 3)
    if on.get("rtt_min_ms") and off.get("rtt_min_ms"):
        out["rtt_added_per_hop_ms"] = round((on["rtt_min_ms"] - off["rtt_min_ms"]) / hops, 4)
    return out


def crypto_cpu_us(sizes=(100, 1400, 65000)):
    """CPU time of one seal + open in a link session (what each hop adds per frame and direction), in process."""
    from node.cjdns import keys
    from node.cjdns.link_session import LinkSession
    a_id, b_id = keys.Identity.from_seed(b"bench", 0), keys.Identity.from_seed(b"bench", 1)
    a, b = LinkSession(a_id, b_id.public_key), LinkSession(b_id, a_id.public_key)
    router_frame = bytes(7) + b"\x01" + bytes(60)
    for x, y in ((a, b), (b, a), (a, b), (b, a)):           # Hello, Key, data, data: both ends established
        y.open(x.seal(router_frame, 0.0), 0.0)
    out = {}
    for size in sizes:
        frame, n = bytes(size), max(200, 2_000_000 // size)
        started = time.perf_counter()
        for _ in range(n):
            b.open(a.seal(frame, 0.0), 0.0)
        out[str(size)] = round((time.perf_counter() - started) / n * 1e6, 2)
    return out


def costs_table(costs):
    t = Table(title="cost of the per-link CryptoAuth sessions (pktlab against pktlab-plain, same run)")
    for col in ("hops", "throughput lost", "min RTT added per hop ms"):
        t.add_column(col, justify="right")
    for hops, c in costs.items():
        lost, rtt = c["throughput_lost"], c["rtt_added_per_hop_ms"]
        t.add_row(hops, "-" if lost is None else f"{lost:.0%}", "-" if rtt is None else f"{rtt:.3f}")
    return t


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane", description=__doc__.split("\n")[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per measurement")
    args = parser.parse_args(argv)
    console = Console()
    if os.geteuid() != 0:
        console.print("[red]bench.dataplane needs root (network namespaces, TUN)[/red]")
        return 1
    for tool in ("iperf3", "ping", YGG):
        if not shutil.which(tool):
            console.print(f"[red]missing {tool}[/red]")
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
        for system in SYSTEMS:
            r = res.get(system, {})
            mbps, rtt = r.get("mbps"), r.get("rtt_ms")
            ratio = mbps / ygg["mbps"] if mbps and ygg.get("mbps") else None
            rtt_ratio = rtt / ygg["rtt_ms"] if rtt and ygg.get("rtt_ms") else None
            r["throughput_ratio_to_yggdrasil"] = ratio
            r["rtt_ratio_to_yggdrasil"] = rtt_ratio
            table.add_row(hops, system, f"{mbps:.0f}" if mbps else "-", f"{ratio:.2f}" if ratio else "-",
                          f"{rtt:.3f}" if rtt else "-", f"{rtt_ratio:.2f}" if rtt_ratio else "-")
    console.print(table)
    costs = {hops: link_session_cost(res, int(hops)) for hops, res in all_results.items()}
    costs["cpu_us_per_seal_and_open_by_frame_bytes"] = cpu = crypto_cpu_us()
    console.print(costs_table({h: c for h, c in costs.items() if h in all_results}))
    console.print("CPU per frame and hop (seal + open, one core): " +
                  ", ".join(f"{size} B {us:.1f} us" for size, us in cpu.items()))
    one = all_results.get("1", {})
    target = one.get("pktlab", {}).get("throughput_ratio_to_yggdrasil")
    if target is not None:
        console.print(f"1-hop throughput ratio pktlab/yggdrasil = {target:.2f} (target >= 0.5: "
                      f"{'met' if target >= 0.5 else 'NOT met'})")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"seconds": args.seconds, "results": all_results, "link_session_cost": costs,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "note": "same namespaces and veths for all four; MTU 65535 on veths, pktlab TUN MTU "
                           "default, yggdrasil IfMTU 65535"}, f, indent=2)
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
