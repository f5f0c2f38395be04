"""HTLC-forwarding channels on the PKT chain: the on-chain half of hub.py (pure: transactions are built, signed and
checked here; the driver, hubs.py, sends them to a chain node).

The funding transaction pays ``capacity + fee`` to output 0, the one-way channels' 2-of-2 script (channel_chain.py,
node/chain/script.py's ``channel`` template) with the channel's *sender* as payer and its *receiver* as payee::

    OP_IF OP_2 <sender pk> <receiver pk> OP_2 OP_CHECKMULTISIG
    OP_ELSE <refund height> OP_CHECKLOCKTIMEVERIFY OP_DROP <sender pk> OP_CHECKSIG OP_ENDIF

hub_open's ``capacity`` is what the channel can pay: the fee of its close (or refund) is set aside in the funding.

close   the transaction for a hub_state (paid P, pending HTLCs h1..hn): input the funding (final sequence, lock time
        0), outputs in this order: P to the receiver's P2PKH (left out when zero); for each HTLC of the state, in
        the state's order, its amount to the swap's HTLC script (script.py ``htlc``)::

            OP_IF OP_SHA256 <hash> OP_EQUALVERIFY <receiver pk> OP_ELSE <expiry> OP_CHECKLOCKTIMEVERIFY OP_DROP
            <sender pk> OP_ENDIF OP_CHECKSIG

        (the receiver takes it with the preimage, the sender from the HTLC's expiry on); capacity - P - pending to
        the sender's P2PKH (left out when zero). scriptSig ``OP_0 <sender sig> <receiver sig> OP_1``.
refund  capacity to the sender's P2PKH, lock time = the refund height (channel_chain.py's refund).
claim   an HTLC output of a mined close, spent as the swap's HTLC is (chain_client.py's claim and refund): by the
        receiver with the preimage, or from its expiry on by the sender: amount - fee to the spender's P2PKH. An
        HTLC settled on chain costs its taker one fee; one settled off chain (the normal case) costs nothing.

So the close pays exactly what :func:`hub.settle` says: ``paid`` plus every HTLC whose preimage the receiver shows
below its expiry (a claim mined below the expiry: the sender's spend is not valid before it), the sender the rest.
The margin rule keeps the hub whole on chain too: a payee that claims its HTLC output with the preimage at height
t < T_out puts the preimage on the chain, and the hub has margin >= CLOSE_WITHIN blocks to close its incoming
channel and claim the matching output below T_in.

With every state the sender sends the signature of its close, so the receiver can close alone at any time::

    hub_chain_state  {"v":1,"type":"hub_chain_state", hub_state's fields ("channel", "sender", "seq", "paid",
                      "htlcs", "sig": the hub_state's signature), "close_sig": the sender's DER signature + hash
                      type over the close of that state}

The receiver runs the close with both signatures through the chain's script interpreter before the state counts
(a bad one is counted ``bad_close_sig``); it signs nothing the sender could use, so the sender cannot close a stale
state: the sender's own way out is the refund after the refund height, before which the receiver closes
(:func:`close_by`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from node.chain import script as S
from node.chain.interpreter import ScriptError, verify_input
from node.chain.keys import Key
from node.chain.tx import OutPoint, Transaction, TxOut
from node.chain.wallet import Wallet, signature, spend_tx, with_script_sig
from node.chain.wire import hash160, hash_from_hex

from .channel import ChannelError
from .channel_chain import CLOSE_MARGIN
from .hub import HubOpen, HubState
from .wire import Hex, Message, WireError, decode_as

BAD_CLOSE_SIG = "bad_close_sig"


@dataclass(frozen=True)
class HubChainState(Message):
    TYPE: ClassVar[str] = "hub_chain_state"
    WIRE: ClassVar[dict] = {**HubState.WIRE, "close_sig": Hex(None, 73)}
    channel: bytes
    sender: bytes
    seq: int
    paid: int
    htlcs: tuple
    sig: bytes
    close_sig: bytes

    @classmethod
    def of(cls, state: HubState, close_sig: bytes) -> "HubChainState":
        return cls(state.channel, state.sender, state.seq, state.paid, state.htlcs, state.sig, close_sig)

    def state(self) -> HubState:
        return HubState(self.channel, self.sender, self.seq, self.paid, self.htlcs, self.sig)


@dataclass(frozen=True)
class HubTerms:
    """What the chain part adds to a hub_open: the parties' chain keys and the fee of the close."""
    open: HubOpen
    sender_pk: bytes
    receiver_pk: bytes
    fee: int

    def __post_init__(self):
        if self.fee < 0:
            raise ChannelError("a fee >= 0")

    @property
    def script(self) -> bytes:
        return S.channel(self.sender_pk, self.receiver_pk, self.open.refund_height)

    @property
    def funded(self) -> int:
        """The funding output's value: the capacity and the close's fee."""
        return self.open.capacity + self.fee

    def outpoint(self) -> OutPoint:
        txid, index = self.open.funding.split(":")
        return OutPoint(hash_from_hex(txid), int(index))

    def htlc_script(self, h) -> bytes:
        return S.htlc(h.hash, self.receiver_pk, self.sender_pk, h.expiry)


