"""A solo miner: one chain node mines its own announcements and blocks, paced to one block per block time.

A run with several chain instances (testbed/services.py `chains:`) gives each instance one solo miner instead of a
pool, announcement miners and a block miner: K chains on two cores could not afford K PacketCrypt pools. The work is
the real one (faithful version-1 announcements, PcP v2 block proofs, the consensus check of every block), only
cheaper: announcements are mined at ANN_WORK_BITS (about 2^AGE_BLOCKS hashes each), so they stay usable for
AGE_BLOCKS blocks after the announcement wait (pkt-reference.md §5.7: the aged target doubles every block) and a
batch of ANNS_PER_BATCH serves many blocks. A new batch is mined, on the tip, when the current one would be unusable
a few blocks ahead, on the block ANN_WAIT_PERIOD before the next height (so it is usable at once, also after a
restart). The miner submits one block per `target_block_time` seconds (the pacing keeps the difficulty at
the starting bits and the CPU bounded; a chain whose block time matters for a measurement states it).

Pure: the chain is passed in, and the time; `mine_anns` needs only the parent hash, so it can run in a thread.
"""
from __future__ import annotations

import os

from . import mining
from .packetcrypt import announcement as ann_mod
from .packetcrypt import difficulty
from .packetcrypt.randgen import RandHashError

AGE_BLOCKS = 10
ANN_WORK_BITS = difficulty.big_to_compact((1 << (255 - AGE_BLOCKS)) - 1)
ANNS_PER_BATCH = 4
LOOKAHEAD = difficulty.ANN_WAIT_PERIOD + 2     # blocks ahead a batch must still serve, or a new one is mined


def mine_anns(parent_height: int, parent_hash: bytes, count: int = ANNS_PER_BATCH,
              work_bits: int = ANN_WORK_BITS) -> list[bytes]:
    """`count` faithful version-1 announcements on the block (parent_height, parent_hash)."""
    nonce = int.from_bytes(os.urandom(4), "little")
    out: list[bytes] = []
    while len(out) < count:
        template = ann_mod.Announcement(version=1, hard_nonce=nonce, work_bits=work_bits,
                                        parent_block_height=parent_height, signing_key=bytes(32))
        nonce = (nonce + 1) & 0xFFFFFFFF
        miner = ann_mod.AnnMiner(template, parent_hash)
        try:
            miner.prepare()
        except RandHashError:
            continue
        for found in miner.search():
            out.append(found.pack())
            if len(out) >= count:
                break
    return out


class SoloMiner:
    def __init__(self, chain, payout_script: bytes):
        self.chain = chain
        self.payout_script = bytes(payout_script)
        self.anns: list[bytes] = []
        self.blocks = 0
        self.batches = 0

    def _usable(self, height: int) -> list[bytes]:
        return mining.usable_announcements(self.chain, self.anns, height)

    def ann_parent(self) -> tuple[int, bytes] | None:
        """(height, hash) of the parent block for a new batch of announcements when one is needed, else None."""
        height = self.chain.height + 1
        if self._usable(height) and self._usable(height + LOOKAHEAD):
            return None
        parent = max(0, height - difficulty.ANN_WAIT_PERIOD)
        return parent, self.chain.block_hash_at(parent)

    def add_anns(self, anns: list[bytes]) -> None:
        """A new batch; batches no longer usable at the next height are dropped."""
        height = self.chain.height + 1
        self.anns = self._usable(height) + [bytes(a) for a in anns]
        self.batches += 1

    def block(self, now: int):
        """A block on the tip (a Block), or None while no announcement is usable at the next height."""
        usable = self._usable(self.chain.height + 1)
        if not usable:
            return None
        mined = mining.mine_block(self.chain, self.payout_script, usable, now)
        if mined is not None:
            self.blocks += 1
        return mined

    def status(self) -> dict:
        return {"blocks": self.blocks, "ann_batches": self.batches, "anns": len(self.anns)}
