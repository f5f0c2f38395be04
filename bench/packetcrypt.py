"""PacketCrypt benchmark: `python -m bench.packetcrypt`.

Measures on one core: faithful announcement validation (the real mainnet announcement of the vectors), table
build, announcement mining (faithful and fast mode: announcements/s per core) and block-mining hashes/s. The
baseline, measured in the same run in a child process, is the pure-Python path (PKTLAB_NO_ACCEL=1; validation,
table build, faithful announcement mining and block hashes); validation is also compared with the
reference C figure of the issue (0.4 ms per validation on one core). Writes bench/results/packetcrypt.json.
"""
from __future__ import annotations
from testbed.paths import VECTORS

import json
import os
import subprocess
import sys
import time
from pathlib import Path

VECTORS = VECTORS
RESULTS = Path(__file__).resolve().parent / "results" / "packetcrypt.json"
C_VALIDATION_MS = 0.4            # reference C validator, one core (issue 4)
POOL_ANN_BITS = 0x20020000       # pool default announcement target (work 127)


def _real_announcement():
    doc = json.loads(VECTORS.read_text())
    v = next(v for v in doc["vectors"] if v["kind"] == "packetcrypt.real_announcement")
    return bytes.fromhex(v["inputs"]["ann"]), bytes.fromhex(v["inputs"]["parent_block_hash_internal"])


def _timed(fn, min_seconds: float, min_runs: int = 3) -> float:
    """Seconds per call, repeating until both minimums are met."""
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if runs >= min_runs and elapsed >= min_seconds:
            return elapsed / runs


def measure_validation(budget: float) -> float:
    from node.chain.packetcrypt.announcement import validate
    ann, parent = _real_announcement()
    validate(ann, parent)                          # warm up (program compile caches, imports)
    return _timed(lambda: validate(ann, parent), budget) * 1000


def measure_table(items: int) -> float:
    """Seconds to build a full 8192-item table, extrapolated from `items` items."""
    from node.chain.packetcrypt.hashing import h32
    from node.chain.packetcrypt.randhash import RandHashError, build_table
    for n in range(100):                           # a seed whose program is usable
        seed = h32(b"bench table %d" % n)
        try:
            build_table(seed, seed, 1)
            break
        except RandHashError:
            continue
    start = time.perf_counter()
    build_table(seed, seed, items)
    return (time.perf_counter() - start) * 8192 / items


def measure_mining(fast_depth, window: int) -> dict:
    """One hard nonce: table/merkle preparation, then `window` soft nonces at the pool target."""
    from node.chain.packetcrypt import announcement as A
    from node.chain.packetcrypt.difficulty import soft_nonce_max
    from node.chain.packetcrypt.hashing import h32
    from node.chain.packetcrypt.randhash import RandHashError
    version = 1 if fast_depth is None else A.fast_version(fast_depth)
    parent = h32(b"bench parent")
    for hard_nonce in range(100):
        miner = A.AnnMiner(A.Announcement(version=version, hard_nonce=hard_nonce, work_bits=POOL_ANN_BITS,
                                          parent_block_height=200000), parent)
        start = time.perf_counter()
        try:
            miner.prepare()
        except RandHashError:
            continue
        prepare = time.perf_counter() - start
        break
    start = time.perf_counter()
    found = sum(1 for _ in miner.search(0, window))
    search = time.perf_counter() - start
    nonces = soft_nonce_max(POOL_ANN_BITS) + 1
    per_hard_nonce = prepare + search * nonces / window          # a miner exhausts the soft nonce range
    anns = max(found, 0.5) * nonces / window                     # (0.5: avoid reporting zero on a tiny window)
    return {"prepare_s": prepare, "soft_nonce_hashes_per_s": window / search,
            "anns_per_s": anns / per_hard_nonce, "found_in_window": found, "window": window}


