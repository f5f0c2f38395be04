"""PacketCrypt is bandwidth-hard: `python -m bench.bandwidth_hard [--seconds S]`.

A pool node p (chain node, pool, block miner) and two announcement miners m1, m2, each on its own link to p. First
unshaped (the baseline, in the same run): each miner's upload rate U is measured. Then the miners' uplinks
(m -> p) are shaped to U/2, U/4 and U/8 and the same is measured again:

* the block miner's own view at the end of the window: how many announcements N the block it mines on carries and
  its effective target (§5.7, PcP v2: W_eff = W_blk^3 >> 10 // W_ann // N^2), as the hashes a block needs (the
  work of the effective target);
* announcements accepted per second by the pool's handler in the window (an uplink below one upload batch per
  window shows 0 here: a 64-announcement POST then takes longer than the window).

Expected relation: an uplink of a fraction f carries f of the announcements, so N(f)/N(1) = f, and the hashes a
block needs grow as N^-2: H(f)/H(1) = 1/f^2 (4, 16, 64 for f = 1/2, 1/4, 1/8). The block miner's own view (the
announcement count and effective target of the set it mines on) is what the ratios use. Block bits are
held fixed (a long retarget window) so the runs compare at one difficulty. Writes bench/results/bandwidth_hard.json
and bandwidth_hard.png.
"""
from __future__ import annotations

import argparse
import time

from bench.common import RESULTS, console, table, write
from node.chain.packetcrypt import difficulty
from node.chain.pool.work import DEFAULT_ANN_TARGET

BLOCK_TIME = 10
BITS = 0x1F0FFFFF
FRACTIONS = (1.0, 0.5, 0.25, 0.125)
MINERS = ("m1", "m2")


def topology(rates_bps: dict | None) -> dict:
    links = []
    for m in MINERS:
        link = {"a": m, "b": "p"}
        if rates_bps:
            link["a_to_b"] = {"rate": f"{max(int(rates_bps[m]), 8000)}bit"}
        links.append(link)
    return {"name": "bandwidth-hard", "seed": 7, "defaults": {"delay": "2ms"},
            "chain": {"block_time": BLOCK_TIME, "retarget_interval": 100000, "maturity": 5, "ann_rate": 20,
                      "genesis_bits": BITS},
            "nodes": {"p": {"roles": ["router", "chain", "pool", "block_miner"]},
                      **{m: {"roles": ["router", "miner"]} for m in MINERS}},
            "links": links}


def measure(rates_bps: dict | None, seconds: float, warmup: float) -> dict:
    from testbed import services
    from testbed.mesh import Mesh
    from testbed.topology import from_dict
    with Mesh.up(from_dict(topology(rates_bps)), name=f"bench-bw-{int(time.time())}") as mesh:
        def sample():
            pool = services.service_status(mesh.run, "p", "pool") or {}
            by = pool.get("anns", {}).get("by_miner", {})
            miners = {m: services.service_status(mesh.run, m, "miner") or {} for m in MINERS}
            return time.monotonic(), by, miners
        time.sleep(warmup)
        t0, by0, mi0 = sample()
        time.sleep(seconds)
        t1, by1, mi1 = sample()
        dt = t1 - t0
        accepted = sum(c.get("accepted", 0) for c in by1.values()) - sum(c.get("accepted", 0) for c in by0.values())
        upload = {m: (mi1[m].get("counts", {}).get("bytes_sent", 0) - mi0[m].get("counts", {}).get("bytes_sent", 0))
                  / dt for m in MINERS}
        bm = (services.service_status(mesh.run, "p", "block_miner") or {}).get("current", {})
        blocks = (services.service_status(mesh.run, "p", "chain") or {}).get("height", 0)
    eff = int(bm.get("effective_target", "0x0"), 16)
    return {"accepted_per_s": accepted / dt, "upload_Bps": upload, "anns_per_block": bm.get("ann_count", 0),
            "effective_target": f"0x{eff:08x}", "hashes_per_block": difficulty.work_for_compact(eff) if eff else None,
            "ann_target": bm.get("ann_target"), "blocks": blocks}


def plot(rows: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    f = [r["fraction"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(f, [r["anns_ratio"] or float("nan") for r in rows], "o-", label="measured N(f)/N(1)")
    a.loglog(f, f, "--", label="expected f")
    a.set_xlabel("uplink fraction f")
    a.set_title("announcements per block")
    a.legend()
    b.loglog(f, [r["hashes_ratio"] or float("nan") for r in rows], "o-", label="measured H(f)/H(1)")
    b.loglog(f, [1 / x ** 2 for x in f], "--", label="expected 1/f^2")
    b.set_xlabel("uplink fraction f")
    b.set_title("hashes a block needs")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bandwidth_hard")
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring window per setting")
    ap.add_argument("--warmup", type=float, default=15.0)
    args = ap.parse_args(argv)
    console.print(f"block time {BLOCK_TIME} s, bits 0x{BITS:08x}, announcement target 0x{DEFAULT_ANN_TARGET:08x}, "
                  f"2 miners at up to 20 announcements/s")
    base = measure(None, args.seconds, args.warmup)
    rows = [{"fraction": 1.0, **base, "anns_ratio": 1.0, "hashes_ratio": 1.0}]
    for frac in FRACTIONS[1:]:
        rates = {m: base["upload_Bps"][m] * 8 * frac for m in MINERS}
        r = measure(rates, args.seconds, args.warmup)
        rows.append({"fraction": frac, **r, "shaped_bps": rates,
                     "anns_ratio": r["anns_per_block"] / base["anns_per_block"] if base["anns_per_block"] else None,
                     "hashes_ratio": r["hashes_per_block"] / base["hashes_per_block"]
                     if r["hashes_per_block"] and base["hashes_per_block"] else None})
    console.print(table("bandwidth-hardness (baseline: unshaped, same run)",
                        ["uplink", "handler accepted/s", "anns in block N", "N ratio (exp. f)",
                         "effective target", "hashes/block H", "H ratio (exp. 1/f^2)", "blocks"],
                        [[f"{r['fraction']:g}", r["accepted_per_s"], r["anns_per_block"], r["anns_ratio"],
                          r["effective_target"], r["hashes_per_block"], r["hashes_ratio"], r["blocks"]]
                         for r in rows]))
    png = RESULTS / "bandwidth_hard.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, png)
    path = write("bandwidth_hard", {"block_time": BLOCK_TIME, "bits": f"0x{BITS:08x}", "rows": rows,
                                    "expected": "N(f)/N(1) = f, H(f)/H(1) = 1/f^2 (PcP v2 effective target)"})
    console.print(f"written {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
