"""Cross-chain settlement benchmark (issue 19 item 4, seed 004): `python -m bench.crosschain [--ks 2,4,8]
[--batch-per-chain 2] [--saturation 4,8,16,32]`.

For each K, one mesh: K chain instances (one chain node each, its solo miner, block time 2 s), a party node per
chain with funds on it, a relay node x1 with funds on every chain, all around a hub (rate 50 Mbit/s, 2 ms links).
Both shapes run in the same mesh, pairwise first (the baseline): a batch of `batch_per_chain * K` transfers between
random parties of different chains, started at once, as atomic swaps (pairwise: no node is in more than its own
transfers) or through the relay (every transfer's two legs are the relay's). Measured per batch: transfers settled
per second (committed transfers / time from the start to the last one settled), the latency of each (start to
settled, as its first payer sees it), and the relay's round time (one round = it reads every chain's new blocks and
acts). Then, at the largest K that ran, the relay alone under growing batches (`--saturation`): where its
throughput stops growing with the offered load is where it saturates. Every outcome is audited from the chains'
blocks (no half-committed transfer is accepted as a result).

Writes bench/results/crosschain.json and crosschain.png.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import asdict

from bench.common import RESULTS, console, table, write
from node.xchain.settlement import COMMITTED, REFUNDED, Timing
from testbed.mesh import Mesh
from testbed.topology import from_dict
from testbed.xchain import PKT, Settlement

TIMING = Timing(setup_s=6, margin_s=20)
BLOCK_TIME = 2


def topology(k: int) -> dict:
    chains = {f"c{i}": {"nodes": [f"n{i}"], "block_time": BLOCK_TIME, "maturity": 2, "retarget_interval": 50}
              for i in range(k)}
    nodes = [f"n{i}" for i in range(k)] + [f"p{i}" for i in range(k)] + ["x1", "hub"]
    links = [f"{n}--hub" for n in nodes if n != "hub"]
    return {"name": f"xchain-bench-{k}", "seed": 4, "defaults": {"rate": "50mbit", "delay": "2ms"},
            "chains": chains, "nodes": nodes, "links": links}


def batch(s: Settlement, k: int, size: int, shape: str, rng: random.Random, within: float = 240.0) -> dict:
    tids = []
    for _ in range(size):
        i, j = rng.sample(range(k), 2)
        a, b = f"p{i}", f"p{j}"
        t = s.start_relay(a, "x1", b, f"c{i}", f"c{j}", PKT) if shape == "relay" else \
            s.start_pairwise(a, b, f"c{i}", f"c{j}", PKT)
        tids.append(t.id)
    t0 = min(s.started[t] for t in tids)
    relay = s.parties["x1"]
    rounds = []
    deadline = time.monotonic() + within
    while any(t not in s.finished for t in tids) and time.monotonic() < deadline:
        r0 = time.monotonic()
        s.step()
        rounds.append(time.monotonic() - r0)
        time.sleep(0.2)
    outcomes = [s.outcome(t) if t in s.finished else "pending" for t in tids]
    lat = sorted(s.finished[t] - s.started[t] for t in tids if t in s.finished)
    end = max((s.finished[t] for t in tids if t in s.finished), default=time.monotonic())
    committed = outcomes.count(COMMITTED)
    return {"shape": shape, "k": k, "transfers": size, "committed": committed,
            "refunded": outcomes.count(REFUNDED), "unsettled": size - committed - outcomes.count(REFUNDED),
            "per_s": committed / max(end - t0, 1e-9), "latency_p50_s": statistics.median(lat) if lat else None,
            "latency_p90_s": lat[int(0.9 * (len(lat) - 1))] if lat else None,
            "round_p50_s": statistics.median(rounds) if rounds else None,
            "relay_errors": len(relay.errors)}


def run_k(k: int, per_chain: int, saturation: list[int], seed: int) -> list[dict]:
    rng = random.Random(seed + k)
    rows = []
    with Mesh.up(from_dict(topology(k)), name=f"b-xchain{k}") as mesh:
        parties = [f"p{i}" for i in range(k)] + ["x1"]
        s = Settlement(mesh, parties, TIMING, seed=seed)
        try:
            sizes = [per_chain * k] + saturation
            coins = max(sizes) * 2 + 4
            holders = {f"p{i}": [f"c{i}"] for i in range(k)} | {"x1": [f"c{i}" for i in range(k)]}
            s.fund(holders, coins=coins, value=2 * PKT, within=300)
            for shape in ("pairwise", "relay"):
                rows.append(batch(s, k, per_chain * k, shape, rng))
                console.print(rows[-1])
            for size in saturation:
                rows.append(dict(batch(s, k, size, "relay", rng), saturation=True))
                console.print(rows[-1])
            report = s.audit()
            bad = {t: o for t, o in report["outcomes"].items() if o not in (COMMITTED, REFUNDED)}
            for r in rows:
                r["audit_half_or_pending"] = len(bad)
        finally:
            s.close()
    return rows


def plot(rows: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    for shape, marker in (("pairwise", "o"), ("relay", "s")):
        pts = [r for r in rows if r["shape"] == shape and not r.get("saturation")]
        ks = [r["k"] for r in pts]
        ax1.plot(ks, [r["per_s"] for r in pts], marker=marker, label=shape)
        ax2.plot(ks, [r["latency_p50_s"] or 0 for r in pts], marker=marker, label=f"{shape} p50")
        ax2.plot(ks, [r["latency_p90_s"] or 0 for r in pts], marker=marker, linestyle="--", label=f"{shape} p90")
    ax1.set(xlabel="chains K", ylabel="committed transfers / s", title="throughput (batch of 2K)")
    ax2.set(xlabel="chains K", ylabel="latency (s)", title="start to settled")
    sat = [r for r in rows if r.get("saturation")]
    ax3.plot([r["transfers"] for r in sat], [r["per_s"] for r in sat], marker="s", label="relay transfers/s")
    ax3b = ax3.twinx()
    ax3b.plot([r["transfers"] for r in sat], [r["round_p50_s"] or 0 for r in sat], color="gray", marker="x",
              label="round time p50 (s)")
    ax3.set(xlabel="transfers offered at once", ylabel="committed / s",
            title=f"relay load (K={sat[0]['k'] if sat else '-'})")
    ax3b.set_ylabel("driver round (s)")
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.crosschain")
    ap.add_argument("--ks", default="2,4,8", help="chain counts (default 2,4,8)")
    ap.add_argument("--batch-per-chain", type=int, default=2)
    ap.add_argument("--saturation", default="4,8,16,32", help="relay batch sizes at the largest K")
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    saturation = [int(n) for n in args.saturation.split(",") if n]
    print(f"bench.crosschain: seed {args.seed}, K {ks}, timing {TIMING}, block time {BLOCK_TIME} s")
    rows = []
    for k in ks:
        rows += run_k(k, args.batch_per_chain, saturation if k == ks[-1] else [], args.seed)
    base = {r["k"]: r for r in rows if r["shape"] == "pairwise"}
    console.print(table("cross-chain transfers (pairwise = baseline, same mesh)",
                        ["K", "shape", "offered", "committed", "refunded", "unsettled", "per s", "x pairwise",
                         "p50 s", "p90 s", "relay round p50 s"],
                        [[r["k"], r["shape"] + (" (load)" if r.get("saturation") else ""), r["transfers"],
                          r["committed"], r["refunded"], r["unsettled"], f"{r['per_s']:.3f}",
                          f"{r['per_s'] / base[r['k']]['per_s']:.2f}" if base.get(r["k"], {}).get("per_s") else "-",
                          f"{r['latency_p50_s']:.1f}" if r["latency_p50_s"] else "-",
                          f"{r['latency_p90_s']:.1f}" if r["latency_p90_s"] else "-",
                          f"{r['round_p50_s']:.2f}" if r["round_p50_s"] else "-"] for r in rows]))
    write("crosschain", {"seed": args.seed, "timing": asdict(TIMING),
                         "block_time_s": BLOCK_TIME, "rows": rows})
    plot(rows, RESULTS / "crosschain.png")
    bad = [r for r in rows if r["audit_half_or_pending"] or r["unsettled"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