def funding_tx(params, key: Key, coins, receiver_pk: bytes, capacity: int, refund_height: int,
               fee: int) -> Transaction:
    """The sender's funding over ``coins``: capacity + fee (the close's) to the channel script at output 0, the change
    back to ``key``; the transaction pays ``fee`` itself too."""
    return Wallet(params, [key]).send(coins, S.channel(key.pubkey, receiver_pk, refund_height), capacity + fee, fee)


def funding_ok(terms: HubTerms, tx: Transaction) -> bool:
    """Whether ``tx`` is the funding hub_open names: its txid, and the output pays capacity + fee to the script."""
    op = terms.outpoint()
    return (tx.txid == op.txid and op.index < len(tx.outputs) and tx.outputs[op.index].value == terms.funded
            and tx.outputs[op.index].script_pubkey == terms.script)


def _p2pkh(pubkey: bytes) -> bytes:
    return S.p2pkh(hash160(pubkey))


def close_outputs(terms: HubTerms, state: HubState) -> list[TxOut]:
    if state.paid + state.pending() > terms.open.capacity:
        raise ChannelError(f"paid {state.paid} + pending {state.pending()} > capacity {terms.open.capacity}")
    rest = terms.open.capacity - state.paid - state.pending()
    return ([TxOut(state.paid, _p2pkh(terms.receiver_pk))] if state.paid else []) \
        + [TxOut(h.amount, terms.htlc_script(h)) for h in state.htlcs] \
        + ([TxOut(rest, _p2pkh(terms.sender_pk))] if rest else [])


def close_tx(terms: HubTerms, state: HubState) -> Transaction:
    """The unsigned close of ``state``."""
    return spend_tx([terms.outpoint()], close_outputs(terms, state))


def sign_close(terms: HubTerms, state: HubState, key: Key) -> bytes:
    return signature(close_tx(terms, state), 0, key, terms.script)


def closed(terms: HubTerms, state: HubState, sender_sig: bytes, receiver_sig: bytes) -> Transaction:
    """The close with both signatures."""
    script_sig = bytes([S.Op.OP_0]) + S.push_data(sender_sig) + S.push_data(receiver_sig) + bytes([S.Op.OP_1])
    return with_script_sig(close_tx(terms, state), 0, script_sig)


def chain_state(terms: HubTerms, state_data: bytes, key: Key) -> bytes:
    """The sender's hub_chain_state for an encoded hub_state (hub.py's HtlcSender output)."""
    state = HubState.decode(state_data)
    return HubChainState.of(state, sign_close(terms, state, key)).encode()


def check_chain_state(terms: HubTerms, data, key: Key) -> tuple[bytes, bytes]:
    """(the encoded hub_state, the close signature) of a hub_chain_state whose close_sig makes the close valid
    with the receiver's signature (``key``); WireError (``bad_close_sig``, or the wire's codes) otherwise."""
    msg = decode_as({HubChainState.TYPE: HubChainState}, data)
    state = msg.state()
    try:
        tx = closed(terms, state, msg.close_sig, sign_close(terms, state, key))
        verify_input(tx, 0, terms.script)
    except (ScriptError, ChannelError) as e:
        raise WireError(BAD_CLOSE_SIG, f"close_sig does not sign the close of seq {state.seq}: {e}") from None
    return state.encode(), msg.close_sig


def refund_tx(terms: HubTerms, key: Key) -> Transaction:
    """The sender's refund of the capacity, valid in blocks above the refund height."""
    tx = spend_tx([terms.outpoint()], [TxOut(terms.open.capacity, _p2pkh(terms.sender_pk))],
                  lock_time=terms.open.refund_height)
    return with_script_sig(tx, 0, S.push_data(signature(tx, 0, key, terms.script)) + bytes([S.Op.OP_0]))


def htlc_outpoints(terms: HubTerms, state: HubState, close_txid: str) -> dict[bytes, str]:
    """{hash: the outpoint of its HTLC output} in the close of ``state`` (txid hex): what a claim spends
    (ChainClient.claim with the preimage, ChainClient.refund from the expiry on)."""
    first = 1 if state.paid else 0
    return {h.hash: f"{close_txid}:{first + i}" for i, h in enumerate(state.htlcs)}


def close_by(terms: HubTerms) -> int:
    """The last height at which the receiver should send its close (before the sender's refund is valid)."""
    return terms.open.refund_height - CLOSE_MARGIN
