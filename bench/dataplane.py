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
from testbed.backends import exec_in
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "dataplane.json")


def ping_rtt(mesh, src, dst_addr, count=20):
    """(average, minimum) RTT in ms; the minimum is the least disturbed by other jobs on a shared machine."""
    r = mesh.exec(src, ["ping", "-6", "-c", str(count), "-i", "0.1", "-W", "2", dst_addr], timeout=60)
    m = re.search(r"= ([\d.]+)/([\d.]+)/", r.stdout)
    return (float(m.group(2)), float(m.group(1))) if m else (None, None)


def set_link_crypto(mesh, on: bool) -> None:
    """Every agent config of the run with its peer links encrypted (the default) or in plaintext."""
    for node in mesh.nodes:
        path = mesh.run.path("nodes", node, "agent.json")
        config = json.loads(path.read_text())
        for peer in config["peers"]:
            peer["link_crypto"] = on
        path.write_text(json.dumps(config, indent=2))


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
    avg, least = ping_rtt(mesh, first, addr)
    return {"mbps": iperf(mesh, last, first, addr, seconds), "rtt_ms": avg, "rtt_min_ms": least}


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
    """The four systems on one run's namespaces and veths: a line of hops + 1 nodes."""
    from testbed.mesh import Mesh
    results = {}
    mesh = Mesh.up(f"line:{hops + 1}", name=f"bench-dataplane-{hops}", seed=1, agents=False)
    try:
        first, last = mesh.nodes[0], mesh.nodes[-1]
        console.log(f"{hops} hop(s): raw veth")
        setup_raw_routes(mesh)
        results["raw"] = measure(mesh, first, last, mesh.run.state["links"][-1]["b_addr"], seconds)
        for system, crypto in (("pktlab", True), ("pktlab-plain", False)):
            console.log(f"{hops} hop(s): {system} agents")
            set_link_crypto(mesh, crypto)
            mesh.start_all_agents(lambda *a: None, None)
            mesh.wait_reachable(lambda *a: None, 30)
            results[system] = measure(mesh, first, last, mesh.ip6(last), seconds)
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
                   "note": "same run's namespaces and veths for all four (pktlab up line:N --no-agents, then each "
                           "system in turn; pktlab-plain: the same agent configs with link_crypto false); MTU 65535 "
                           "on veths, pktlab TUN MTU default, yggdrasil IfMTU 65535"},
                  f, indent=2)
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
