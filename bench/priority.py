"""PKT leases and priorities on real namespaces: experiments 1-4 of issue 6, UDP floods measured at the receiver.

    a1 (shopa) --a_in--\\
    b1 (shopb) --b_in---- core1 (backbone) --a_up / b_up / g_up / free, 2 mbit/s--> sink
    g1 (shopg) --g_in--/     |
    f1 (no isp) --free------/

One mesh from a topology with declared leases (testbed/topology/leases.py); between experiments the holders change their
leases live with signed configuration requests, as a PKT lease holder would. a1, b1 and g1 send priority 15
with the customer bit ("lease_origin"), g1 priority 1; f1 is unclassed on the free tier. Every flood sends
900-byte UDP datagrams at ~2.2 mbit/s per sender; the sink counts bytes per second per source
(testbed/udp_receiver.py).

    baseline  a1 alone: the goodput the congested link delivers (what "capacity" means below)
    1a        a1 + b1, max-priority-bandwidth 2000 : 200      -> shares 10:1 (within 20 %)
    1b        a1 + b1, 1000 : 1000 (signed requests)           -> 1:1 (within 10 %)
    2         b1 alone at priority 0 (b_in limit 0)            -> >= 90 % of the baseline
    3a        f1 alone on the free tier                        -> >= 90 % of the baseline
    3b        f1 + a1 (a paid lease saturating the link)       -> f1 < 5 % of the baseline
    4         g1 (guarantee G = 500 kbit/s, priority 1) + a1 (priority > 1) -> g1 >= 0.9 G

`python -m bench.priority` (root) prints a table of measured ratios against the targets and writes
bench/results/priority.json and bench/results/priority_<experiment>.png (throughput per flow over time).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.common import RESULTS, console, table, write
from node.leases import requests as cr

NAME = "priority"
RATE_BPS = 2_000_000
G_BPS = 500_000
FLOOD_S, WARMUP_S = 9, 3
PORT = 9100
PPS = 300

TOPOLOGY = {
    "name": "bench-priority", "seed": 5,
    "defaults": {"delay": "1ms"},
    "isps": {
        "backbone": {"relations": {"shopa": "customer", "shopb": "customer", "shopg": "customer"}, "leases": [
            {"link": "a1--core1", "id": "a_in", "max_priority_bandwidth": 2000},
            {"link": "b1--core1", "id": "b_in", "max_priority_bandwidth": 200},
            {"link": "g1--core1", "id": "g_in"},
            {"link": "core1--sink", "id": "a_up", "holder": "shopa", "deprioritize_non_customer": None},
            {"link": "core1--sink", "id": "b_up", "holder": "shopb", "deprioritize_non_customer": None},
            {"link": "core1--sink", "id": "g_up", "holder": "shopg", "guarantee": f"{G_BPS}bit",
             "deprioritize_non_customer": None}]},
        "shopa": {}, "shopb": {}, "shopg": {}},
    "nodes": {
        "core1": {"isp": "backbone"},
        "sink": {"isp": "backbone"},
        "a1": {"isp": "shopa",
               "attrs": {"lease_origin": {"priority": 15, "customer": True}}},
        "b1": {"isp": "shopb",
               "attrs": {"lease_origin": {"priority": 15, "customer": True}}},
        "g1": {"isp": "shopg",
               "attrs": {"lease_origin": {"priority": 1, "customer": True}}},
        "f1": {}},
    "links": ["a1--core1", "b1--core1", "g1--core1", "f1--core1", {"a": "core1", "b": "sink", "rate": f"{RATE_BPS}bit"}],
}

SENDER = r"""
import socket, sys, time
dest, pps, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
payload = bytes(900); start = time.monotonic(); sent = 0
while time.monotonic() - start < duration:
    while sent < (time.monotonic() - start) * pps:
        try:
            s.sendto(payload, (dest, %d))
        except OSError:
            pass
        sent += 1
    time.sleep(0.002)
