"""The mempool: transactions waiting for a block, checked against the chain's UTXO set and each other.

A transaction enters when it passes the consensus checks for the next block (sanity, finality, inputs that exist in
the UTXO set or in the mempool, maturity, burn, amounts, scripts), is not already known, spends nothing another
mempool transaction spends (no replacement: DOUBLE_SPEND) and pays at least `min_fee_per_kb`. A block removes what
it includes and everything that conflicts with it (and their descendants); a reorg puts the disconnected blocks'
transactions back and drops whatever no longer fits the new tip. Templates take transactions by fee rate, parents
first.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import consensus
from .coins import Coin, CoinSource, CoinView
from .consensus import Reason, Rejected
from .params import ChainParams
from .tx import OutPoint, Transaction

UNCONFIRMED_HEIGHT = 0x7FFFFFFF     # btcd's height for coins of mempool transactions


@dataclass(frozen=True)
class MempoolEntry:
    tx: Transaction
    fee: int
    added: int                  # the caller's clock when it entered
    coins: tuple[Coin, ...]     # what its inputs spend

    @property
    def fee_rate(self) -> float:
        return self.fee * 1000 / self.tx.size


class _WithMempool:
    """Chain coins plus the outputs of mempool transactions."""

    def __init__(self, chain: CoinSource, pool: "Mempool"):
        self.chain = chain
        self.pool = pool

    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        entry = self.pool.entries.get(outpoint.txid)
        if entry is not None:
            if outpoint.index >= len(entry.tx.outputs):
                return None
            out = entry.tx.outputs[outpoint.index]
            return Coin(out.value, out.script_pubkey, UNCONFIRMED_HEIGHT)
        return self.chain.get_coin(outpoint)


class Mempool:
    def __init__(self, params: ChainParams, min_fee_per_kb: int = 0):
        self.params = params
        self.min_fee_per_kb = min_fee_per_kb
        self.entries: dict[bytes, MempoolEntry] = {}      # txid -> entry, in arrival order
        self.spenders: dict[OutPoint, bytes] = {}         # outpoint -> txid of the mempool tx spending it

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self.entries

    def accept(self, tx: Transaction, coins: CoinSource, next_height: int, block_time: int, now: int) -> int:
        """Add `tx` if it could go into the block at `next_height`; returns its fee, raises Rejected."""
        if tx.txid in self.entries:
            raise Rejected(Reason.ALREADY_KNOWN, tx.txid_hex)
        consensus.check_tx_sanity(tx, self.params)
        if tx.is_coinbase:
            raise Rejected(Reason.BAD_TX, "a coinbase cannot enter the mempool")
        if not consensus.is_final(tx, next_height, block_time):
            raise Rejected(Reason.NON_FINAL, f"locked until {tx.lock_time}")
        for txin in tx.inputs:
            other = self.spenders.get(txin.prevout)
            if other is not None:
                raise Rejected(Reason.DOUBLE_SPEND, f"{txin.prevout} is already spent by mempool transaction "
                               f"{other[::-1].hex()}")
        view = CoinView(_WithMempool(coins, self))
        fee = consensus.check_tx_inputs(tx, next_height, view, self.params)
        spent = tuple(view.get_coin(i.prevout) for i in tx.inputs)
        consensus.check_tx_scripts(tx, list(spent))
        if fee * 1000 < self.min_fee_per_kb * tx.size:
            raise Rejected(Reason.FEE_TOO_LOW, f"fee {fee} for {tx.size} bytes")
        self.entries[tx.txid] = MempoolEntry(tx, fee, now, spent)
        for txin in tx.inputs:
            self.spenders[txin.prevout] = tx.txid
        return fee

    def remove(self, txid: bytes) -> list[Transaction]:
        """Remove a transaction and every mempool transaction that depends on it; returns what was removed."""
        entry = self.entries.pop(txid, None)
        if entry is None:
            return []
        removed = [entry.tx]
        for txin in entry.tx.inputs:
            if self.spenders.get(txin.prevout) == txid:
                del self.spenders[txin.prevout]
        for i in range(len(entry.tx.outputs)):
            child = self.spenders.get(OutPoint(txid, i))
            if child is not None:
                removed += self.remove(child)
        return removed

    def remove_for_block(self, txs) -> list[Transaction]:
        """A block was connected: drop its transactions and whatever spends what they spend (conflicts)."""
        removed = []
        for tx in txs:
            if tx.txid in self.entries:
                entry = self.entries.pop(tx.txid)
                for txin in entry.tx.inputs:
                    self.spenders.pop(txin.prevout, None)
                continue
            for txin in tx.inputs:
                other = self.spenders.get(txin.prevout)
                if other is not None:
                    removed += self.remove(other)
        return removed

    def expire(self, next_height: int) -> list[Transaction]:
        """Drop what the block at `next_height` could no longer include: spends of steward payments that have
        passed the burn depth while waiting (the only rule that gets stricter as the chain grows)."""
        depth = self.params.steward_burn_depth
        late = [e.tx.txid for e in self.entries.values()
                if any(c.steward and next_height - c.height > depth for c in e.coins)]
        return [t for txid in late for t in self.remove(txid)]

    def revalidate(self, coins: CoinSource, next_height: int, block_time: int, now: int,
                   readd=()) -> list[Transaction]:
        """After a reorg: offer `readd` (the disconnected blocks' transactions, oldest first) and re-check every
        entry against the new tip; returns the transactions dropped."""
        old = list(self.entries.values())
        self.entries.clear()
        self.spenders.clear()
        dropped = []
        for tx, added in [(t, now) for t in readd if not t.is_coinbase] + [(e.tx, e.added) for e in old]:
            try:
                self.accept(tx, coins, next_height, block_time, added)
            except Rejected:
                dropped.append(tx)
        return dropped

    def select(self, max_bytes: int) -> list[MempoolEntry]:
        """Entries for a block template: highest fee rate first, a transaction only after its mempool parents."""
        chosen: list[MempoolEntry] = []
        have: set[bytes] = set()
        size = 0
        pending = sorted(self.entries.values(), key=lambda e: -e.fee_rate)
        progress = True
        while pending and progress:
            progress = False
            for entry in list(pending):
                parents = {i.prevout.txid for i in entry.tx.inputs if i.prevout.txid in self.entries}
                if not parents <= have:
                    continue
                pending.remove(entry)
                progress = True
                if size + entry.tx.size > max_bytes:
                    continue
                chosen.append(entry)
                have.add(entry.tx.txid)
                size += entry.tx.size
        return chosen