def measure_block_hashes(budget: float) -> float:
    from node.chain.packetcrypt import block as B
    from node.chain.packetcrypt.hashing import h32
    anns = [h32(b"ann %d" % i) * 32 for i in range(64)]
    header = h32(b"bench header") * 2 + bytes(16)
    done, nonce2, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        for _ in range(200):
            B.pc_hash(header, nonce2, anns)
            nonce2 += 1
        done += 200
    return done / (time.perf_counter() - start)


def _pure_python_baseline() -> dict:
    """Re-run the measurements without the C accelerator, in a child process (announcement mining: one hard
    nonce's full table build, then 1024 soft nonces)."""
    code = ("import json,bench.packetcrypt as b;"
            "print(json.dumps({'validation_ms': b.measure_validation(3.0),"
            " 'table_build_s': b.measure_table(256), 'mining_faithful': b.measure_mining(None, 1024),"
            " 'block_hashes_per_s': b.measure_block_hashes(3.0)}))")
    env = dict(os.environ, PKTLAB_NO_ACCEL="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    from testbed.console import make_console
    from rich.table import Table

    from node.chain.packetcrypt.randhash import accel_available
    accel = accel_available()
    results = {"accelerator": accel, "reference_c_validation_ms": C_VALIDATION_MS}
    results["validation_ms"] = measure_validation(5.0)
    results["table_build_s"] = measure_table(8192 if accel else 256)
    results["mining_faithful"] = measure_mining(None, 4096)
    results["mining_fast_depth6"] = measure_mining(6, 4096)
    results["block_hashes_per_s"] = measure_block_hashes(5.0)
    results["pure_python"] = base = _pure_python_baseline()

    table = Table(title=f"PacketCrypt, one core (C accelerator: {'yes' if accel else 'no'})")
    for col in ("measurement", "value", "pure Python (same run)", "speedup", "reference C", "x of C"):
        table.add_column(col, justify="left" if col == "measurement" else "right")

    def row(name, value, unit, baseline=None, c_ref=None, lower_is_better=True):
        speed = ratio = ""
        if baseline:
            speed = f"{(baseline / value if lower_is_better else value / baseline):.1f}x"
        if c_ref:
            ratio = f"{value / c_ref:.1f}x"
        table.add_row(name, f"{value:.3g} {unit}", f"{baseline:.3g} {unit}" if baseline else "-", speed or "-",
                      f"{c_ref:.3g} {unit}" if c_ref else "-", ratio or "-")

    row("announcement validation (faithful)", results["validation_ms"], "ms", base.get("validation_ms"),
        C_VALIDATION_MS)
    row("table build (8192 items)", results["table_build_s"], "s", base.get("table_build_s"))
    mf, mq = results["mining_faithful"], results["mining_fast_depth6"]
    bf = base.get("mining_faithful", {})
    row("ann mining faithful: hard-nonce prepare", mf["prepare_s"], "s", bf.get("prepare_s"))
    row("ann mining faithful: soft-nonce hashes", mf["soft_nonce_hashes_per_s"], "H/s",
        bf.get("soft_nonce_hashes_per_s"), lower_is_better=False)
    row("ann mining faithful @work 127, per core", mf["anns_per_s"], "ann/s", bf.get("anns_per_s"),
        lower_is_better=False)
    row("ann mining fast (64 items) @work 127", mq["anns_per_s"], "ann/s", lower_is_better=False)
    row("block mining, per core", results["block_hashes_per_s"], "H/s", base.get("block_hashes_per_s"),
        lower_is_better=False)
    make_console(width=132).print(table)
    within = results["validation_ms"] <= 10 * C_VALIDATION_MS
    results["validation_within_10x_of_c"] = within
    print(f"faithful validation {results['validation_ms']:.2f} ms = "
          f"{results['validation_ms'] / C_VALIDATION_MS:.1f}x the C reference (target <= 10x: "
          f"{'met' if within else 'NOT met'})")
    if "error" in base:
        print("pure-Python baseline failed:", base["error"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
