"""Conformance checks for the ``market.*`` vector kinds (tests/vectors/README.md, tests/vectors/market.json).

Each check recomputes the expected fields with the market code and raises ``Mismatch`` on a difference.
Messages are given either as ``encoding`` (the exact wire text) or as ``message`` (a JSON object, encoded
canonically); byte strings are lowercase hex.
"""
from __future__ import annotations

from collections import Counter

from node.conformance import Mismatch, expect
from node.cjdns import keys

from . import wire
from .auction import auction, auto_bid
from .bids import AuctionTerms, Bid, Rounds
from .channel import ChannelOpen, ChannelPay, Commitment, PayeeChannel
from .evidence import Attestation, Policy, Reveal
from .faults import Discredit, ProofError, verify
from .hub import HtlcFail, HtlcFulfill, HtlcReceiver, HubOpen, HubState
from .hub_chain import HubTerms, close_tx
from .swap import SwapAccept, SwapCancel, SwapFunded, SwapParams, SwapPropose
from .token_chain import LockRequest, RuleError, TokenState, Update

MESSAGES = {c.TYPE: c for c in (Update, LockRequest, Reveal, Attestation, Discredit, SwapPropose, SwapAccept,
                                 SwapFunded, SwapCancel, ChannelOpen, Commitment, ChannelPay, HubOpen, HubState,
                                 HtlcFulfill, HtlcFail, Bid)}


def _data(v: dict) -> bytes:
    return v["encoding"].encode() if "encoding" in v else wire.canonical(v["message"])


def _decode(v: dict):
    msg = wire.decode_as(MESSAGES, _data(v))
    if msg.SIGNER and not msg.signature_ok():
        raise wire.WireError(wire.BAD_SIGNATURE, f"{msg.TYPE} signature does not verify")
    return msg


def check_message(v):
    """One message: canonical encoding, digest, signature (reproduced from the key and nonce randomness)."""
    if "error" in v:
        try:
            _decode(v)
        except wire.WireError as e:
            expect("error", e.code, v["error"])
            return
        raise Mismatch(f"error: the message was accepted, want {v['error']!r}")
    msg = _decode(v)
    expect("encoding", msg.encode().decode(), v.get("encoding", wire.canonical(v.get("message", {})).decode()))
    expect("digest", msg.digest().hex(), v["digest"])
    if "private_key" in v:
        sk = bytes.fromhex(v["private_key"])
        expect("signer", getattr(msg, msg.SIGNER).hex(), keys.signing_public_key(sk).hex())
        again = msg.signed(sk, bytes.fromhex(v["sign_random"]))
        expect("sig", again.sig.hex(), msg.sig.hex())
    if "lock_id" in v:
        expect("lock_id", msg.lock_id.hex(), v["lock_id"])


def check_chain(v):
    """Replay an issuer chain: the ownership state, or the first update that breaks a rule."""
    state = TokenState(bytes.fromhex(v["issuer"]))
    for body in v["updates"]:
        u = Update.from_body(body)
        if not u.signature_ok():
            raise Mismatch(f"update {u.height}: signature does not verify")
        try:
            state = state.apply(u)
        except RuleError as e:
            expect("error", {"height": u.height, "code": e.code}, v.get("error"))
            return
    if "error" in v:
        raise Mismatch(f"error: the chain replayed, want {v['error']!r}")
    tokens = {t.id: {"owner": t.owner.hex(), "lock": t.lock.hex() if t.lock else None}
              for t in state.tokens.values()}
    expect("tokens", tokens, v["tokens"])
    expect("locks", {k.hex(): lock.state for k, lock in state.locks.items()}, v["locks"])


def check_discredit(v):
    """A discredit proof under a policy (trusted replicator keys and quorum): the fault it proves, or why not."""
    proof = wire.decode_as({Discredit.TYPE: Discredit}, _data(v))
    policy = Policy(frozenset(bytes.fromhex(k) for k in v["replicators"]), v["quorum"])
    try:
        verify(proof, policy)
    except ProofError as e:
        expect("error", e.code, v.get("error"))
        return
    if "error" in v:
        raise Mismatch(f"error: the proof verified, want {v['error']!r}")
    expect("fault", proof.fault, v["fault"])


def check_auction(v):
    r = auction(v["bids"], v["slots"], v["reserve"], v.get("bytes_received"))
    expect("winners", list(r.winners), v["winners"])
    expect("price", r.price, v["price"])


