"""The market's ChainView of the real PKT chain: the best chain's blocks, read for their HTLC outputs (pure).

The chain's HTLC is node/chain/script.py's ``htlc`` template (the script chain_view.py's docstring asks for)::

    OP_IF OP_SHA256 <hash> OP_EQUALVERIFY <redeem pubkey> OP_ELSE <height> OP_CHECKLOCKTIMEVERIFY OP_DROP
    <refund pubkey> OP_ENDIF OP_CHECKSIG

so an :class:`~node.market.chain_view.Htlc`'s ``pay_to`` and ``refund_to`` are the two compressed secp256k1
public keys (33 bytes) and ``refund_height`` the CLTV height. A spend's scriptSig says which path it took:
``<sig> <preimage> OP_1`` is a claim (the preimage is then public), ``<sig> OP_0`` a refund. The chain checked the
scripts before the block got in, so the index only reads them; a claim whose pushed preimage does not hash to the
HTLC's hash cannot be in a valid block and is not taken as a claim.

One difference from the in-memory chain of the unit tests: Bitcoin's finality rule (a lock time must be *below*
the block height) makes a refund valid from block ``refund_height + 1`` on, one block later than chain_view.py
says. The swap only becomes safer by it (the claim window ends at ``refund_height - 1`` either way).

For payment channels (channel_chain.py) the index also keeps which transactions the best chain holds
(:meth:`confirmed`) and which transaction spent an outpoint (:meth:`spender`): the funding of a channel is a bare
script the seller checks from the transaction itself, so the index needs only its txid and its spend.

Blocks are fed in order by height (:meth:`HtlcIndex.add_block`); a reorg is :meth:`rewind` to the fork point
and the new branch fed again. The index answers from what it was fed, without I/O: the driver keeps it in step
with a chain node (chain_client.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from node.chain import script as S
from node.chain.blocks import Block
from node.chain.tx import OutPoint
from node.chain.wire import hash_hex

from .chain_view import CLAIMED, REFUNDED, Htlc


@dataclass(frozen=True)
class _Spend:
    outpoint: str
    preimage: bytes | None          # None: the refund path


def outpoint_text(op: OutPoint) -> str:
    return f"{hash_hex(op.txid)}:{op.index}"


def read_spend(script_sig: bytes) -> tuple[str, bytes | None] | None:
    """("claim", preimage) or ("refund", None) for an HTLC scriptSig, None for any other shape."""
    try:
        ops = S.parse(script_sig)
    except S.ScriptParseError:
        return None
    if len(ops) == 3 and ops[2].op == S.Op.OP_1 and ops[1].data is not None:
        return "claim", ops[1].data
    if len(ops) == 2 and ops[1].op == S.Op.OP_0:
        return "refund", None
    return None


class HtlcIndex:
    """The best chain's block hashes and HTLC outputs with their spends; a ChainView."""

    def __init__(self):
        self.hashes: list[bytes] = []           # by height, from 0
        self._funds: list[list[tuple[Htlc, bytes]]] = []        # per height: (htlc, its output script)
        self._spends: list[list[_Spend]] = []
        self._state: dict[str, Htlc] | None = None
        self._scripts: dict[str, bytes] = {}
        self._txids: list[set] = []             # per height: the txids (hex) of its transactions
        self._spent: list[dict] = []            # per height: outpoint -> the txid (hex) that spent it

    # -- feeding ----------------------------------------------------------------------------------------------

    def add_block(self, height: int, block: Block) -> None:
        if height != len(self.hashes):
            raise ValueError(f"block at height {height}, the index expects {len(self.hashes)}")
        funds, spends, spent = [], [], {}
        known = self.state()
        for tx in block.txs:
            if not tx.is_coinbase:
                spent.update((outpoint_text(txin.prevout), tx.txid_hex) for txin in tx.inputs)
            for i, out in enumerate(tx.outputs):
                kind, fields = S.classify(out.script_pubkey)
                if kind == "htlc":
                    hash_, redeem, refund, lock = fields
                    op = f"{tx.txid_hex}:{i}"
                    funds.append((Htlc(op, out.value, hash_, redeem, refund, lock, height), out.script_pubkey))
            if tx.is_coinbase:
                continue
            for txin in tx.inputs:
                op = outpoint_text(txin.prevout)
                htlc = known.get(op) or next((h for h, _ in funds if h.outpoint == op), None)
                spend = read_spend(txin.script_sig) if htlc is not None else None
                if spend is None:
                    continue
                kind, preimage = spend
                if kind == "claim" and S.htlc_hash(preimage) != htlc.hash:
                    continue
                spends.append(_Spend(op, preimage))
        self.hashes.append(block.hash)
        self._funds.append(funds)
        self._spends.append(spends)
        self._txids.append({tx.txid_hex for tx in block.txs})
        self._spent.append(spent)
        self._state = None

    def rewind(self, height: int) -> None:
        """Forget every block above ``height`` (a reorg's fork point)."""
        del self.hashes[height + 1:], self._funds[height + 1:], self._spends[height + 1:]
        del self._txids[height + 1:], self._spent[height + 1:]
        self._state = None

    def state(self) -> dict[str, Htlc]:
        """Every HTLC of the best chain by outpoint, as it stands at the tip."""
        if self._state is None:
            htlcs = {}
            for height, (funds, spends) in enumerate(zip(self._funds, self._spends)):
                for h, script in funds:
                    htlcs[h.outpoint] = h
                    self._scripts[h.outpoint] = script
                for s in spends:
                    h = htlcs[s.outpoint]
                    htlcs[s.outpoint] = replace(h, state=CLAIMED if s.preimage is not None else REFUNDED,
                                                preimage=s.preimage, spent_height=height)
            self._state = htlcs
        return self._state

    # -- ChainView --------------------------------------------------------------------------------------------

    def height(self) -> int:
        return len(self.hashes) - 1

    def block_hash(self, height: int) -> bytes | None:
        return self.hashes[height] if 0 <= height < len(self.hashes) else None

    def htlc(self, outpoint: str) -> Htlc | None:
        return self.state().get(outpoint)

    def htlcs_for(self, hash: bytes) -> list:
        return [h for h in self.state().values() if h.hash == hash]

    def script(self, outpoint: str) -> bytes | None:
        """The output script of an HTLC the index has seen (what a claim or refund signs)."""
        self.state()
        return self._scripts.get(outpoint)

    def confirmed(self, txid: str) -> int | None:
        """The height of the block on the best chain that holds the transaction ``txid`` (hex), None if none."""
        return next((h for h, txids in enumerate(self._txids) if txid in txids), None)

    def spender(self, outpoint: str) -> str | None:
        """The txid (hex) of the best chain's transaction that spent ``outpoint``, None while it is unspent."""
        return next((s[outpoint] for s in self._spent if outpoint in s), None)
