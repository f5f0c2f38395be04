"""The chain state: block index, most-work chain selection, reorgs with undo data, orphans, the mempool, all
persisted in a ChainStore directory so a restarted node reopens its chain.

    chain = Chain(directory, params)              # creates genesis or reopens what is there
    result = chain.process_block(block, now)      # ProcessResult: accepted / orphan / duplicate / rejected
    fee = chain.accept_tx(tx, now)                # into the mempool, or Rejected
    chain.tip, chain.height, chain.election, chain.get_coin(outpoint), chain.block_hash_at(h)

A block is checked up to its PacketCrypt proof when it arrives (consensus.py steps 1-5); when its branch has more
work than the tip, the node disconnects down to the fork and connects the branch in one SQL transaction (step 6).
A block that fails to connect rolls that transaction back and is marked invalid with its descendants (what fails
there is covered by the header hash: transactions through the merkle root); the node then moves to the best
remaining branch. Blocks that fail before (header, structure, proof) are rejected without being remembered: the
header hash does not cover the PacketCrypt proof, so remembering them would let a forged proof ban a good block.
Work per block is work(bits) of the header target (a fork choice only: the PacketCrypt effective target decides
validity, not work). Orphans (unknown parent) wait in memory, at most
`max_orphans`, oldest dropped first. Every rejection is counted in `rejections` by reason.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from . import consensus
from .blocks import Block, genesis_block
from .coins import Coin, CoinView, coins_of
from .consensus import Reason, Rejected
from .election import ElectionState
from .mempool import Mempool
from .packetcrypt.difficulty import work_for_compact
from .params import ChainParams
from .retarget import median_time_past, next_bits
from .store import INVALID, VALID, ChainStore, IndexEntry, StoreError
from .tx import OutPoint, Transaction
from .wire import DecodeError, hash_hex

ACCEPTED, ORPHAN, DUPLICATE, REJECTED = "accepted", "orphan", "duplicate", "rejected"


@dataclass(frozen=True)
class Reorg:
    fork_height: int
    old_tip: bytes
    new_tip: bytes
    disconnected: int
    connected: int

    @property
    def depth(self) -> int:
        return self.disconnected


@dataclass
class ProcessResult:
    status: str                             # ACCEPTED, ORPHAN, DUPLICATE or REJECTED
    block_hash: bytes | None
    reason: Reason | None = None
    detail: str = ""
    connected: list[bytes] = field(default_factory=list)      # blocks that joined the main chain
    disconnected: list[bytes] = field(default_factory=list)   # blocks that left it
    reorgs: list[Reorg] = field(default_factory=list)
    invalidated: list[tuple[bytes, Reason]] = field(default_factory=list)   # other blocks found invalid

    @property
    def ok(self) -> bool:
        return self.status in (ACCEPTED, ORPHAN, DUPLICATE)


class Chain:
    def __init__(self, directory: str | Path, params: ChainParams, *, max_orphans: int = 100,
                 min_fee_per_kb: int = 0):
        self.params = params
        self.store = ChainStore(directory)
        self.mempool = Mempool(params, min_fee_per_kb)
        self.max_orphans = max_orphans
        self.orphans: OrderedDict[bytes, Block] = OrderedDict()
        self.rejections: Counter[Reason] = Counter()        # blocks
        self.tx_rejections: Counter[Reason] = Counter()     # mempool
        self.reorgs: list[Reorg] = []
        genesis = genesis_block(params)
        stored = self.store.get_meta("genesis")
        if stored is None:
            self._init_genesis(genesis)
        elif stored != genesis.hash:
            raise StoreError(f"{self.store.path} holds the chain of genesis {hash_hex(stored)}, these parameters "
                             f"make genesis {genesis.hash_hex}")
        self.genesis_hash = genesis.hash
        self.index: dict[bytes, IndexEntry] = {e.hash: e for e in self.store.load_index()}
        self.main: list[bytes] = self.store.main_chain()

    def close(self) -> None:
        self.store.close()

    def _init_genesis(self, genesis: Block) -> None:
        entry = IndexEntry(genesis.hash, bytes(32), 0, work_for_compact(genesis.header.bits), genesis.header.time,
                           genesis.header.bits)
        with self.store.transaction():
            self.store.put_block(entry, genesis.raw)
            self.store.set_election(genesis.hash, ElectionState.initial(self.params))
            self.store.set_main(0, genesis.hash)
            self.store.set_meta("genesis", genesis.hash)

    # --- queries -------------------------------------------------------------------------------------------------
    @property
    def tip(self) -> IndexEntry:
        return self.index[self.main[-1]]

    @property
    def height(self) -> int:
        return len(self.main) - 1

    @property
    def election(self) -> ElectionState:
        return self.store.election(self.main[-1])

    def block_hash_at(self, height: int) -> bytes | None:
        return self.main[height] if 0 <= height < len(self.main) else None

    def get_block(self, block_hash: bytes) -> Block | None:
        raw = self.store.block_raw(block_hash)
        return None if raw is None else Block.parse(raw)

    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        return self.store.get_coin(outpoint)

    def iter_coins(self):
        return self.store.iter_coins()

    def is_main(self, entry: IndexEntry) -> bool:
        return entry.height < len(self.main) and self.main[entry.height] == entry.hash

    def ancestor(self, entry: IndexEntry, height: int) -> IndexEntry:
        """The block at `height` on `entry`'s branch (height <= entry.height)."""
        while entry.height > height and not self.is_main(entry):
            entry = self.index[entry.prev]
        return self.index[self.main[height]] if self.is_main(entry) else entry

    def median_time_past(self, entry: IndexEntry | None = None) -> int:
        entry = entry or self.tip
        return median_time_past(self.params, entry, lambda h: self.ancestor(entry, h))

    def next_bits(self, new_time: int, parent: IndexEntry | None = None) -> int:
        parent = parent or self.tip
        return next_bits(self.params, parent, new_time, lambda h: self.ancestor(parent, h))

    def locator(self) -> list[bytes]:
        """Block hashes from the tip back, spaced exponentially after the first ten, genesis last."""
        out, step, h = [], 1, self.height
        while h > 0:
            out.append(self.main[h])
            if len(out) >= 10:
                step *= 2
            h -= step
        out.append(self.main[0])
        return out

    # --- blocks --------------------------------------------------------------------------------------------------
    def process_block(self, block: Block | bytes, now: int) -> ProcessResult:
        """Check, store and (when its branch has the most work) connect a block; then any orphans it unlocks."""
        if not isinstance(block, Block):
            try:
                block = Block.parse(block)
            except DecodeError as e:
                return self._reject(None, Reason.MALFORMED, str(e))
        result = self._accept(block, now)
        if result.status != ACCEPTED:
            return result
        ready = [block.hash]
        while ready:
            parent = ready.pop()
            for orphan in [o for o in self.orphans.values() if o.header.prev_hash == parent]:
                del self.orphans[orphan.hash]
                sub = self._accept(orphan, now)
                result.connected += sub.connected
                result.disconnected += sub.disconnected
                result.reorgs += sub.reorgs
                result.invalidated += sub.invalidated
                if sub.status == ACCEPTED:
                    ready.append(orphan.hash)
                elif sub.reason is not None:
                    result.invalidated.append((orphan.hash, sub.reason))
        return result

    def _reject(self, block_hash: bytes | None, reason: Reason, detail: str) -> ProcessResult:
        self.rejections[reason] += 1
        return ProcessResult(REJECTED, block_hash, reason, detail)

    def _accept(self, block: Block, now: int) -> ProcessResult:
        h = block.hash
        known = self.index.get(h)
        if known is not None:
            if known.status == INVALID:
                return self._reject(h, Reason(known.reason), "known invalid block")
            return ProcessResult(DUPLICATE, h)
        if h in self.orphans:
            return ProcessResult(DUPLICATE, h)
        try:
            consensus.check_block_sanity(block, self.params, now)
        except Rejected as e:
            return self._reject(h, e.reason, e.detail)
        parent = self.index.get(block.header.prev_hash)
        if parent is None:
            self._add_orphan(block)
            return ProcessResult(ORPHAN, h)
        height = parent.height + 1
        entry = IndexEntry(h, parent.hash, height, parent.work + work_for_compact(block.header.bits),
                           block.header.time, block.header.bits)
        try:
            if parent.status == INVALID:
                raise Rejected(Reason.INVALID_PARENT, f"parent {hash_hex(parent.hash)} is invalid")
            consensus.check_header_context(block.header, parent, self.params, lambda x: self.ancestor(parent, x))
            consensus.check_block_context(block, height)
            consensus.check_proof(block, height, self.params,
                                  lambda x: self.ancestor(parent, x).hash if 0 <= x <= parent.height else None)
        except Rejected as e:
            # not remembered as invalid: the header hash does not cover the PacketCrypt proof, so a block that
            # failed here with a forged proof may still arrive with a valid one
            return self._reject(h, e.reason, e.detail)
        with self.store.transaction():
            self.store.put_block(entry, block.raw)
        self.index[h] = entry
        result = ProcessResult(ACCEPTED, h)
        if entry.work > self.tip.work:
            self._activate(entry, result, now)
        if self.index[h].status == INVALID:
            result.status, result.reason = REJECTED, Reason(self.index[h].reason)
            result.detail = "failed to connect"
        return result

    def _add_orphan(self, block: Block) -> None:
        self.orphans[block.hash] = block
        while len(self.orphans) > self.max_orphans:
            self.orphans.popitem(last=False)

    # --- connecting and reorganising ------------------------------------------------------------------------------
    def _activate(self, target: IndexEntry, result: ProcessResult, now: int) -> None:
        """Move the main chain to `target`'s branch, falling back to the best valid branch if a block fails."""
        while target is not None and target.work > self.tip.work:
            fork = self.ancestor(target, min(target.height, self.height))
            while not self.is_main(fork):
                fork = self.index[fork.prev]
            path = []
            e = target
            while e.hash != fork.hash:
                path.append(e)
                e = self.index[e.prev]
            path.reverse()
            old_tip = self.tip
            out_blocks: list[Block] = []
            in_blocks: list[Block] = []
            failing = None
            try:
                with self.store.transaction():
                    for height in range(self.height, fork.height, -1):
                        out_blocks.append(self._disconnect(self.index[self.main[height]]))
                    for e in path:
                        failing = e
                        in_blocks.append(self._connect(e))
            except Rejected as err:
                self.main = self.store.main_chain()          # the transaction rolled back
                self._invalidate(failing, err.reason)
                self.rejections[err.reason] += 1
                if failing.hash != result.block_hash:
                    result.invalidated.append((failing.hash, err.reason))
                target = self._best_valid()
                continue
            result.disconnected += [b.hash for b in out_blocks]
            result.connected += [b.hash for b in in_blocks]
            if out_blocks:
                reorg = Reorg(fork.height, old_tip.hash, self.tip.hash, len(out_blocks), len(in_blocks))
                self.reorgs.append(reorg)
                result.reorgs.append(reorg)
            self._update_mempool(out_blocks, in_blocks, now)
            target = None               # it had the most work when chosen

    def _connect(self, entry: IndexEntry) -> Block:
        block = Block.parse(self.store.block_raw(entry.hash))
        view = CoinView(self.store)
        parent_election = self.store.election(entry.prev)
        new_election, spent = consensus.connect_block(block, entry.height, view, self.params, parent_election,
                                                      self.store.voting_coins)
        for outpoint, coin, is_spent in view.changes():
            if is_spent:
                self.store.remove_coin(outpoint)
            else:
                self.store.add_coin(outpoint, coin)
        self.store.put_undo(entry.hash, spent)
        self.store.set_election(entry.hash, new_election)
        self.store.set_main(entry.height, entry.hash)
        self.main.append(entry.hash)
        return block

    def _disconnect(self, entry: IndexEntry) -> Block:
        block = Block.parse(self.store.block_raw(entry.hash))
        for outpoint, coin in reversed(self.store.undo(entry.hash)):
            self.store.add_coin(outpoint, coin)
        for t in block.txs:                     # after the restore: outputs created and spent in it go too
            for outpoint, _ in coins_of(t, entry.height, self.params):
                self.store.remove_coin(outpoint)
        self.store.drop_undo(entry.hash)
        self.store.drop_main(entry.height)
        self.main.pop()
        return block

    def _invalidate(self, entry: IndexEntry, reason: Reason) -> None:
        bad = {entry.hash}
        with self.store.transaction():
            for e in sorted(self.index.values(), key=lambda x: x.height):
                if e.hash in bad or e.prev in bad:
                    bad.add(e.hash)
                    e.status = INVALID
                    e.reason = reason.value if e.hash == entry.hash else Reason.INVALID_PARENT.value
                    self.store.set_status(e.hash, INVALID, e.reason)

    def _best_valid(self) -> IndexEntry | None:
        best = self.tip
        for e in self.index.values():
            if e.status == VALID and e.work > best.work:
                best = e
        return best if best is not self.tip else None

    def _update_mempool(self, out_blocks: list[Block], in_blocks: list[Block], now: int) -> None:
        for b in in_blocks:
            self.mempool.remove_for_block(b.txs)
        if out_blocks:
            readd = [t for b in reversed(out_blocks) for t in b.txs]
            self.mempool.revalidate(self, self.height + 1, now, now, readd)
        else:
            self.mempool.expire(self.height + 1)

    # --- transactions --------------------------------------------------------------------------------------------
    def accept_tx(self, tx: Transaction | bytes, now: int) -> int:
        """Put a transaction into the mempool; returns its fee or raises Rejected (counted in tx_rejections)."""
        try:
            if not isinstance(tx, Transaction):
                try:
                    tx = Transaction.parse(tx)
                except DecodeError as e:
                    raise Rejected(Reason.MALFORMED, str(e)) from None
            return self.mempool.accept(tx, self, self.height + 1, now, now)
        except Rejected as e:
            self.tx_rejections[e.reason] += 1
            raise
