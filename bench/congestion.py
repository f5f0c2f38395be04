"""Congestion control at long RTT and with loss, and in-network fair share: seed 004's claims on the emulated mesh.

    s1 .. sN --- r1 ===(RATE, RTT/2 each way, loss r1 -> r2)=== r2 --- d1 .. dN

One dumbbell of PKT routing devices (static paths, peer links encrypted as by default). The bottleneck is r1 -> r2:
RATE through the agent's emulated token bucket and its 0.2 s FIFO ("fifo"), or through r1's fair-share scheduler
at the same rate, burst and buffer ("fair", node/tun_switch/fair_share.py). Its delay gives the RTT, its loss the
random loss (the data direction only). TCP is iperf3 with MSS-byte segments; the congestion control is set per
socket (iperf3 -C: a namespace's net.ipv4.tcp_congestion_control can only name an algorithm of the host's
tcp_allowed_congestion_control, and cubic is not one on every host) and checked in iperf3's report;
retransmissions come from nstat (TcpRetransSegs, TcpOutSegs) in each sender's namespace, iperf3's own count
(TCP_INFO) alongside.

    calibration  the RTT ping measures for each RTT point, the loss iperf3 (UDP) sees for each loss point
    sweep        one flow s1 -> d1: cubic and bbr over RTT x loss; at the plan's fair_rtt_ms also through r1's fair
                 share
    competing    N flows s_i -> d_i started stagger_s apart at fair_rtt_ms without random loss, fifo and fair, cubic
                 and bbr: goodput per flow over time, Jain's index over the last steady_s, how long the last flow
                 takes to hold 80 % of its share RATE/N, bottleneck drops, retransmissions
    claims       seed 004's figures next to what was measured

`python -m bench.congestion [--quick] [--results DIR]` (root). `--quick` is the CI-sized run (2 RTT points, short
flows, 2 competing flows). Prints the claims table and writes congestion.json and congestion_*.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import RESULTS, console, ratio, table, write

NAME = "congestion"
RATE = 20_000_000           # bit/s at the bottleneck: a 4G-like link
MSS = 1400                  # TCP segments of a 1500-byte Internet path
BUFFER_S = 0.2              # both queues: the emulator's FIFO (link_emulation.QUEUE_LIMIT_S) and the fair share's
PORT = 5201
INTERVAL_S = 0.2            # the receiver's goodput series (iperf3's shortest interval is 0.1 s)
HOLD_S = 1.0                # a flow has its share once it holds it on average this long


@dataclass
class Plan:
    rtts_ms: list = field(default_factory=lambda: [20, 50, 100, 200, 400])
    losses: list = field(default_factory=lambda: [0.0, 0.005, 0.01, 0.02, 0.05])
    ccs: list = field(default_factory=lambda: ["cubic", "bbr"])
    fair_rtt_ms: int = 200
    flows: list = field(default_factory=lambda: [2, 4, 8])
    sweep_s: float = 10.0           # + 20 RTTs
    stagger_s: float = 2.0
    steady_s: float = 10.0

    def sweep_seconds(self, rtt_s):
        return round(self.sweep_s + 20 * rtt_s, 1)

    def omit_seconds(self, rtt_s):
        """Slow start left out of a sweep point's goodput: 10 RTTs, at most a third of the flow."""
        return round(min(10 * rtt_s, self.sweep_seconds(rtt_s) / 3), 1)


QUICK = Plan(rtts_ms=[20, 100], losses=[0.0, 0.02], fair_rtt_ms=100, flows=[2], sweep_s=3.0, stagger_s=1.0,
             steady_s=3.0)


def topology(pairs: int) -> dict:
    nodes = ["r1", "r2"] + [f"s{i}" for i in range(1, pairs + 1)] + [f"d{i}" for i in range(1, pairs + 1)]
    links = ["r1--r2"] + [f"s{i}--r1" for i in range(1, pairs + 1)] + [f"r2--d{i}" for i in range(1, pairs + 1)]
    return {"name": "bench-congestion", "seed": 41, "nodes": nodes, "links": links}


def jain(xs) -> float | None:
    xs = list(xs)
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)) if xs and any(xs) else None


