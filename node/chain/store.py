"""The chain's embedded store: one SQLite database (`chain.sqlite3`, WAL journal) in a directory the caller gives.

Tables:
  meta(key, value)                  genesis hash (a directory holds one chain), schema version
  blocks(hash, prev, height, work, time, bits, status, reason, raw, steward, disapproval)
                                    every block that passed the checks before connection (raw kept), and the
                                    index entry of blocks found invalid (status 2, reason); the election state
                                    after the block while it is on the main chain
  main(height, hash)                the main chain
  utxo(txid, idx, coin, script, vote_for, vote_against)
                                    the unspent outputs of the main chain's tip (coin = Coin.serialize())
  undo(hash, data)                  the coins each main-chain block spent, to disconnect it in a reorg
A reorg runs in one SQL transaction: a block that fails to connect rolls everything back.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .coins import Coin
from .election import ElectionState
from .script import votes
from .tx import OutPoint
from .wire import Reader, varint

SCHEMA_VERSION = "1"
VALID, INVALID = 1, 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS blocks(hash BLOB PRIMARY KEY, prev BLOB, height INTEGER, work TEXT, time INTEGER,
    bits INTEGER, status INTEGER, reason TEXT, raw BLOB, steward BLOB, disapproval INTEGER);
CREATE TABLE IF NOT EXISTS main(height INTEGER PRIMARY KEY, hash BLOB);
CREATE TABLE IF NOT EXISTS utxo(txid BLOB, idx INTEGER, coin BLOB, script BLOB, vote_for BLOB, vote_against BLOB,
    PRIMARY KEY(txid, idx));
CREATE INDEX IF NOT EXISTS utxo_voting ON utxo(txid) WHERE vote_for IS NOT NULL OR vote_against IS NOT NULL;
CREATE TABLE IF NOT EXISTS undo(hash BLOB PRIMARY KEY, data BLOB);
"""


@dataclass
class IndexEntry:
    """A block in the index: enough to select chains, retarget and check time without loading the block."""
    hash: bytes
    prev: bytes
    height: int
    work: int              # cumulative chain work up to and including this block
    time: int
    bits: int
    status: int = VALID
    reason: str = ""


class StoreError(RuntimeError):
    """The store's directory holds something else (another chain, a newer schema)."""


class ChainStore:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "chain.sqlite3"
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        version = self.get_meta("schema")
        if version is None:
            self.set_meta("schema", SCHEMA_VERSION.encode())
        elif version.decode() != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema {version.decode()}, this code reads {SCHEMA_VERSION}")
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """All or nothing; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    # --- meta ----------------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # --- blocks --------------------------------------------------------------------------------------------------
    def put_block(self, entry: IndexEntry, raw: bytes | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO blocks(hash, prev, height, work, time, bits, status, reason, raw) "
                        "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry.hash, entry.prev, entry.height, format(entry.work, "x"), entry.time, entry.bits,
                         entry.status, entry.reason, raw))

    def set_status(self, block_hash: bytes, status: int, reason: str) -> None:
        self.db.execute("UPDATE blocks SET status=?, reason=? WHERE hash=?", (status, reason, block_hash))

    def block_raw(self, block_hash: bytes) -> bytes | None:
        row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def load_index(self) -> Iterator[IndexEntry]:
        for h, prev, height, work, t, bits, status, reason in self.db.execute(
                "SELECT hash, prev, height, work, time, bits, status, reason FROM blocks ORDER BY height"):
            yield IndexEntry(bytes(h), bytes(prev), height, int(work, 16), t, bits, status, reason or "")

    def set_election(self, block_hash: bytes, state: ElectionState) -> None:
        self.db.execute("UPDATE blocks SET steward=?, disapproval=? WHERE hash=?",
                        (state.steward, str(state.disapproval), block_hash))

    def election(self, block_hash: bytes) -> ElectionState | None:
        row = self.db.execute("SELECT steward, disapproval FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        if row is None or row[0] is None:
            return None
        return ElectionState(bytes(row[0]), int(row[1]))

    # --- main chain ----------------------------------------------------------------------------------------------
    def main_chain(self) -> list[bytes]:
        rows = self.db.execute("SELECT height, hash FROM main ORDER BY height").fetchall()
        if any(h != i for i, (h, _) in enumerate(rows)):
            raise StoreError(f"{self.path}: the main chain has a gap")
        return [bytes(r[1]) for r in rows]

    def set_main(self, height: int, block_hash: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO main(height, hash) VALUES(?, ?)", (height, block_hash))

    def drop_main(self, height: int) -> None:
        self.db.execute("DELETE FROM main WHERE height >= ?", (height,))

    # --- unspent outputs -----------------------------------------------------------------------------------------
    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        row = self.db.execute("SELECT coin FROM utxo WHERE txid=? AND idx=?",
                              (outpoint.txid, outpoint.index)).fetchone()
        return None if row is None else Coin.read(Reader(bytes(row[0]), "coin"))

    def add_coin(self, outpoint: OutPoint, coin: Coin) -> None:
        vote_for, vote_against = votes(coin.script)
        self.db.execute("INSERT OR REPLACE INTO utxo(txid, idx, coin, script, vote_for, vote_against) "
                        "VALUES(?, ?, ?, ?, ?, ?)", (outpoint.txid, outpoint.index, coin.serialize(), coin.script,
                                                     vote_for, vote_against))

    def remove_coin(self, outpoint: OutPoint) -> None:
        self.db.execute("DELETE FROM utxo WHERE txid=? AND idx=?", (outpoint.txid, outpoint.index))

    def voting_coins(self) -> Iterator[tuple[bytes, int]]:
        """(pkScript, value) of every unspent output that carries a vote."""
        for script, coin in self.db.execute("SELECT script, coin FROM utxo "
                                            "WHERE vote_for IS NOT NULL OR vote_against IS NOT NULL"):
            yield bytes(script), Coin.read(Reader(bytes(coin), "coin")).value

    def iter_coins(self) -> Iterator[tuple[OutPoint, Coin]]:
        for txid, idx, coin in self.db.execute("SELECT txid, idx, coin FROM utxo ORDER BY txid, idx"):
            yield OutPoint(bytes(txid), idx), Coin.read(Reader(bytes(coin), "coin"))

    def coin_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM utxo").fetchone()[0]

    # --- undo ----------------------------------------------------------------------------------------------------
    def put_undo(self, block_hash: bytes, spent: list[tuple[OutPoint, Coin]]) -> None:
        data = varint(len(spent)) + b"".join(op.serialize() + c.serialize() for op, c in spent)
        self.db.execute("INSERT OR REPLACE INTO undo(hash, data) VALUES(?, ?)", (block_hash, data))

    def undo(self, block_hash: bytes) -> list[tuple[OutPoint, Coin]]:
        row = self.db.execute("SELECT data FROM undo WHERE hash=?", (block_hash,)).fetchone()
        if row is None:
            raise StoreError(f"no undo data for block {block_hash[::-1].hex()}")
        r = Reader(bytes(row[0]), "undo data")
        out = [(OutPoint(r.read(32), r.u32()), Coin.read(r)) for _ in range(r.varint())]
        r.end()
        return out

    def drop_undo(self, block_hash: bytes) -> None:
        self.db.execute("DELETE FROM undo WHERE hash=?", (block_hash,))