""" % PORT


def flood(mesh, senders: list[str]) -> dict[str, list[float]]:
    """bit/s per second per sender, as the sink received it."""
    from testbed.backends import exec_in
    rx = exec_in(mesh.run, "sink", [sys.executable, "-m", "testbed.udp_receiver", str(PORT), str(FLOOD_S + 0.5)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = [exec_in(mesh.run, s, [sys.executable, "-c", SENDER, mesh.ip6("sink"), str(PPS), str(FLOOD_S)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in senders]
    try:
        out, err = rx.communicate(timeout=FLOOD_S + 20)
    finally:
        for p in tx:
            p.wait(timeout=10)
    if rx.returncode != 0:
        raise RuntimeError(f"receiver failed: {err}")
    got = json.loads(out)
    import ipaddress
    by_ip = {ipaddress.ip_address(a).compressed: v for a, v in got.items()}
    return {s: [b * 8 for b in by_ip.get(ipaddress.ip_address(mesh.ip6(s)).compressed, [0] * (FLOOD_S + 1))]
            [:FLOOD_S] for s in senders}


def steady(series: list[float]) -> float:
    part = series[WARMUP_S:]
    return sum(part) / len(part)


def configure(mesh, holder_isp: str, lease: str, changes: dict) -> None:
    from testbed.topology.leases import holder_identity
    key = holder_identity(mesh.run.state["seed"], holder_isp).private_key
    answer = mesh.agent("core1").request({"cmd": "lease_config", "request": cr.make_request(
        key, lease, changes, time.time()).decode()}, timeout=5)
    if not answer.get("ok"):
        raise RuntimeError(f"lease_config {lease}: {answer}")


def plot(name: str, title: str, series: dict[str, list[float]]) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for flow, values in series.items():
        ax.plot(range(1, len(values) + 1), [v / 1000 for v in values], marker="o", label=flow)
    ax.axvspan(0.5, WARMUP_S + 0.5, color="0.9", label="warm-up")
    ax.set_xlabel("second")
    ax.set_ylabel("kbit/s at the receiver")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = RESULTS / f"priority_{name}.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path.relative_to(RESULTS.parent.parent))


def run_experiments(mesh) -> list[dict]:
    exps = []

    def experiment(name, title, senders):
        series = flood(mesh, senders)
        exps.append({"name": name, "title": title, "series": series,
                     "steady_bps": {s: steady(v) for s, v in series.items()}, "plot": plot(name, title, series)})
        return exps[-1]["steady_bps"]

    base = experiment("baseline", "baseline: a1 alone (priority 15, customer)", ["a1"])["a1"]
    r = experiment("1a", "1a: a1 + b1, max-priority-bandwidth 2000 : 200", ["a1", "b1"])
    exps[-1].update(measured=r["a1"] / max(r["b1"], 1e-9), target="10 (within 20 %)",
                    ok=abs(r["a1"] / max(r["b1"], 1e-9) / 10 - 1) <= 0.2)
    configure(mesh, "shopa", "a_in", {"max_priority_bandwidth": 1000})
    configure(mesh, "shopb", "b_in", {"max_priority_bandwidth": 1000})
    r = experiment("1b", "1b: a1 + b1, 1000 : 1000 (signed requests)", ["a1", "b1"])
    exps[-1].update(measured=r["a1"] / max(r["b1"], 1e-9), target="1 (within 10 %)",
                    ok=abs(r["a1"] / max(r["b1"], 1e-9) - 1) <= 0.1)
    configure(mesh, "shopb", "b_in", {"max_priority_bandwidth": 0})
    r = experiment("2", "2: b1 alone at priority 0 (b_in limit 0)", ["b1"])
    exps[-1].update(measured=r["b1"] / base, target=">= 0.9 of baseline", ok=r["b1"] / base >= 0.9)
    r = experiment("3a", "3a: f1 alone on the free tier", ["f1"])
    exps[-1].update(measured=r["f1"] / base, target=">= 0.9 of baseline", ok=r["f1"] / base >= 0.9)
    r = experiment("3b", "3b: f1 (free tier) + a1 (paid lease, saturating)", ["f1", "a1"])
    exps[-1].update(measured=r["f1"] / base, target="< 0.05 of baseline", ok=r["f1"] / base < 0.05)
    r = experiment("4", f"4: g1 (guarantee {G_BPS // 1000} kbit/s, priority 1) + a1 (higher priority)", ["g1", "a1"])
    exps[-1].update(measured=r["g1"] / G_BPS, target=">= 0.9 G", ok=r["g1"] / G_BPS >= 0.9)
    exps[0].update(measured=base / RATE_BPS, target="(goodput / nominal rate)", ok=None)
    return exps


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    if os.geteuid() != 0:
        console.print("bench.priority needs root (network namespaces)")
        return 1
    from testbed.mesh import Mesh
    from testbed.topology import from_dict
    topo = from_dict(TOPOLOGY, "bench/priority.py")
    start = time.monotonic()
    mesh = Mesh.up(topo, name="bench-priority")
    try:
        # a first packet from each sender sets up its session before anything is measured
        for s in ("a1", "b1", "g1", "f1"):
            mesh.ping(s, "sink", count=2)
        exps = run_experiments(mesh)
        leases = mesh.agent("core1").call("leases", timeout=5)
    finally:
        mesh.down()
    elapsed = time.monotonic() - start
    rows = [[e["name"], e["title"], ", ".join(f"{s} {v / 1000:.0f}" for s, v in e["steady_bps"].items()),
             e.get("measured"), e.get("target"), {True: "pass", False: "FAIL", None: "-"}[e.get("ok")]]
            for e in exps]
    console.print(table(f"PKT leases and priorities on a {RATE_BPS // 1000} kbit/s link (steady state after "
                        f"{WARMUP_S} s, UDP floods measured at the receiver)",
                        ["exp", "setting", "kbit/s per flow", "measured", "target", "result"], rows))
    path = write(NAME, {"rate_bps": RATE_BPS, "guarantee_bps": G_BPS, "flood_s": FLOOD_S, "warmup_s": WARMUP_S,
                        "pps_per_sender": PPS, "elapsed_s": round(elapsed, 1),
                        "experiments": exps, "core1_counters": {"counters": leases.get("counters"),
                                                                "egress": leases.get("egress")}})
    console.print(f"wrote {path} and {len(exps)} plots in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
