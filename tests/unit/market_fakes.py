"""An in-memory PKT chain for the market tests: a ChainView with HTLC outputs, a mempool, balances and reorgs.

It follows the HTLC rules of node/market/chain_view.py: the claim path is valid at any height while the output is
unspent, the refund path from ``refund_height``. The real chain replaces it in the chain part of issue 16.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from node.market.chain_view import CLAIMED, OPEN, REFUNDED, Htlc


@dataclass(frozen=True)
class Fund:
    txid: str
    payer: bytes
    amount: int
    hash: bytes
    pay_to: bytes
    refund_to: bytes
    refund_height: int


@dataclass(frozen=True)
class Claim:
    outpoint: str
    preimage: bytes


@dataclass(frozen=True)
class Refund:
    outpoint: str


class FakeChain:
    def __init__(self, balances: dict):
        self.genesis_balances = dict(balances)
        self.blocks = [(self._hash(0, 0), ())]          # (hash, txs); block 0 is the genesis
        self.mempool: list = []
        self._salt = 0
        self._txn = 0
        self._states: dict = {}

    @staticmethod
    def _hash(height: int, salt: int) -> bytes:
        return hashlib.sha256(f"block {height} {salt}".encode()).digest()

    # -- ChainView ----------------------------------------------------------------------------------------------

    def height(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int):
        return self.blocks[height][0] if 0 <= height < len(self.blocks) else None

    def htlc(self, outpoint: str, at: int | None = None):
        return self.state_at(self.height() if at is None else at)[0].get(outpoint)

    def htlcs_for(self, hash: bytes, at: int | None = None) -> list:
        return [h for h in self.state_at(self.height() if at is None else at)[0].values() if h.hash == hash]

    # -- wallet -------------------------------------------------------------------------------------------------

    def fund_htlc(self, payer: bytes, amount: int, hash: bytes, pay_to: bytes, refund_to: bytes,
                  refund_height: int) -> str:
        self._txn += 1
        tx = Fund(f"{self._txn:064x}", payer, amount, hash, pay_to, refund_to, refund_height)
        self.mempool.append(tx)
        return f"{tx.txid}:0"

    def claim(self, outpoint: str, preimage: bytes) -> None:
        self.mempool.append(Claim(outpoint, preimage))

    def refund(self, outpoint: str) -> None:
        self.mempool.append(Refund(outpoint))

    def balance(self, key: bytes) -> int:
        return self.state_at(self.height())[1].get(key, 0)

    # -- blocks -------------------------------------------------------------------------------------------------

    def mine(self, n: int = 1, include: bool = True) -> None:
        """Mine ``n`` blocks; each takes every mempool transaction that is valid at its height (if include)."""
        for _ in range(n):
            height = len(self.blocks)
            txs = []
            if include:
                htlcs, balances = self.state_at(height - 1)
                htlcs, balances = dict(htlcs), dict(balances)
                for tx in self.mempool:
                    if self._apply(tx, height, htlcs, balances):
                        txs.append(tx)
            self.blocks.append((self._hash(height, self._salt), tuple(txs)))
            self.mempool = [tx for tx in self.mempool if tx not in txs and self._may_become_valid(tx)]

    def reorg(self, depth: int, empty_blocks: int = 0) -> None:
        """Replace the last ``depth`` blocks by a longer branch: ``empty_blocks`` blocks without the orphaned
        transactions first, then blocks that take them again; the branch is one block longer than the old one."""
        depth = min(depth, self.height())
        orphaned = [tx for _, txs in self.blocks[len(self.blocks) - depth:] for tx in txs]
        del self.blocks[len(self.blocks) - depth:]
        self._states = {}
        self._salt += 1
        self.mempool = orphaned + self.mempool
        empty = min(empty_blocks, depth + 1)
        self.mine(empty, include=False)
        self.mine(depth + 1 - empty)

    def state_at(self, height: int):
        """(htlcs by outpoint, balances) after block ``height`` of the best chain."""
        key = (self._salt, height, self.blocks[min(height, self.height())][0])
        if key not in self._states:
            htlcs, balances = {}, dict(self.genesis_balances)
            for h, (_, txs) in enumerate(self.blocks[:height + 1]):
                for tx in txs:
                    self._apply(tx, h, htlcs, balances)
            self._states[key] = (htlcs, balances)
        return self._states[key]

    @staticmethod
    def _apply(tx, height: int, htlcs: dict, balances: dict) -> bool:
        if isinstance(tx, Fund):
            outpoint = f"{tx.txid}:0"
            if outpoint in htlcs or balances.get(tx.payer, 0) < tx.amount:
                return False
            balances[tx.payer] -= tx.amount
            htlcs[outpoint] = Htlc(outpoint, tx.amount, tx.hash, tx.pay_to, tx.refund_to, tx.refund_height, height)
            return True
        h = htlcs.get(tx.outpoint)
        if h is None or h.state != OPEN:
            return False
        if isinstance(tx, Claim):
            if hashlib.sha256(tx.preimage).digest() != h.hash:
                return False
            balances[h.pay_to] = balances.get(h.pay_to, 0) + h.amount
            htlcs[tx.outpoint] = replace(h, state=CLAIMED, preimage=tx.preimage, spent_height=height)
            return True
        if height < h.refund_height:
            return False
        balances[h.refund_to] = balances.get(h.refund_to, 0) + h.amount
        htlcs[tx.outpoint] = replace(h, state=REFUNDED, spent_height=height)
        return True

    def _may_become_valid(self, tx) -> bool:
        """Keep a transaction in the mempool while it could still be mined (its output unspent or unseen)."""
        if isinstance(tx, Fund):
            return False
        h = self.state_at(self.height())[0].get(tx.outpoint)
        return h is None or h.state == OPEN


class LaggingView:
    """A party's view of the chain ``lag`` blocks behind the tip (a node that is late to sync)."""

    def __init__(self, chain: FakeChain, lag: int = 0):
        self.chain, self.lag = chain, lag

    def height(self) -> int:
        return max(0, self.chain.height() - self.lag)

    def block_hash(self, height: int):
        return self.chain.block_hash(height) if height <= self.height() else None

    def htlc(self, outpoint: str):
        return self.chain.htlc(outpoint, at=self.height())

    def htlcs_for(self, hash: bytes) -> list:
        return self.chain.htlcs_for(hash, at=self.height())
