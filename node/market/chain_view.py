"""What the market needs from the PKT chain: a narrow, read-only view, implemented later on the real chain.

The market's protocol code never talks to a chain node. It is handed a :class:`ChainView` (heights, block
hashes, hash-time-locked outputs) and answers with actions (fund, claim, refund) that its driver turns into
transactions. Tests use an in-memory chain with the same interface.

The HTLC the swaps rely on (the chain part must implement exactly this):

* an output of ``amount`` atomic units locked by ``hash`` (SHA-256 of a 32-byte preimage);
* the *claim* path pays ``pay_to`` and needs the preimage; it is valid at any height while the output is
  unspent (as in a Bitcoin-style ``OP_IF OP_SHA256 <hash> OP_EQUALVERIFY <pay_to> OP_ELSE <refund_height>
  OP_CHECKLOCKTIMEVERIFY OP_DROP <refund_to> OP_ENDIF OP_CHECKSIG`` script);
* the *refund* path pays ``refund_to`` and is valid in a block of height >= ``refund_height``;
* a claim puts the preimage on the chain, where everyone can read it (``Htlc.preimage``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

OPEN, CLAIMED, REFUNDED = "open", "claimed", "refunded"


@dataclass(frozen=True)
class Htlc:
    outpoint: str                   # "<txid hex>:<output index>"
    amount: int                     # atomic PKT units
    hash: bytes
    pay_to: bytes
    refund_to: bytes
    refund_height: int
    funded_height: int              # height of the block holding the funding transaction
    state: str = OPEN               # OPEN, CLAIMED or REFUNDED
    preimage: bytes | None = None   # set once CLAIMED
    spent_height: int | None = None


class ChainView(Protocol):
    def height(self) -> int:
        """Height of the best block."""

    def block_hash(self, height: int) -> bytes | None:
        """Hash of the best chain's block at ``height`` (None above the tip)."""

    def htlc(self, outpoint: str) -> Htlc | None:
        """The HTLC output at ``outpoint`` as the best chain has it (None if it is not in a block)."""

    def htlcs_for(self, hash: bytes) -> list:
        """Every HTLC of the best chain locked by ``hash`` (how a watcher finds a published preimage)."""


def depth(chain: ChainView, height: int | None) -> int:
    """Confirmations of something mined at ``height`` (0 if not mined)."""
    return 0 if height is None else max(0, chain.height() - height + 1)
