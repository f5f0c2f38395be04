"""Unspent outputs (coins) and a view of the changes a block or a set of transactions makes on top of a base
UTXO set (btcd `UtxoViewpoint`).

A coin remembers its height, whether a coinbase created it, and pktd's steward flag: a coinbase output whose value
equals the steward payout of its height (`dirtyGuessIsNetworkStewardPayment`) is burned after the burn depth,
whichever script it pays. Outputs that can never be spent (OP_RETURN first, or a script over 10000 bytes) never
enter the set, as in btcd.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Protocol

from .params import ChainParams
from .script import MAX_SCRIPT_SIZE, Op
from .tx import OutPoint, Transaction
from .wire import Reader, var_bytes


@dataclass(frozen=True)
class Coin:
    value: int
    script: bytes
    height: int
    coinbase: bool = False
    steward: bool = False

    def serialize(self) -> bytes:
        flags = int(self.coinbase) | int(self.steward) << 1
        return struct.pack("<qIB", self.value, self.height, flags) + var_bytes(self.script)

    @classmethod
    def read(cls, r: Reader) -> "Coin":
        value, height, flags = r.i64(), r.u32(), r.u8()
        return cls(value, r.var_bytes(), height, bool(flags & 1), bool(flags & 2))


def is_unspendable(script: bytes) -> bool:
    return (len(script) > 0 and script[0] == Op.OP_RETURN) or len(script) > MAX_SCRIPT_SIZE


def coins_of(tx: Transaction, height: int, params: ChainParams) -> Iterator[tuple[OutPoint, Coin]]:
    """The coins a transaction adds at `height`."""
    coinbase = tx.is_coinbase
    payout = params.steward_payout(height) if coinbase else None
    for i, out in enumerate(tx.outputs):
        if not is_unspendable(out.script_pubkey):
            yield OutPoint(tx.txid, i), Coin(out.value, out.script_pubkey, height, coinbase,
                                             coinbase and out.value == payout)


class CoinSource(Protocol):
    def get_coin(self, outpoint: OutPoint) -> Coin | None: ...


class CoinView:
    """Coins added and spent on top of `base`, in order; nothing touches the base until the caller applies it."""

    def __init__(self, base: CoinSource):
        self.base = base
        self.entries: dict[OutPoint, tuple[Coin, bool]] = {}     # outpoint -> (coin, spent)

    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        entry = self.entries.get(outpoint)
        if entry is not None:
            return None if entry[1] else entry[0]
        return self.base.get_coin(outpoint)

    def spent_here(self, outpoint: OutPoint) -> bool:
        entry = self.entries.get(outpoint)
        return entry is not None and entry[1]

    def spend(self, outpoint: OutPoint) -> Coin:
        coin = self.get_coin(outpoint)
        if coin is None:
            raise KeyError(outpoint)
        self.entries[outpoint] = (coin, True)
        return coin

    def add_tx(self, tx: Transaction, height: int, params: ChainParams) -> None:
        for outpoint, coin in coins_of(tx, height, params):
            self.entries[outpoint] = (coin, False)

    def changes(self) -> Iterator[tuple[OutPoint, Coin, bool]]:
        """(outpoint, coin, spent) for every modified entry; an output created and spent here shows as spent."""
        for outpoint, (coin, spent) in self.entries.items():
            yield outpoint, coin, spent
