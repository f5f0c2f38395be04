"""A chain node: the chain state (node/chain/chainstate.py) with what a running node adds around it: every block and
transaction from peers or the RPC goes through here, so relaying, the run's event log (reorgs) and waking the
RPC's long polls happen in one place.

    node = ChainNode("a2", params, directory, events=EventLog(...))
    node.p2p = P2P(node, params, ...)            # optional: the peer-to-peer side relays what is accepted here
    result = node.process_block(raw, "rpc")      # chainstate.ProcessResult
    fee = node.accept_tx(raw, "peer fc..")       # or consensus.Rejected
    node.status()                                # what `pktlab chain` shows

Events written to the run's log: `reorg` (node, fork height, depth = blocks disconnected, blocks connected, old and
new tip). A `block_found` event is the pool's (it knows who found the block); the chain node counts blocks by
origin instead.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from .chainstate import ACCEPTED, Chain, ProcessResult
from .packetcrypt import difficulty
from .store import VALID
from .tx import Transaction
from .wire import hash_hex, sha256d

log = logging.getLogger(__name__)
RECENT_BLOCKS = 30


class ChainNode:
    def __init__(self, name: str, params, directory, *, events=None, clock=time.time):
        self.name = name
        self.params = params
        self.chain = Chain(directory, params)
        self.events = events
        self.clock = clock
        self.p2p = None
        self.started = clock()
        self.blocks_by_origin: Counter[str] = Counter()
        self.rpc_rejections: Counter[str] = Counter()
        self._tip_waiters: list[asyncio.Future] = []

    def close(self) -> None:
        self.chain.close()

    # --- input ---------------------------------------------------------------------------------------------------
    def process_block(self, raw, origin: str) -> ProcessResult:
        old_tip = self.chain.tip.hash
        result = self.chain.process_block(raw, int(self.clock()))
        if result.status == ACCEPTED:
            self.blocks_by_origin["peer" if origin.startswith("peer") else origin] += 1
        for r in result.reorgs:
            log.info("reorg at %d: %d block(s) out, %d in, tip %s", r.fork_height, r.disconnected, r.connected,
                     hash_hex(r.new_tip))
            self._event("reorg", fork_height=r.fork_height, depth=r.disconnected, connected=r.connected,
                        old_tip=hash_hex(r.old_tip), new_tip=hash_hex(r.new_tip), origin=origin)
        if self.chain.tip.hash != old_tip:
            if self.p2p is not None:
                self.p2p.announce_blocks(result.connected, skip=_peer_addr(origin))
            self._wake_tip_waiters()
        return result

    def accept_tx(self, raw, origin: str) -> int:
        fee = self.chain.accept_tx(raw, int(self.clock()))
        if self.p2p is not None:
            txid = raw.txid if isinstance(raw, Transaction) else sha256d(raw)     # no segwit: the raw bytes' hash
            self.p2p.announce_tx(txid, skip=_peer_addr(origin))
        return fee

    def _event(self, kind: str, **details) -> None:
        if self.events is None:
            return
        try:
            self.events.append(kind, node=self.name, **details)
        except (OSError, ValueError) as e:
            log.warning("event log: %s", e)

    # --- long polls ------------------------------------------------------------------------------------------------
    def _wake_tip_waiters(self) -> None:
        for f in self._tip_waiters:
            if not f.done():
                f.set_result(None)
        self._tip_waiters.clear()

    async def wait_tip_change(self, known: bytes, timeout: float) -> None:
        """Return when the tip is no longer `known` or after `timeout` seconds."""
        if self.chain.tip.hash != known:
            return
        fut = asyncio.get_running_loop().create_future()
        self._tip_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass

    # --- what the node shows -----------------------------------------------------------------------------------------
    def difficulty(self, bits: int) -> float:
        """pktd's getDifficultyRatio: the pow limit's target over this target."""
        return self.params.pow_limit / max(difficulty.compact_to_big(bits), 1)

    def forks(self) -> dict:
        """Valid blocks off the main chain, and the tips of the side branches they form."""
        chain = self.chain
        side = [e for e in chain.index.values() if e.status == VALID and not chain.is_main(e)]
        parents = {e.prev for e in side}
        return {"side_blocks": len(side), "side_tips": sum(1 for e in side if e.hash not in parents),
                "invalid_blocks": sum(1 for e in chain.index.values() if e.status != VALID)}

    def status(self) -> dict:
        chain = self.chain
        tip = chain.tip
        recent = [chain.index[chain.main[h]] for h in range(max(chain.height - RECENT_BLOCKS, 0), chain.height + 1)]
        times = [e.time for e in recent]
        reorgs = chain.reorgs
        return {
            "node": self.name, "height": chain.height, "tip": hash_hex(tip.hash), "bits": f"0x{tip.bits:08x}",
            "difficulty": self.difficulty(tip.bits), "chain_work": format(tip.work, "x"), "tip_time": tip.time,
            "next_bits": f"0x{chain.next_bits(int(self.clock())):08x}",
            "recent_block_times": times, "mempool": len(chain.mempool), "orphans": len(chain.orphans),
            "uptime_s": round(self.clock() - self.started, 1), "genesis": hash_hex(chain.genesis_hash),
            "reorgs": len(reorgs), "deepest_reorg": max((r.depth for r in reorgs), default=0),
            "last_reorg": None if not reorgs else {"fork_height": reorgs[-1].fork_height, "depth": reorgs[-1].depth,
                                                   "new_tip": hash_hex(reorgs[-1].new_tip)},
            **self.forks(),
            "blocks_by_origin": dict(self.blocks_by_origin),
            "rejections": {"block": {r.value: n for r, n in chain.rejections.items()},
                           "tx": {r.value: n for r, n in chain.tx_rejections.items()},
                           "p2p": dict(self.p2p.rejections) if self.p2p else {},
                           "rpc": dict(self.rpc_rejections)},
            "p2p": self.p2p.status() if self.p2p else None,
            "steward": chain.election.steward.hex(),
        }


def _peer_addr(origin: str) -> str | None:
    return origin.split(" ", 1)[1] if origin.startswith("peer ") else None

