"""Following one chain for HTLC outputs: what a settlement party knows about its legs comes only from blocks.

    w = ChainWatch()
    w.watch(leg_script)                       # before the leg is locked
    while not w.feed(height, block):          # blocks in main-chain order from height 1
        w.rewind(w.height - 1)                # the block does not extend what was seen: a reorg, go back
    w.seen(leg_script)                        # Seen(state, outpoint, value, heights, preimage)

An output paying a watched script is the leg's funding (the first one counts); an input spending it is its redeem
when its scriptSig is `<sig> <preimage> OP_1` with SHA-256(preimage) the script's hash, its refund when it is
`<sig> OP_0` (node/chain/wallet.py htlc_redeem / htlc_refund). Rewinding forgets what the dropped blocks showed.
Mempools are not looked at: a preimage counts once it is in a block.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from node.chain import script as S
from node.chain.tx import OutPoint


class State(enum.Enum):
    NONE = "none"              # not funded (yet)
    FUNDED = "funded"          # the HTLC output is in a block and unspent
    REDEEMED = "redeemed"      # spent by the payee with the preimage
    REFUNDED = "refunded"      # spent by the payer after the lock height


@dataclass
class Seen:
    state: State = State.NONE
    outpoint: OutPoint | None = None
    value: int = 0
    funded_height: int | None = None
    spent_height: int | None = None
    preimage: bytes | None = None


class ChainWatch:
    def __init__(self):
        self.hashes: list[bytes] = []           # main-chain block ids from height 1
        self._seen: dict[bytes, Seen] = {}      # watched script -> what blocks showed
        self._hash: dict[bytes, bytes] = {}     # watched script -> its payment hash
        self._by_outpoint: dict[OutPoint, bytes] = {}

    @property
    def height(self) -> int:
        return len(self.hashes)

    def watch(self, script: bytes) -> None:
        kind, fields = S.classify(script)
        if kind != "htlc":
            raise ValueError("not an HTLC script")
        self._seen.setdefault(bytes(script), Seen())
        self._hash[bytes(script)] = fields[0]

    def seen(self, script: bytes) -> Seen:
        return self._seen[bytes(script)]

    def feed(self, height: int, block) -> bool:
        """Take the main-chain block at `height`; False (nothing taken) if it does not extend the blocks seen."""
        if height != self.height + 1 or (self.hashes and block.header.prev_hash != self.hashes[-1]):
            return False
        for tx in block.txs:
            for inp in tx.inputs:
                script = self._by_outpoint.get(inp.prevout)
                if script is not None:
                    self._spent(self._seen[script], self._hash[script], inp.script_sig, height)
            for index, out in enumerate(tx.outputs):
                s = self._seen.get(bytes(out.script_pubkey))
                if s is not None and s.state is State.NONE:
                    s.state, s.outpoint, s.value, s.funded_height = State.FUNDED, OutPoint(tx.txid, index), \
                        out.value, height
                    self._by_outpoint[s.outpoint] = bytes(out.script_pubkey)
        self.hashes.append(block.hash)
        return True

    @staticmethod
    def _spent(s: Seen, payment_hash: bytes, script_sig: bytes, height: int) -> None:
        try:
            ops = S.parse(script_sig)
        except S.ScriptParseError:
            return
        if len(ops) == 3 and ops[2].op == S.Op.OP_1 and S.htlc_hash(ops[1].data or b"") == payment_hash:
            s.state, s.preimage = State.REDEEMED, ops[1].data
        elif len(ops) == 2 and ops[1].op == S.Op.OP_0:
            s.state = State.REFUNDED
        else:
            return                                  # not a spend this chain's consensus would take
        s.spent_height = height

    def rewind(self, height: int) -> None:
        """Forget the blocks above `height` and what they showed."""
        del self.hashes[max(height, 0):]
        for script, s in self._seen.items():
            if s.spent_height is not None and s.spent_height > height:
                s.state, s.spent_height, s.preimage = State.FUNDED, None, None
            if s.funded_height is not None and s.funded_height > height:
                self._by_outpoint.pop(s.outpoint, None)
                self._seen[script] = Seen()
