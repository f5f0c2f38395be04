"""`python -m node.chain.service CONFIG.json`: one chain-side service of a node, in the node's network namespace.

Roles (the config's "role"):
  chain        a chain node: its chain in `<state_dir>/chain/` (SQLite; a restarted node reopens it), P2P on
               [address]:p2p_port, the RPC on [address]:rpc_port and on the Unix socket `settings.socket`;
               with settings.solo_pay_to (an address) it also mines, alone, one block per block time (solo.py)
  pool         a PacketCrypt pool (§5.10): master, announcement handler, block handler, paymaker
  miner        an announcement miner uploading to its pool's announcement handlers
  block_miner  a block miner working for its pool

Config (JSON, written by the orchestrator: testbed/services.py):
  {"role", "node", "address" (the node's fc00::/8 address), "state_dir" (the node's run directory),
   "events_file" (the run's event log, or null), "log_file", "chain" (the chain parameters in their config form,
   node/chain/params.py for_run), "settings" {role specific}}

Every service writes `<state_dir>/<role>.status.json` (atomically, every STATUS_S seconds): what it shows to
`pktlab chain` / `pktlab mining`, the node agent's status and the live view. SIGTERM stops it cleanly.
"""
from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys

from .runtime import (
    Runtime,
    ServiceConfigError,
    listening_socket,
    load_config,
    run_until_stopped,
    serve_http,
)

log = logging.getLogger("node.chain.service")


# --- the chain node ----------------------------------------------------------------------------------------------

async def run_chain(rt: Runtime) -> None:
    from aiohttp import web

    from .chain_node import ChainNode
    from .p2p import P2P
    from .rpc import make_app

    p2p_port = rt.setting("p2p_port", int, rt.params.default_port)
    rpc_port = rt.setting("rpc_port", int, rt.params.default_port + 1)
    peers = []
    for i, entry in enumerate(rt.setting("peers", list, [])):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int)):
            raise ServiceConfigError(f"{rt.source}: settings.peers[{i}]: expected [address, port]")
        peers.append((entry[0], entry[1]))
    node = ChainNode(rt.node, rt.params, rt.state_dir / "chain", events=rt.events)
    node.p2p = P2P(node, rt.params, listen=(rt.address, p2p_port), peers=peers,
                   ban_s=rt.setting("ban_s", (int, float), 3600.0))
    runner = web.AppRunner(make_app(node), access_log=None, shutdown_timeout=2.0)
    solo = None
    pay_to = rt.setting("solo_pay_to", str)
    if pay_to is not None:
        from .keys import AddressError, decode_address
        from .solo import SoloMiner
        try:
            solo = SoloMiner(node.chain, decode_address(pay_to))
        except AddressError as e:
            raise ServiceConfigError(f"{rt.source}: settings.solo_pay_to: {e}") from None
    tasks = []

    async def start():
        await node.p2p.start(listening_socket(rt.address, p2p_port))
        await serve_http(rt, runner, rpc_port)
        if solo is not None:
            tasks.append(asyncio.create_task(solo_mine(node, solo)))

    def status():
        st = node.status()
        if solo is not None:
            st["solo_miner"] = solo.status()
        return st

    async def stop():
        for t in tasks:
            t.cancel()
        await node.p2p.stop()
        await runner.cleanup()
        node.close()

    await run_until_stopped(rt, start, status, stop)


async def solo_mine(node, solo) -> None:
    """One block per block time on the node's own chain; announcements are mined in a thread (the loop keeps
    serving P2P and the RPC)."""
    from .solo import mine_anns
    loop = asyncio.get_running_loop()
    block_time = node.params.target_block_time
    next_at = loop.time()
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        try:
            parent = solo.ann_parent()
            if parent is not None:
                solo.add_anns(await loop.run_in_executor(None, mine_anns, *parent))
            block = solo.block(int(node.clock()))
            if block is not None:
                result = node.process_block(block, "solo")
                if not result.ok:
                    log.warning("solo block refused: %s %s", result.reason, result.detail)
        except Exception:                       # a failed round is logged; the miner goes on
            log.exception("solo miner")
        next_at = max(next_at + block_time, loop.time())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m node.chain.service CONFIG.json", file=sys.stderr)
        return 2
    try:
        rt, log_file = load_config(argv[0])
    except ServiceConfigError as e:
        print(f"chain service: bad config: {e}", file=sys.stderr)
        return 2
    faulthandler.register(signal.SIGUSR1, all_threads=True)     # a stuck service shows where (on stderr)
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runners = {"chain": run_chain}
    if rt.role == "pool":
        from .pool.service import run_pool
        runners["pool"] = run_pool
    elif rt.role == "miner":
        from .pool.ann_miner import run_miner
        runners["miner"] = run_miner
    elif rt.role == "block_miner":
        from .pool.block_miner import run_block_miner
        runners["block_miner"] = run_block_miner
    try:
        result = runners[rt.role](rt)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except ServiceConfigError as e:
        print(f"chain service: bad config: {e}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("%s on %s failed", rt.role, rt.node)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
