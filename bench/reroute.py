"""Reroute benchmark: how long a TCP flow stalls when a link under it is cut, pktlab (route servers) vs yggdrasil.

    python -m bench.reroute [--rows 4 --cols 4] [--before 3] [--after 8] [--trials 3]

A grid of two Cloud ISPs (route servers in both) comes up with `Mesh.up`. A small Python receiver in the far corner
timestamps every chunk of a paced TCP flow from the near corner; after `--before` seconds the busiest link of the
flow (found from the veth byte counters, preferring one that touches neither end) is cut with the link-down fault
(both veth ends down). The outage is the longest gap between received chunks. Then the pktlab agents are stopped,
yggdrasil runs on the same namespaces and veths, and the same experiment runs again. Each system gets `--trials`
cuts (each healed before the next); the table shows the median and the worst outage.

Needs root. Prints a table with the ratio of every outage to yggdrasil's and writes bench/results/reroute.json.
Issue target: pktlab outage under 1 s.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from testbed.console import make_console
from rich.table import Table

from bench.yggdrasil import YGG, YGG_PORT, stop_procs, wait_listening, write_config
from testbed import faults
from testbed.backends import exec_in
from testbed.mesh import Mesh
from testbed.topology.generators import two_isp_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "reroute.json")
FLOW_PORT = 5301
CHUNK = 8192
CHUNKS_PER_S = 200          # 1.6 MB/s: a gap shows at 5 ms resolution, and the flow never fills the links

RECEIVER = r"""
import json, socket, sys, time
end = float(sys.argv[1])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", int(sys.argv[2]))); srv.listen(1); srv.settimeout(max(1.0, end - time.time()))
conn, _ = srv.accept()
conn.settimeout(0.2)
first = last = None; total = 0; gap = 0.0; gap_at = None
while time.time() < end:
    try:
        data = conn.recv(65536)
    except socket.timeout:
        continue
    if not data:
        break
    now = time.time()
    if last is not None and now - last > gap:
        gap, gap_at = now - last, last
    first = first or now; last = now; total += len(data)
print(json.dumps({"bytes": total, "first": first, "last": last, "max_gap_s": gap, "gap_start": gap_at}))
"""

SENDER = r"""
import socket, sys, time
addr, port, end, chunk, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
while time.time() < end:
    try:
        s = socket.create_connection((addr, port), timeout=2); break
    except OSError:
        time.sleep(0.2)
s.settimeout(None)
buf = bytes(chunk); step = 1.0 / rate; nxt = time.time()
while time.time() < end:
    s.sendall(buf)
    nxt += step
    time.sleep(max(0.0, nxt - time.time()))
