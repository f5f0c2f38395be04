"""Chain benchmark: `python -m bench.chain [--blocks N]`.

1. Generates a regtest chain of N blocks (default 1000) in-process, each block mined with faithful version-1
   announcements (one announcement set per 5 parents, so every set is 3..7 blocks old: mature, aged target valid).
2. Block validation: the full consensus check of the next block (sanity, header context, the PacketCrypt proof with
   its 4 announcements through the faithful validator, connecting its transactions in a coin view that is thrown
   away), against the same block's header-only check (what headers-first sync checks per header) in the same run.
3. Sync: node A (a child process) serves the chain from its SQLite store over the real P2P code on loopback TCP;
   a fresh node B syncs headers first and we time it until B's tip is A's. Baseline: the same blocks applied
   in-process to a fresh chain (Chain.process_block, the same full check and store, no network).

Prints a table and writes bench/results/chain.json.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.common import console, table, write
from node.chain import consensus, mining
from node.chain import params as P
from node.chain.chain_node import ChainNode
from node.chain.chainstate import ACCEPTED, Chain
from node.chain.coins import CoinView
from node.chain.keys import Key
from node.chain.p2p import P2P

PARAMS = P.regtest()
ANN_BITS = 0x20020000           # the pools' default announcement target
SPACING = 20                    # seconds between blocks
NOW = 2_000_000_000             # the nodes' clock: every generated block is in its past
MINER = Key.from_seed("pktlab bench miner")
A_HOST, B_HOST = "127.0.0.2", "127.0.0.1"      # the lower address dials: B dials A, already listening


def _ann_parent(height: int) -> int:
    return 0 if height < 3 else ((height - 3) // 5) * 5


def next_block(chain: Chain, anns: dict):
    h = chain.height + 1
    p = _ann_parent(h)
    if p not in anns:
        anns[p] = mining.mine_announcements(chain, p, 4, ANN_BITS, hard_nonce=p)
    t = mining.make_template(chain, MINER.p2pkh_script, PARAMS.genesis_time + SPACING * h)
    return mining.solve(t, anns[p]).block


def generate(directory: Path, n: int) -> tuple[Chain, object]:
    """A chain of n blocks in `directory`, and the next block (not applied)."""
    chain, anns = Chain(directory, PARAMS), {}
    while chain.height < n:
        b = next_block(chain, anns)
        r = chain.process_block(b, NOW)
        if r.status != ACCEPTED:
            raise RuntimeError(f"generated block {chain.height + 1} rejected: {r.reason} {r.detail}")
    return chain, next_block(chain, anns)


def _timed(fn, min_seconds: float, min_runs: int = 5) -> float:
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def measure_validation(chain: Chain, block) -> dict:
    parent = chain.tip
    height = parent.height + 1

    def ancestor(x):
        return chain.ancestor(parent, x)

    def header_only():
        consensus.check_header_sanity(block.header, PARAMS, NOW)
        consensus.check_header_context(block.header, parent, PARAMS, ancestor)

    def proof_only():
        consensus.check_proof(block, height, PARAMS, lambda x: ancestor(x).hash if 0 <= x <= parent.height else None)

    def full():
        consensus.check_block_sanity(block, PARAMS, NOW)
        consensus.check_header_context(block.header, parent, PARAMS, ancestor)
        consensus.check_block_context(block, height)
        proof_only()
        consensus.connect_block(block, height, CoinView(chain.store), PARAMS, chain.store.election(parent.hash),
                                chain.store.voting_coins)
    return {"full_ms": _timed(full, 3.0) * 1000, "proof_ms": _timed(proof_only, 2.0) * 1000,
            "header_only_ms": _timed(header_only, 1.0) * 1000, "anns_in_proof": len(block.proof.anns)}


def apply_in_process(blocks: list[bytes], directory: Path) -> float:
    chain = Chain(directory, PARAMS)
    start = time.perf_counter()
    for raw in blocks:
        r = chain.process_block(raw, NOW)
        if r.status != ACCEPTED:
            raise RuntimeError(f"baseline: block rejected: {r.reason} {r.detail}")
    elapsed = time.perf_counter() - start
    chain.close()
    return elapsed


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _serve(directory: str, port: int, b_port: int, ready) -> None:
    """Node A: serve its chain over P2P until killed (`ready` is set once it listens)."""
    node = ChainNode("A", PARAMS, directory, clock=lambda: NOW)
    node.p2p = P2P(node, PARAMS, listen=(A_HOST, port), peers=[(B_HOST, b_port)])

    async def run():
        await node.p2p.start()
        ready.set()
        await asyncio.Event().wait()
    asyncio.run(run())


def measure_sync(a_dir: Path, b_dir: Path, tip: bytes, within: float = 300.0) -> float:
    a_port, b_port = _free_port(A_HOST), _free_port(B_HOST)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    server = ctx.Process(target=_serve, args=(str(a_dir), a_port, b_port, ready), daemon=True)
    server.start()
    if not ready.wait(60):
        server.terminate()
        raise RuntimeError("sync: node A did not come up in 60 s")
    node = ChainNode("B", PARAMS, b_dir, clock=lambda: NOW)
    node.p2p = P2P(node, PARAMS, listen=(B_HOST, b_port), peers=[(A_HOST, a_port)])

    async def run() -> float:
        start = time.perf_counter()
        await node.p2p.start()
        try:
            while node.chain.tip.hash != tip:
                if time.perf_counter() - start > within:
                    raise RuntimeError(f"sync: B at height {node.chain.height} after {within} s")
                await asyncio.sleep(0.02)
            return time.perf_counter() - start
        finally:
            await node.p2p.stop()
    try:
        return asyncio.run(run())
    finally:
        server.terminate()
        server.join(10)
        node.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chain", description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=1000, help="length of the chain to sync (default 1000)")
    args = ap.parse_args(argv)
    from node.chain.packetcrypt.randhash import accel_available
    results: dict = {"blocks": args.blocks, "accelerator": accel_available(), "params": PARAMS.name,
                     "ann_bits": f"0x{ANN_BITS:08x}"}
    with tempfile.TemporaryDirectory(prefix="pktlab-bench-chain-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        chain, extra = generate(tmp / "a", args.blocks)
        results["generate_s"] = time.perf_counter() - t0
        results["validation"] = v = measure_validation(chain, extra)
        tip = chain.tip.hash
        raws = [chain.store.block_raw(chain.block_hash_at(h)) for h in range(1, args.blocks + 1)]
        chain.close()
        results["apply_in_process_s"] = base = apply_in_process(raws, tmp / "baseline")
        results["sync_p2p_s"] = sync = measure_sync(tmp / "a", tmp / "b", tip)
    results["sync_over_in_process"] = sync / base
    n = args.blocks
    console.print(table(f"PKT chain (regtest, faithful announcements, C accelerator: "
                        f"{'yes' if results['accelerator'] else 'no'})",
                        ["measurement", "value", "baseline (same run)", "baseline is", "ratio"], [
        ["block validation, full consensus check", f"{v['full_ms']:.2f} ms", f"{v['header_only_ms']:.3f} ms",
         "header-only check", f"{v['full_ms'] / v['header_only_ms']:.0f}x"],
        [f"  of which PacketCrypt proof ({v['anns_in_proof']} anns)", f"{v['proof_ms']:.2f} ms", None, None, None],
        [f"sync {n} blocks, P2P over loopback TCP", f"{sync:.1f} s", f"{base:.1f} s",
         "same blocks applied in-process", f"{sync / base:.2f}x"],
        ["  per block", f"{sync / n * 1000:.1f} ms", f"{base / n * 1000:.1f} ms", None, None],
        [f"generating the {n} blocks (mining, not timed above)", f"{results['generate_s']:.1f} s", None, None,
         None]]))
    print(f"written {write('chain', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