class Dumbbell:
    """The mesh and the knobs of its bottleneck."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.fwd, self.back = self._ifname("r1", "r2"), self._ifname("r2", "r1")

    def _ifname(self, node, peer):
        return next(p["ifname"] for p in self.mesh.agent(node).call("peers")["peers"] if p["peer_name"] == peer)

    def set_path(self, rtt_s: float, loss: float, mode: str) -> None:
        r1, r2 = self.mesh.agent("r1"), self.mesh.agent("r2")
        r1.call("fair_share", ifname=self.fwd, rate_bps=RATE if mode == "fair" else None, buffer_s=BUFFER_S)
        r1.call("set_link", ifname=self.fwd, params={"reset": True, "delay_s": rtt_s / 2, "loss": loss,
                                                     "rate_bps": RATE if mode == "fifo" else None})
        r2.call("set_link", ifname=self.back, params={"reset": True, "delay_s": rtt_s / 2})

    def tcp_segments(self, node) -> tuple[int, int]:
        """(retransmitted, sent) TCP segments of the node's namespace (nstat, absolute)."""
        out = self.mesh.exec(node, ["nstat", "-asz", "TcpRetransSegs", "TcpOutSegs"]).stdout
        counts = dict(re.findall(r"^(\w+)\s+(\d+)", out, re.M))
        return int(counts.get("TcpRetransSegs", 0)), int(counts.get("TcpOutSegs", 0))

    def bottleneck(self) -> dict:
        c = self.mesh.agent("r1").call("counters")
        emu = c["interfaces"][self.fwd].get("emulation", {})
        return {"fifo_dropped": emu.get("queue_dropped", 0), "random_lost": emu.get("lost", 0),
                "fair_dropped": c["drops"].get("fair_share_queue_full", 0)}

    def drain(self, timeout=20.0) -> None:
        """Wait until the bottleneck is idle (under 5 frames in 0.5 s: link pings only): a finished flow's socket
        still sends what its buffer held, and those frames must not count in the next point."""
        def sent():
            return self.mesh.agent("r1").call("counters")["interfaces"][self.fwd]["tx_packets"]
        last, deadline = sent(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = sent()
            if now - last < 5:
                return
            last = now

    def ping_ms(self, count=10) -> float | None:
        r = self.mesh.exec("s1", ["ping", "-6", "-n", "-c", str(count), "-i", "0.2", "-W", "3", self.mesh.ip6("d1")],
                           timeout=count + 30)
        times = [float(x) for x in re.findall(r"time=([\d.]+)", r.stdout)]
        return statistics.median(times) if times else None

    def udp_loss(self, seconds=3.0, attempts=3) -> float | None:
        """The loss iperf3 measures for a 5 Mbit/s UDP stream s1 -> d1 (fraction). A test that gave no UDP summary
        (on a busy machine the one-off server may not listen yet when the client starts) is run again, with a fresh
        server, up to `attempts` times."""
        for _ in range(attempts):
            server = self.server(1)
            try:
                time.sleep(0.4)
                data = collect(self.client(1, ["-u", "-b", "5M", "-l", "1200", "-t", str(seconds)]), seconds)
            finally:
                stop(server)
            lost = data.get("end", {}).get("sum", {}).get("lost_percent")
            if lost is not None:
                return lost / 100
        return None

    def server(self, i):
        """A one-test iperf3 server on d_i (JSON, so its client can fetch its per-interval view)."""
        from testbed.backends import exec_in
        return exec_in(self.mesh.run, f"d{i}", ["iperf3", "-s", "-1", "-J", "-i", f"{INTERVAL_S:g}", "-p", str(PORT), "-B",
                                                self.mesh.ip6(f"d{i}")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, i, args):
        """iperf3 from s_i to d_i, with the server's report in the client's JSON."""
        from testbed.backends import exec_in
        return exec_in(self.mesh.run, f"s{i}", ["iperf3", "-c", self.mesh.ip6(f"d{i}"), "-p", str(PORT), "-J",
                                                "--get-server-output"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def flows(self, n: int, cc: str, seconds: float, stagger: float, omit: float = 0.0) -> dict:
        """n TCP flows s_i -> d_i with congestion control cc, flow i starting i * stagger seconds after the first,
        all ending together."""
        self.drain()
        senders = [f"s{i}" for i in range(1, n + 1)]
        segs_before = {s: self.tcp_segments(s) for s in senders}
        bottleneck_before = self.bottleneck()
        servers = [self.server(i) for i in range(1, n + 1)]
        clients = []
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            for i in range(1, n + 1):
                time.sleep(max(0.0, t0 + (i - 1) * stagger - time.monotonic()))
                length = seconds - (i - 1) * stagger
                args = ["-t", f"{length:g}", "-i", "0.5", "-M", str(MSS), "-C", cc] + \
                    (["-O", f"{omit:g}"] if omit else [])
                clients.append((i, time.monotonic() - t0, length, self.client(i, args)))
            results = [(i, started, collect(proc, length)) for i, started, length, proc in clients]
        finally:
            for _, _, _, proc in clients:
                stop(proc)
            for s in servers:
                stop(s)
        after = self.bottleneck()
        flows = []
        for i, started, data in results:
            retrans, sent = (a - b for a, b in zip(self.tcp_segments(f"s{i}"), segs_before[f"s{i}"]))
            flows.append(flow_summary(data, started, retrans, sent))
        return {"flows": flows, "bottleneck": {k: after[k] - bottleneck_before[k] for k in after}}


def collect(proc, seconds) -> dict:
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    try:
        return json.loads(out)
    except ValueError:
        return {"error": (err or out or "no output").strip()[-300:]}


def stop(proc) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def flow_summary(data: dict, started: float, retrans: int, sent: int) -> dict:
    """One flow from its iperf3 report: goodput at the receiver, the receiver's goodput every INTERVAL_S (on the
    experiment's clock), the congestion control iperf3 saw, retransmissions."""
    if "end" not in data:
        return {"error": data.get("error", "no iperf3 result"), "started_s": round(started, 2)}
    end = data["end"]
    series = [(round(started + (iv["sum"]["start"] + iv["sum"]["end"]) / 2, 2), iv["sum"]["bits_per_second"])
              for iv in data.get("server_output_json", {}).get("intervals", [])]
    return {"started_s": round(started, 2), "goodput_bps": end["sum_received"]["bits_per_second"],
            "congestion_control": end.get("sender_tcp_congestion"),
            "retransmits_iperf": end["sum_sent"].get("retransmits"),
            "retrans_segs": retrans, "out_segs": sent, "series": series}


# -- experiments --------------------------------------------------------------------------------------------

def calibrate(bench: Dumbbell, plan: Plan) -> dict:
    rtt, loss = [], []
    for ms in plan.rtts_ms:
        bench.set_path(ms / 1000, 0.0, "fifo")
        rtt.append({"asked_ms": ms, "ping_ms": bench.ping_ms()})
        console.log(f"calibration: RTT {ms} ms -> ping {rtt[-1]['ping_ms']} ms")
    for p in plan.losses:
        bench.set_path(plan.rtts_ms[0] / 1000, p, "fifo")
        loss.append({"asked": p, "iperf3_udp": bench.udp_loss()})
        console.log(f"calibration: loss {p:.1%} -> iperf3 UDP {loss[-1]['iperf3_udp']}")
    return {"rtt": rtt, "loss": loss}


def sweep(bench: Dumbbell, plan: Plan) -> list[dict]:
    points = []
    runs = [(rtt, p, cc, "fifo") for rtt in plan.rtts_ms for p in plan.losses for cc in plan.ccs]
    runs += [(plan.fair_rtt_ms, p, cc, "fair") for p in plan.losses for cc in plan.ccs]
    for rtt, p, cc, mode in runs:
        rtt_s = rtt / 1000
        bench.set_path(rtt_s, p, mode)
        res = bench.flows(1, cc, plan.sweep_seconds(rtt_s), 0.0, plan.omit_seconds(rtt_s))
        flow = res["flows"][0]
        points.append({"rtt_ms": rtt, "loss": p, "cc": cc, "mode": mode, "seconds": plan.sweep_seconds(rtt_s),
                       "omit_s": plan.omit_seconds(rtt_s), "bottleneck": res["bottleneck"],
                       **{k: v for k, v in flow.items() if k != "series"}})
        console.log(f"sweep {mode} {cc} RTT {rtt} ms loss {p:.1%}: {mbit(flow.get('goodput_bps'))}, "
                    f"{flow.get('retrans_segs')} retransmissions")
    return points


def competing(bench: Dumbbell, plan: Plan) -> list[dict]:
    out = []
    rtt_s = plan.fair_rtt_ms / 1000
    for n in plan.flows:
        seconds = plan.stagger_s * (n - 1) + plan.steady_s + 2 * plan.stagger_s
        for mode in ("fifo", "fair"):
            for cc in plan.ccs:
                bench.set_path(rtt_s, 0.0, mode)
                res = bench.flows(n, cc, seconds, plan.stagger_s)
                summary = summarize_competition(res["flows"], n, seconds, plan.steady_s)
                out.append({"n": n, "mode": mode, "cc": cc, "rtt_ms": plan.fair_rtt_ms, "seconds": seconds,
                            "bottleneck": res["bottleneck"], "flows": res["flows"], **summary})
                console.log(f"competing {n} x {cc} {mode}: Jain {fmt(summary['jain'])}, last flow at its share "
                            f"after {fmt(summary['convergence_s'])} s, total {mbit(summary['total_bps'])}, "
                            f"bottleneck drops {sum(res['bottleneck'].values())}")
    return out


def summarize_competition(flows: list, n: int, seconds: float, steady_s: float) -> dict:
    """Jain's index and total goodput over the last steady_s seconds; how long the last flow took from its start to
    get its share: the end of the first interval that begins HOLD_S seconds averaging at least 80 % of RATE/n;
    retransmissions."""
    if any("error" in f for f in flows):
        return {"jain": None, "total_bps": None, "convergence_s": None, "retrans_segs": None,
                "error": "; ".join(f["error"] for f in flows if "error" in f)}
    steady = [statistics.mean([bps for t, bps in f["series"] if t >= seconds - steady_s] or [0]) for f in flows]
    last = flows[-1]
    hold = round(HOLD_S / INTERVAL_S)
    series = last["series"]
    reached = next((series[k][0] + INTERVAL_S / 2 for k in range(len(series) - hold + 1)
                    if statistics.mean(b for _, b in series[k:k + hold]) >= 0.8 * RATE / n), None)
    return {"jain": jain(steady), "total_bps": sum(steady), "steady_bps": steady,
            "convergence_s": None if reached is None else round(reached - last["started_s"], 2),
            "retrans_segs": sum(f["retrans_segs"] for f in flows),
            "out_segs": sum(f["out_segs"] for f in flows)}


# -- seed 004 against the measurements -----------------------------------------------------------------------

def claims(results: dict, plan: Plan) -> list[dict]:
    pts = results["sweep"]
    at = plan.fair_rtt_ms

    def point(cc, mode, rtt, loss):
        return next((p for p in pts if (p["cc"], p["mode"], p["rtt_ms"], p["loss"]) == (cc, mode, rtt, loss)), {})

    def good(cc, mode, rtt, loss):
        return point(cc, mode, rtt, loss).get("goodput_bps")

    lossy = [p for p in plan.losses if p > 0]
    rows = []
    # 1. BBR retransmits 22x more than Cubic
    ratios = {p: ratio(point("bbr", "fifo", at, p).get("retrans_segs"), point("cubic", "fifo", at, p).get("retrans_segs"))
              for p in lossy}
    per_seg = {p: ratio(rate_of(point("bbr", "fifo", at, p)), rate_of(point("cubic", "fifo", at, p))) for p in lossy}
    best = max((r for r in ratios.values() if r), default=None)
    rows.append(row("BBR retransmits far more than Cubic on a noisy path", "22x (240,340 vs 10,700)",
                    f"BBR/Cubic retransmitted segments at {at} ms: " + ", ".join(
                        f"{p:.1%} loss {fmt(r)}x" for p, r in ratios.items()) + "; per segment sent: " + ", ".join(
                        f"{fmt(r)}x" for r in per_seg.values()),
                    verdict(best, 10, 3)))
    # 2. throughput falls (exponentially) with RTT
    for p in sorted({0.0, min(lossy, default=0.0, key=lambda x: abs(x - 0.01))}):
        series = [(rtt, good("cubic", "fifo", rtt, p)) for rtt in plan.rtts_ms]
        series = [(r, g) for r, g in series if g]
        if len(series) < 2:
            continue
        falls = series[-1][1] < 0.8 * series[0][1]
        shape = fit_shape(series)
        rows.append(row(f"TCP (Cubic) throughput falls exponentially as RTT rises (loss {p:.1%})",
                        "falls exponentially with RTT",
                        ", ".join(f"{r} ms {mbit(g)}" for r, g in series) + f"; {shape}",
                        ("supported: falls" if falls else "not supported: does not fall") +
                        (", but not exponentially" if falls and "power" in shape else "")))
    # 3. Cubic slows with loss, BBR does not
    for cc in plan.ccs:
        base, worst = good(cc, "fifo", at, 0.0), good(cc, "fifo", at, max(plan.losses))
        kept = ratio(worst, base)
        expect = "loses throughput with loss" if cc == "cubic" else "does not slow down with loss"
        ok = kept is not None and (kept < 0.5 if cc == "cubic" else kept > 0.7)
        rows.append(row(f"{cc} at {at} ms, loss 0 -> {max(plan.losses):.0%}", expect,
                        f"{mbit(base)} -> {mbit(worst)} ({fmt(kept)} kept)", "supported" if ok else "not supported"))
    # 4. BBR 28x TCP
    speedups = {(rtt, p): ratio(good("bbr", "fifo", rtt, p), good("cubic", "fifo", rtt, p))
                for rtt in plan.rtts_ms for p in plan.losses}
    top = max(((k, v) for k, v in speedups.items() if v), key=lambda kv: kv[1], default=(None, None))
    rows.append(row("BBR is much faster than TCP (Google)", "28x",
                    f"BBR/Cubic goodput: at most {fmt(top[1])}x (RTT {top[0][0]} ms, loss {top[0][1]:.1%})"
                    if top[0] else "-", verdict(top[1], 20, 5)))
    # 5. in-network allocation 2x BBR, 20x Cubic at 200 ms
    for p in plan.losses:
        fair = max((good(cc, "fair", at, p) or 0 for cc in plan.ccs), default=0) or None
        rows.append(row(f"in-network allocation at {at} ms, loss {p:.1%}: 2x BBR, 20x Cubic", "2x BBR, 20x Cubic",
                        f"best flow through fair share {mbit(fair)}: {fmt(ratio(fair, good('bbr', 'fifo', at, p)))}x "
                        f"BBR, {fmt(ratio(fair, good('cubic', 'fifo', at, p)))}x Cubic",
                        verdict(ratio(fair, good("bbr", "fifo", at, p)), 2, 1.3)))
    # 6.-8. convergence, loss, fairness with competing flows
    comp = results["competing"]
    for n in plan.flows:
        runs = {(c["mode"], c["cc"]): c for c in comp if c["n"] == n}
        for cc in plan.ccs:
            fifo, fair = runs.get(("fifo", cc), {}), runs.get(("fair", cc), {})
            rtt_s = at / 1000
            conv = [c.get("convergence_s") for c in (fifo, fair)]
            rows.append(row(f"{n} {cc} flows: a new flow gets its share (in RTTs)", "in-network <= 1/2 RTT, "
                            "end to end N x RTT",
                            f"fifo {in_rtts(conv[0], rtt_s)}, fair share {in_rtts(conv[1], rtt_s)}",
                            "supported" if conv[1] is not None and conv[1] <= 0.5 * rtt_s else
                            ("faster, not 1/2 RTT" if conv[1] is not None and (conv[0] is None or conv[1] < conv[0])
                             else "not supported")))
            drops = [sum(c.get("bottleneck", {}).values()) if c else None for c in (fifo, fair)]
            rows.append(row(f"{n} {cc} flows: loss at the bottleneck", "in-network: no loss",
                            f"drops fifo {drops[0]}, fair share {drops[1]}; retransmitted segments fifo "
                            f"{fifo.get('retrans_segs')}, fair share {fair.get('retrans_segs')}",
                            "supported" if drops[1] == 0 else "not supported"))
            rows.append(row(f"{n} {cc} flows: fair allocation (Jain's index)", "fair from the start",
                            f"fifo {fmt(fifo.get('jain'))}, fair share {fmt(fair.get('jain'))}",
                            "supported" if (fair.get("jain") or 0) >= 0.95 else "not supported"))
    return rows


def row(claim, seed, measured, verdict_text):
    return {"claim": claim, "seed_004": seed, "measured": measured, "verdict": verdict_text}


def verdict(value, yes, partly) -> str:
    if value is None:
        return "not measured"
    return "supported" if value >= yes else ("partly" if value >= partly else "not supported")


def rate_of(p):
    return ratio(p.get("retrans_segs"), p.get("out_segs"))


def in_rtts(seconds, rtt_s):
    return "never in the run" if seconds is None else f"{seconds:.1f} s = {seconds / rtt_s:.1f} RTT"


def fit_shape(series) -> str:
    """Whether goodput(RTT) looks exponential (log g linear in RTT) or a power law (log g linear in log RTT)."""
    def r2(xs, ys):
        mx, my = statistics.mean(xs), statistics.mean(ys)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
        return sxy * sxy / (sxx * syy) if sxx and syy else 0.0, sxy / sxx if sxx else 0.0
    if len(series) < 3:
        return "too few points for a shape"
    rtts, logs = [r for r, _ in series], [math.log(g) for _, g in series]
    exp_r2, _ = r2(rtts, logs)
    pow_r2, k = r2([math.log(r) for r in rtts], logs)
    kind = "exponential" if exp_r2 > pow_r2 else "power law"
    return f"fits a {kind} better (R2 exponential {exp_r2:.2f}, power {pow_r2:.2f}, goodput ~ RTT^{k:.2f})"


def mbit(bps) -> str:
    return "-" if bps is None else f"{bps / 1e6:.2f} Mbit/s"


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


# -- plots -----------------------------------------------------------------------------------------------------

def plots(results: dict, plan: Plan, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = out / f"congestion_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)

    pts = results["sweep"]
    fig, axes = plt.subplots(1, len(plan.ccs), figsize=(5 * len(plan.ccs), 3.4), sharey=True)
    for ax, cc in zip(axes, plan.ccs):
        for p in plan.losses:
            xy = [(q["rtt_ms"], (q.get("goodput_bps") or 0) / 1e6) for q in pts
                  if (q["cc"], q["mode"], q["loss"]) == (cc, "fifo", p)]
            ax.plot(*zip(*xy), marker="o", label=f"loss {p:.1%}")
        ax.set_xscale("log")
        ax.set_xticks(plan.rtts_ms, [str(r) for r in plan.rtts_ms])
        ax.minorticks_off()
        ax.set_title(f"{cc}: one flow, {RATE / 1e6:.0f} Mbit/s bottleneck", fontsize=9)
        ax.set_xlabel("RTT (ms)")
        ax.set_ylabel("goodput (Mbit/s)")
        ax.legend(fontsize=7)
    save(fig, "rtt")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for cc in plan.ccs:
        for mode, style in (("fifo", "-"), ("fair", "--")):
            sel = [q for q in pts if (q["cc"], q["mode"], q["rtt_ms"]) == (cc, mode, plan.fair_rtt_ms)]
            ax1.plot([q["loss"] * 100 for q in sel], [(q.get("goodput_bps") or 0) / 1e6 for q in sel], style,
                     marker="o", label=f"{cc} {mode}")
            ax2.plot([q["loss"] * 100 for q in sel], [max(q.get("retrans_segs") or 0, 1) for q in sel], style,
                     marker="o", label=f"{cc} {mode}")
    ax1.set(xlabel="loss (%)", ylabel="goodput (Mbit/s)", title=f"one flow at {plan.fair_rtt_ms} ms RTT")
    ax2.set(xlabel="loss (%)", ylabel="retransmitted segments", yscale="log", title="retransmissions (nstat)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.title.set_fontsize(9)
    save(fig, "loss")

    for n in plan.flows:
        runs = [c for c in results["competing"] if c["n"] == n]
        fig, axes = plt.subplots(2, len(plan.ccs), figsize=(5 * len(plan.ccs), 5.6), sharex=True, sharey=True,
                                 squeeze=False)
        for c in runs:
            ax = axes[("fifo", "fair").index(c["mode"])][plan.ccs.index(c["cc"])]
            for k, f in enumerate(c["flows"], 1):
                if f.get("series"):
                    ax.plot([t for t, _ in f["series"]], [b / 1e6 for _, b in f["series"]], label=f"flow {k}",
                            linewidth=1)
            ax.axhline(RATE / n / 1e6, color="0.5", linestyle=":", linewidth=1)
            ax.set_title(f"{c['cc']}, {c['mode']}: Jain {fmt(c.get('jain'))}", fontsize=9)
            ax.set_xlabel("s")
            ax.set_ylabel("Mbit/s at the receiver")
        axes[0][0].legend(fontsize=6, ncol=2)
        save(fig, f"competing_{n}")

    comp = results["competing"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for cc in plan.ccs:
        for mode, style in (("fifo", "-"), ("fair", "--")):
            sel = [c for c in comp if (c["cc"], c["mode"]) == (cc, mode)]
            ax1.plot([c["n"] for c in sel], [c.get("jain") or 0 for c in sel], style, marker="o", label=f"{cc} {mode}")
            ax2.plot([c["n"] for c in sel], [c["convergence_s"] if c.get("convergence_s") is not None else c["seconds"]
                                             for c in sel], style, marker="o", label=f"{cc} {mode}")
    ax1.set(xlabel="flows", ylabel="Jain's index (steady state)", ylim=(0, 1.05))
    ax2.set(xlabel="flows", ylabel="s until the last flow has 80 % of its share")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    save(fig, "fairness")
    return written


# -- main ------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.congestion", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI-sized run: 2 RTT points, short flows")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and the PNGs go")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        console.print("bench.congestion needs root (network namespaces)")
        return 1
    from testbed.mesh import Mesh
    from testbed.topology import from_dict
    plan = QUICK if args.quick else Plan()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # a stopped bench still takes its mesh down
    started, load = time.monotonic(), {"start": os.getloadavg()}
    mesh = Mesh.up(from_dict(topology(max(plan.flows)), "bench/congestion.py"), name=f"bench-congestion-{os.getpid()}")
    try:
        bench = Dumbbell(mesh)
        results = {"calibration": calibrate(bench, plan)}
        results["sweep"] = sweep(bench, plan)
        results["competing"] = competing(bench, plan)
        results["fair_share_at_end"] = mesh.agent("r1").call("fair_share")
    finally:
        mesh.down()
    load["end"] = os.getloadavg()     # the machine is shared: the figures are read with the load they ran under
    results["claims"] = claims(results, plan)
    args.results.mkdir(parents=True, exist_ok=True)
    results["plots"] = plots(results, plan, args.results)
    elapsed = time.monotonic() - started
    console.print(table(f"seed 004 (Internet of Blockchain) against the emulated mesh ({RATE / 1e6:.0f} Mbit/s "
                        f"bottleneck, MSS {MSS}, link sessions on)",
                        ["claim", "seed 004", "measured", "verdict"],
                        [[r["claim"], r["seed_004"], r["measured"], r["verdict"]] for r in results["claims"]]))
    path = write(NAME, {"plan": asdict(plan), "rate_bps": RATE, "mss": MSS, "buffer_s": BUFFER_S,
                        "elapsed_s": round(elapsed, 1), "loadavg": load, **results}, args.results)
    console.print(f"wrote {path} and {len(results['plots'])} plots in {elapsed:.0f} s (load average {load['start'][0]:.1f} "
                  f"at the start, {load['end'][0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