"""


def tx_bytes(mesh: Mesh) -> dict:
    """(node, ifname) -> bytes sent, for every link end."""
    out = {}
    for rec in mesh.run.state["links"]:
        for node, ifname in ((rec["a"], rec["a_if"]), (rec["b"], rec["b_if"])):
            r = mesh.exec(node, ["cat", f"/sys/class/net/{ifname}/statistics/tx_bytes"], timeout=10)
            out[(node, ifname)] = int(r.stdout.strip() or 0)
    return out


def busiest_link(mesh: Mesh, before: dict, after: dict, src: str, dst: str) -> str:
    """The link that carried most of the flow, preferring one that touches neither end."""
    load = {}
    for rec in mesh.run.state["links"]:
        moved = sum(after[k] - before[k] for k in ((rec["a"], rec["a_if"]), (rec["b"], rec["b_if"])))
        inner = src not in (rec["a"], rec["b"]) and dst not in (rec["a"], rec["b"])
        load[(inner, moved)] = f"{rec['a']}--{rec['b']}"
    return load[max(load)]


def flow_experiment(mesh: Mesh, src: str, dst: str, addr: str, before_s: float, after_s: float, console) -> dict:
    start = time.time()
    end = start + 1.5 + before_s + after_s
    recv = exec_in(mesh.run, dst, [sys.executable, "-c", RECEIVER, str(end), str(FLOW_PORT)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(0.5)
    send = exec_in(mesh.run, src, [sys.executable, "-c", SENDER, addr, str(FLOW_PORT), str(end), str(CHUNK),
                                   str(CHUNKS_PER_S)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True, start_new_session=True)
    fault = None
    try:
        time.sleep(1.0)
        counters = tx_bytes(mesh)
        time.sleep(max(0.5, before_s - 1.0 - (time.time() - start - 1.5)))
        link = busiest_link(mesh, counters, tx_bytes(mesh), src, dst)
        cut_at = time.time()
        fault = faults.apply_fault(mesh, f"link-down {link}", check=False)
        console.log(f"cut {link} at +{cut_at - start:.1f} s")
        out, err = recv.communicate(timeout=end - time.time() + 15)
    finally:
        for p in (send, recv):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        if fault is not None:
            faults.heal(mesh, fault.id, check=False)
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"receiver gave no result: {err.strip()[-300:]}", "cut": link}
    res["cut"] = link
    res["cut_at"] = cut_at
    if res["last"] is None:
        res["outage_s"] = None
        res["error"] = "no data received"
    elif res["last"] < end - 1.0:         # never recovered: the outage runs to the end
        res["outage_s"] = end - max(res["last"], cut_at)
        res["recovered"] = False
    else:
        res["outage_s"] = res["max_gap_s"]
        res["recovered"] = True
    return res


def trials(mesh: Mesh, src: str, dst: str, addr: str, args, console) -> dict:
    """`--trials` cuts (each healed after), summarised by the median and the worst outage."""
    runs = []
    for i in range(args.trials):
        if i:
            time.sleep(3)                 # the healed link is back in the routes before the next cut
        runs.append(flow_experiment(mesh, src, dst, addr, args.before, args.after, console))
    outages = sorted(r["outage_s"] for r in runs if r.get("outage_s") is not None)
    out = {"trials": runs, "outage_s": outages[len(outages) // 2] if outages else None,
           "worst_s": outages[-1] if outages else None, "recovered": all(r.get("recovered") for r in runs),
           "cut": ", ".join(r.get("cut", "-") for r in runs), "bytes": sum(r.get("bytes", 0) for r in runs)}
    if len(outages) < len(runs):
        out["error"] = "; ".join(r["error"] for r in runs if "error" in r)
    return out


def start_yggdrasil(mesh: Mesh, workdir: str) -> tuple[list, dict]:
    links = mesh.run.state["links"]
    listens = {n: [] for n in mesh.topo.nodes}
    dials = {n: [] for n in mesh.topo.nodes}
    for rec in links:
        listens[rec["a"]].append(f"tcp://[{rec['a_addr']}]:{YGG_PORT}")
        listens[rec["b"]].append(f"tcp://[{rec['b_addr']}]:{YGG_PORT}")
        dials[rec["a"]].append(f"tcp://[{rec['b_addr']}]:{YGG_PORT}")   # one connection per link: a dials b
    procs, addrs = [], {}
    # a dials b, and b comes later in the grid's order: start from the end, so every listener is up before it is
    # dialled (yggdrasil backs off for a long time after a refused dial)
    for node in reversed(list(mesh.topo.nodes)):
        path, addrs[node] = write_config(workdir, node, dials[node], listens[node])
        log_path = os.path.join(workdir, f"ygg-{node}.log")
        with open(log_path, "w") as log:
            procs.append(exec_in(mesh.run, node, [YGG, "-useconffile", path], stdout=log, stderr=log,
                                 start_new_session=True))
        wait_listening(log_path, len(listens[node]))
    return procs, addrs


def wait_ping(mesh: Mesh, src: str, addr: str, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if mesh.exec(src, ["ping", "-6", "-n", "-c", "1", "-W", "1", addr], timeout=5).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.3)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reroute", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=4)
    parser.add_argument("--before", type=float, default=3.0, help="seconds of flow before the cut")
    parser.add_argument("--after", type=float, default=8.0, help="seconds of flow after the cut")
    parser.add_argument("--trials", type=int, default=5, help="link cuts per system (median and worst reported)")
    parser.add_argument("--skip-yggdrasil", action="store_true")
    args = parser.parse_args(argv)
    console = make_console()
    if os.geteuid() != 0:
        console.print("bench.reroute needs root (network namespaces, TUN)", style="red")
        return 1
    src, dst = "n0x0", f"n{args.rows - 1}x{args.cols - 1}"
    results = {}
    started = time.monotonic()
    mesh = Mesh.up(two_isp_grid(args.rows, args.cols), name=f"bench-reroute-{os.getpid()}", seed=7, wait=60)
    try:
        with tempfile.TemporaryDirectory(prefix="pktlab-reroute-") as workdir:
            console.log(f"pktlab up ({len(mesh.topo.nodes)} nodes, route servers "
                        f"{', '.join(mesh.topo.nodes_with_role('route_server'))})")
            if wait_ping(mesh, src, mesh.ip6(dst), 30) is None:
                results["pktlab"] = {"error": f"{src} does not reach {dst}"}
            else:
                results["pktlab"] = trials(mesh, src, dst, mesh.ip6(dst), args, console)
            if not args.skip_yggdrasil:
                for node in mesh.topo.nodes:
                    mesh.stop_agent(node)
                procs, addrs = start_yggdrasil(mesh, workdir)
                try:
                    converged = wait_ping(mesh, src, addrs[dst], 60)
                    if converged is None:
                        with open(os.path.join(workdir, f"ygg-{src}.log")) as f:
                            console.print(f.read()[-1500:])
                        results["yggdrasil"] = {"error": f"{src} does not reach {dst} over yggdrasil"}
                    else:
                        time.sleep(2)      # let the tree settle before measuring
                        results["yggdrasil"] = trials(mesh, src, dst, addrs[dst], args, console)
                finally:
                    stop_procs(procs)
    finally:
        mesh.down()

    ygg = results.get("yggdrasil", {}).get("outage_s")
    table = Table(title=f"outage of a TCP flow {src} -> {dst} when the busiest link under it is cut "
                        f"({args.rows}x{args.cols} grid, two ISPs)")
    for col in ("system", "cut links", "median outage s", "x yggdrasil", "worst s", "recovered", "MB received"):
        table.add_column(col, justify="right")
    for system in ("pktlab", "yggdrasil"):
        r = results.get(system)
        if r is None:
            continue
        out = r.get("outage_s")
        r["ratio_to_yggdrasil"] = out / ygg if out is not None and ygg else None
        table.add_row(system, r.get("cut", "-"), f"{out:.3f}" if out is not None else r.get("error", "-"),
                      f"{r['ratio_to_yggdrasil']:.2f}" if r["ratio_to_yggdrasil"] else "-",
                      f"{r['worst_s']:.3f}" if r.get("worst_s") is not None else "-", str(r.get("recovered", "-")), f"{r.get('bytes', 0) / 1e6:.1f}")
    console.print(table)
    out = results.get("pktlab", {}).get("outage_s")
    if out is not None:
        console.print(f"pktlab median outage {out:.3f} s over {args.trials} cut(s) (target < 1 s: "
                      f"{'met' if out < 1 else 'NOT met'})")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"rows": args.rows, "cols": args.cols, "src": src, "dst": dst, "trials": args.trials,
                   "before_s": args.before,
                   "after_s": args.after, "flow": f"TCP, {CHUNK} B x {CHUNKS_PER_S}/s", "results": results,
                   "wall_s": round(time.monotonic() - started, 1),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