def check_auto_bid(v):
    expect("bid", auto_bid(v["balance"], v["remaining_bytes"], v.get("spend_rate", 1.0)), v["bid"])


def bid_rounds(seller: str, terms: dict, start: float, steps) -> list:
    """What a seller's auction (bids.py) makes of ``steps`` in order: a bid (its encoding: ``ok`` or the refusal's
    reason) or a round's end (``close`` time, ``carried`` {lease: bytes}, ``accounts`` {bidder: ok|unpaid|
    no_channel}: the ended round's ``bills`` and the next round's winners, price, optimistic slot, ineligible)."""
    house = Rounds(bytes.fromhex(seller), AuctionTerms.check(terms), start)
    results = []
    for step in steps:
        if "bid" in step:
            try:
                house.receive(step["bid"].encode())
                results.append("ok")
            except wire.WireError as e:
                results.append(e.code)
        else:
            r = house.close(step["close"], step["carried"], step["accounts"])
            results.append({"bills": house.rounds[-2].bills, "round": r.number, "winners": r.winners,
                            "price": r.price, "optimistic": r.optimistic, "optimistic_price": r.optimistic_price,
                            "ineligible": r.ineligible})
    return results


def check_bid_rounds(v):
    expect("results", bid_rounds(v["seller"], v["terms"], v["start"], v["steps"]), v["results"])


def check_channel(v):
    """A payee fed ``payments`` in order, sending one unit before each: what it accepts and what it is owed."""
    payee = PayeeChannel(ChannelOpen.from_body(v["open"]))
    results = []
    for data in v["payments"]:
        if payee.may_send():
            payee.sent()
        before = dict(payee.rejected)
        ok = payee.receive(data.encode())
        results.append("ok" if ok else next(k for k in payee.rejected if payee.rejected[k] != before.get(k, 0)))
    expect("results", results, v["results"])
    expect("paid", payee.paid, v["paid"])


def check_hub_channel(v):
    """The receiving end of an HTLC channel fed ``steps`` in order: a state (``state``, at ``height``), or its own
    fulfill (``fulfill``: a preimage) or fail (``fail``: a hash); per step ``ok`` or the rejection reason; then
    ``paid``, the pending hashes and the split (to receiver, to sender) of a close at ``close_height``."""
    end = HtlcReceiver(HubOpen.from_body(v["open"]), bytes.fromhex(v["private_key"]))
    results = []
    for step in v["steps"]:
        if "state" in step:
            before = Counter(end.rejected)
            end.receive(step["state"].encode(), step["height"])
            new = end.rejected - before
            results.append(next(iter(new)) if new else "ok")
        elif "fulfill" in step:
            end.fulfill(bytes.fromhex(step["fulfill"]), step["height"])
            results.append("ok")
        else:
            end.fail(bytes.fromhex(step["fail"]), step["reason"])
            results.append("ok")
    expect("results", results, v["results"])
    expect("paid", end.paid, v["paid"])
    expect("pending", sorted(h.hex() for h in end.htlcs), v["pending"])
    expect("close", list(end.close(v["close_height"])), v["close"])


def check_hub_close(v):
    """The unsigned close transaction of a hub channel's state (hub_chain.py): its bytes and txid, and the outputs
    (value, script) in order: paid to the receiver, one swap HTLC per pending HTLC, the rest to the sender."""
    terms = HubTerms(HubOpen.from_body(v["open"]), bytes.fromhex(v["sender_pk"]), bytes.fromhex(v["receiver_pk"]),
                     v["fee"])
    tx = close_tx(terms, HubState.decode(v["state"].encode()))
    expect("outputs", [[o.value, o.script_pubkey.hex()] for o in tx.outputs], v["outputs"])
    expect("close_tx", tx.raw.hex(), v["close_tx"])
    expect("txid", tx.txid_hex, v["txid"])


def check_swap_timeouts(v):
    p = SwapParams(**v["params"])
    htlc = p.htlc_refund(v["height"])
    expect("htlc_refund", htlc, v["htlc_refund"])
    expect("lock_timeout", p.lock_timeout(htlc), v["lock_timeout"])


CHECKS = {
    "market.message": check_message,
    "market.chain": check_chain,
    "market.discredit": check_discredit,
    "market.auction": check_auction,
    "market.auto_bid": check_auto_bid,
    "market.bid_rounds": check_bid_rounds,
    "market.channel": check_channel,
    "market.swap_timeouts": check_swap_timeouts,
    "market.hub_channel": check_hub_channel,
    "market.hub_close": check_hub_close,
}
