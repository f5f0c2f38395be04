"""One-way payment channels on the PKT chain: the on-chain half of channel.py (pure: transactions are built, signed
and checked here; the driver sends them to a chain node).

The funding transaction pays ``capacity`` to output 0, node/chain/script.py's ``channel`` template (a bare script,
like the swap's HTLC)::

    OP_IF OP_2 <payer pk> <payee pk> OP_2 OP_CHECKMULTISIG
    OP_ELSE <refund height> OP_CHECKLOCKTIMEVERIFY OP_DROP <payer pk> OP_CHECKSIG OP_ENDIF

``payer pk`` and ``payee pk`` are the parties' compressed secp256k1 chain keys, ``refund height`` is
channel_open's ``refund_height``. Two ways out:

close   the transaction for a paid total P: input the funding (final sequence, lock time 0), outputs
        [P to the payee's P2PKH, capacity - P - fee to the payer's P2PKH (left out when zero)]; scriptSig
        ``OP_0 <payer sig> <payee sig> OP_1`` (SIGHASH_ALL both).
refund  capacity - fee to the payer's P2PKH; scriptSig ``<payer sig> OP_0``, lock time = the refund height and a
        non-final sequence, so it enters a block from refund height + 1 on (the chain's finality rule).

Per unit, the payer signs the close for the new total and sends that signature with the payment::

    channel_chain_pay  {"v":1,"type":"channel_chain_pay", "channel", "seq", "increment", "sig", "close_sig"}
                       channel_pay's fields, and close_sig: the payer's DER signature + hash type over the close
                       transaction paying the new total

The payee runs the close with both signatures through the chain's script interpreter before it accepts the
payment (a bad one is counted ``bad_close_sig``), then channel.py's rules (sequence, one-unit exposure, capacity,
the commitment signature) decide. It keeps the latest close signature and can close alone at any time by adding
its own: paid to it is then exactly what was paid off chain.

A stale commitment cannot be used against the payee: every close needs the payee's signature, and the payee signs
only the latest state. What the payer can do on its own is wait for the refund height and take everything back,
so the payee must close before then (:func:`close_by`); until it closes, what it risks is the one unit it
delivered and was not yet paid for, never more (channel.py's invariant).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from node.chain import script as S
from node.chain.interpreter import ScriptError, verify_input
from node.chain.keys import Key
from node.chain.tx import OutPoint, Transaction, TxOut
from node.chain.wallet import Wallet, signature, spend_tx, with_script_sig
from node.chain.wire import hash160, hash_from_hex

from .channel import (
    OVER_CAPACITY,
    ChannelError,
    ChannelOpen,
    ChannelPay,
    PayeeChannel,
    PayerChannel,
)
from .wire import ID16, SIG, Hex, Message, UInt, WireError, decode_as

BAD_CLOSE_SIG = "bad_close_sig"
CLOSE_MARGIN = 3                # blocks before the refund height by which the payee closes


@dataclass(frozen=True)
class ChainPay(Message):
    TYPE: ClassVar[str] = "channel_chain_pay"
    WIRE: ClassVar[dict] = {"channel": ID16, "seq": UInt(), "increment": UInt(), "sig": SIG,
                            "close_sig": Hex(None, 73)}
    channel: bytes
    seq: int
    increment: int
    sig: bytes
    close_sig: bytes


@dataclass(frozen=True)
class ChainTerms:
    """What the chain part adds to a channel_open: the parties' chain keys and the fee every close and refund
    pays."""
    open: ChannelOpen
    payer_pk: bytes
    payee_pk: bytes
    fee: int

    def __post_init__(self):
        if self.fee < 0 or self.open.capacity <= self.fee + self.open.unit_price:
            raise ChannelError("a chain channel needs capacity > fee + one unit")

    @property
    def script(self) -> bytes:
        return S.channel(self.payer_pk, self.payee_pk, self.open.refund_height)

    @property
    def most_paid(self) -> int:
        """The most a close can pay the payee (the fee comes out of the payer's part)."""
        return self.open.capacity - self.fee

    def outpoint(self) -> OutPoint:
        txid, index = self.open.funding.split(":")
        return OutPoint(hash_from_hex(txid), int(index))


def funding_tx(params, key: Key, coins, payee_pk: bytes, capacity: int, refund_height: int, fee: int) -> Transaction:
    """The payer's funding transaction over ``coins`` (a chain or ChainClient.coins view): capacity to the channel
    script (output 0), the change back to ``key``. Its txid and index 0 are channel_open's ``funding``."""
    script = S.channel(key.pubkey, payee_pk, refund_height)
    return Wallet(params, [key]).send(coins, script, capacity, fee)


def funding_ok(terms: ChainTerms, tx: Transaction) -> bool:
    """Whether ``tx`` is the funding channel_open names: its txid, and output 0 pays capacity to the script."""
    op = terms.outpoint()
    return (tx.txid == op.txid and op.index < len(tx.outputs) and tx.outputs[op.index].value == terms.open.capacity
            and tx.outputs[op.index].script_pubkey == terms.script)


def _p2pkh(pubkey: bytes) -> bytes:
    return S.p2pkh(hash160(pubkey))


def close_tx(terms: ChainTerms, paid: int) -> Transaction:
    """The unsigned close paying ``paid`` to the payee and the rest less the fee to the payer."""
    if not 0 < paid <= terms.most_paid:
        raise ChannelError(f"a close pays 1..{terms.most_paid}, not {paid}")
    rest = terms.most_paid - paid
    outputs = [TxOut(paid, _p2pkh(terms.payee_pk))] + ([TxOut(rest, _p2pkh(terms.payer_pk))] if rest else [])
    return spend_tx([terms.outpoint()], outputs)


def sign_close(terms: ChainTerms, paid: int, key: Key) -> bytes:
    return signature(close_tx(terms, paid), 0, key, terms.script)


def closed(terms: ChainTerms, paid: int, payer_sig: bytes, payee_sig: bytes) -> Transaction:
    """The close with both signatures."""
    script_sig = bytes([S.Op.OP_0]) + S.push_data(payer_sig) + S.push_data(payee_sig) + bytes([S.Op.OP_1])
    return with_script_sig(close_tx(terms, paid), 0, script_sig)


def refund_tx(terms: ChainTerms, key: Key) -> Transaction:
    """The payer's refund of everything less the fee, valid in blocks above the refund height."""
    tx = spend_tx([terms.outpoint()], [TxOut(terms.most_paid, _p2pkh(terms.payer_pk))],
                  lock_time=terms.open.refund_height)
    return with_script_sig(tx, 0, S.push_data(signature(tx, 0, key, terms.script)) + bytes([S.Op.OP_0]))


def close_by(terms: ChainTerms) -> int:
    """The last height at which the payee should send its close: it then has CLOSE_MARGIN blocks to be mined
    before the payer's refund becomes valid."""
    return terms.open.refund_height - CLOSE_MARGIN


class ChainPayer:
    """channel.py's payer that also signs, per unit, the close paying the new total."""

    def __init__(self, terms: ChainTerms, market_key: bytes, chain_key: Key):
        if chain_key.pubkey != terms.payer_pk:
            raise ChannelError("the chain key is not the channel's payer key")
        self.terms, self._key = terms, chain_key
        self.channel = PayerChannel(terms.open, market_key)

    def unit_verified(self, units: int = 1) -> bytes:
        if self.channel.paid + units * self.terms.open.unit_price > self.terms.most_paid:
            raise ChannelError(f"paying {units} more units would leave less than the fee {self.terms.fee}")
        pay = ChannelPay.decode(self.channel.unit_verified(units))
        close_sig = sign_close(self.terms, self.channel.paid, self._key)
        return ChainPay(pay.channel, pay.seq, pay.increment, pay.sig, close_sig).encode()


class ChainPayee:
    """channel.py's payee that accepts a payment only with a valid close signature for the new total, and keeps
    the latest one to close with."""

    def __init__(self, terms: ChainTerms, chain_key: Key):
        if chain_key.pubkey != terms.payee_pk:
            raise ChannelError("the chain key is not the channel's payee key")
        self.terms, self._key = terms, chain_key
        self.channel = PayeeChannel(terms.open)
        self.close_sig: bytes | None = None
        self.rejected: Counter = Counter()      # every rejection (channel.py's reasons and bad_close_sig)

    def receive(self, data) -> bool:
        """A channel_chain_pay; True if it was accepted (else counted in ``rejected`` by reason)."""
        try:
            pay = decode_as({ChainPay.TYPE: ChainPay}, data)
            commitment = self.channel.check(ChannelPay(pay.channel, pay.seq, pay.increment, pay.sig).encode())
            if commitment.paid > self.terms.most_paid:
                raise WireError(OVER_CAPACITY, f"{commitment.paid} leaves less than the fee {self.terms.fee}")
            if not self._close_valid(commitment.paid, pay.close_sig):
                raise WireError(BAD_CLOSE_SIG, "close_sig does not sign the close paying the new total")
        except WireError as e:
            self.rejected[e.code] += 1
            return False
        self.channel.take(commitment)
        self.close_sig = pay.close_sig
        return True

    def _close_valid(self, paid: int, payer_sig: bytes) -> bool:
        tx = closed(self.terms, paid, payer_sig, sign_close(self.terms, paid, self._key))
        try:
            verify_input(tx, 0, self.terms.script)
        except ScriptError:
            return False
        return True

    def close(self) -> Transaction | None:
        """The close for the latest payment, signed by both (None when nothing was paid: nothing to close for)."""
        if self.close_sig is None:
            return None
        paid = self.channel.paid
        return closed(self.terms, paid, self.close_sig, sign_close(self.terms, paid, self._key))
