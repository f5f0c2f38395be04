"""Writes tests/vectors/market.json: pktlab's own vectors for the market formats (README, Protocol: the market).

Deterministic (fixed keys, signature nonces derived from the vector names), so running it again gives the same
file: ``PYTHONPATH=. python tests/vectors/make_market.py [OUT]``. The checks live in node/market/vectors.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

from node.market.bids import AuctionTerms, make_bid
from node.market.channel import ChannelPay, Commitment, open_channel
from node.market.evidence import Attestation, Reveal
from node.market.faults import Discredit
from node.chain.keys import Key
from node.market.hub import HtlcFail, HtlcFulfill, Htlc, HubOpen, HubState
from node.market.hub_chain import HubTerms, close_tx
from node.market.swap import SwapAccept, SwapCancel, SwapFunded, SwapParams, SwapPropose
from node.market.vectors import bid_rounds
from node.market.token_chain import IssueLease, IssueRouter, Lock, LockRequest, Transfer, Unlock, Update
from node.cjdns import keys

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("market.json")


def sk(name: str) -> bytes:
    return hashlib.sha256(b"pktlab market vector key " + name.encode()).digest()


ISSUER, BUYER, RESELLER = sk("issuer"), sk("buyer"), sk("reseller")
REPLICATORS = [sk(f"replicator{i}") for i in range(3)]
I, B, R = (keys.signing_public_key(k) for k in (ISSUER, BUYER, RESELLER))
RK = [keys.signing_public_key(k).hex() for k in REPLICATORS]
X1, X2 = b"\x11" * 32, b"\x22" * 32
H1, H2 = hashlib.sha256(X1).digest(), hashlib.sha256(X2).digest()
vectors: list = []


def nonce(name: str) -> bytes:
    return hashlib.sha256(b"pktlab market vector nonce " + name.encode()).digest()


def sign(msg, key: bytes, name: str):
    return msg.signed(key, nonce(name))


def block(h: int) -> bytes:
    return hashlib.sha256(f"pkt block {h}".encode()).digest()


def update(height: int, prev, pkt: int, ops, name: str) -> Update:
    return sign(Update(bytes(32), height, prev.digest() if prev else bytes(32), pkt, block(pkt), tuple(ops)),
                ISSUER, name)


def message(vid: str, msg, key: bytes | None = None, about: str = "", signed_as: str | None = None,
            **extra) -> None:
    """A valid message; ``signed_as``: the name its signature nonce came from (default: the vector id)."""
    v = {"id": vid, "kind": "market.message", "about": about, "encoding": msg.encode().decode(),
         "digest": msg.digest().hex()}
    if key is not None:
        v.update(private_key=key.hex(), sign_random=nonce(signed_as or vid).hex())
    v.update(extra)
    vectors.append(v)


def bad(vid: str, encoding: str, error: str, about: str) -> None:
    vectors.append({"id": vid, "kind": "market.message", "about": about, "encoding": encoding, "error": error})


# -- an issuer chain ------------------------------------------------------------------------------------------

lease = IssueLease("lease-eth1-1", "L1", "eth1", 2000, 1_700_000_000, 1_700_086_400, 5_000_000)
router = IssueRouter("router-vrA", "vrA", 1_700_000_000, 1_700_086_400, 1_000_000)
req1 = sign(LockRequest(I, "lease-eth1-1", b"", B, H1, 110, b"\x01" * 16), ISSUER, "update1.request")
req2 = sign(LockRequest(I, "lease-eth1-1", b"", R, H2, 120, b"\x02" * 16), BUYER, "update3.request")
u0 = update(0, None, 100, [lease, router], "update0")
u1 = update(1, u0, 101, [Lock(req1)], "update1")
u2 = update(2, u1, 102, [Transfer(req1.lock_id, X1, B)], "update2")
u3 = update(3, u2, 103, [Lock(req2)], "update3")
u4 = update(4, u3, 120, [Unlock(req2.lock_id)], "update4")
chain = [u0, u1, u2, u3, u4]

message("lock_request", req1, ISSUER, "the owner (here the issuer) asks to lock its token to the buyer",
        signed_as="update1.request", lock_id=req1.lock_id.hex())
for n, (u, what) in enumerate(zip(chain, ["issue_lease and issue_router", "lock", "transfer", "lock by the new owner",
                                          "unlock after the timeout"])):
    message(f"update{n}", u, ISSUER, f"issuer update {n}: {what}")

vectors.append({"id": "chain_replay", "kind": "market.chain", "about": "issue, lock, transfer, lock, unlock",
                "issuer": I.hex(), "updates": [u.body() for u in chain],
                "tokens": {"lease-eth1-1": {"owner": B.hex(), "lock": None},
                           "router-vrA": {"owner": I.hex(), "lock": None}},
                "locks": {req1.lock_id.hex(): "transferred", req2.lock_id.hex(): "unlocked"}})
bad_transfer = update(2, u1, 102, [Transfer(req1.lock_id, X2, B)], "bad_transfer")
vectors.append({"id": "chain_bad_transfer", "kind": "market.chain", "about": "a transfer with the wrong preimage",
                "issuer": I.hex(), "updates": [u.body() for u in (u0, u1, bad_transfer)],
                "error": {"height": 2, "code": "bad_transfer"}})

# -- reveals, attestations ------------------------------------------------------------------------------------

reveal = sign(Reveal(I, req1.lock_id, X1), BUYER, "reveal")
message("reveal", reveal, BUYER, "the buyer publishes the preimage of lock 1 (and asks for the transfer)")
att = sign(Attestation(b"", I, reveal.digest(), 105, 105, 2, u1.digest()), REPLICATORS[0], "attestation")
message("attestation", att, REPLICATORS[0], "replicator 0 saw the reveal at PKT height 105, holding 2 updates")

# -- swap messages --------------------------------------------------------------------------------------------

swap_id = b"\x5a" * 16
message("swap_propose", sign(SwapPropose(swap_id, I, "lease-eth1-1", 5_000_000, b"", b"\xb0" * 20), BUYER,
                             "swap_propose"), BUYER)
message("swap_accept", sign(SwapAccept(swap_id, b"", H1, req1.lock_id, 120, 115, b"\x5e" * 20), ISSUER,
                            "swap_accept"), ISSUER)
message("swap_funded", sign(SwapFunded(swap_id, b"", "ab" * 32 + ":0"), BUYER, "swap_funded"), BUYER)
message("swap_cancel", sign(SwapCancel(swap_id, b"", "too_late"), BUYER, "swap_cancel"), BUYER)
vectors.append({"id": "swap_timeouts", "kind": "market.swap_timeouts",
                "about": "T_htlc = h + fund_within + confirmations + claim_within; T_lock = T_htlc + reveal_margin",
                "params": {"confirmations": 2, "fund_within": 4, "claim_within": 4, "reveal_margin": 5},
                "height": 100, "htlc_refund": 110, "lock_timeout": 115})
assert SwapParams().lock_timeout(SwapParams().htlc_refund(100)) == 115

# -- channels -------------------------------------------------------------------------------------------------

terms = dataclasses.replace(open_channel(BUYER, b"\xc0" * 16, I, 100, 10, 16384, 500, "cd" * 32 + ":1"),
                            sig=b"").signed(BUYER, nonce("channel_open"))
message("channel_open", terms, BUYER)


def pay(seq: int, paid: int, increment: int) -> ChannelPay:
    c = sign(Commitment(terms.channel, b"", seq, paid), BUYER, f"commitment{seq}")
    return ChannelPay(terms.channel, seq, increment, c.sig)


message("commitment", sign(Commitment(terms.channel, b"", 1, 10), BUYER, "commitment1"), BUYER,
        signed_as="commitment1")
message("channel_pay", pay(1, 10, 10), about="unit 1: the increment and the signature of commitment (1, 10)")
vectors.append({"id": "channel_sequence", "kind": "market.channel", "open": terms.body(),
                "about": "one unit is sent before each payment",
                "payments": [pay(1, 10, 10).encode().decode(), pay(1, 10, 10).encode().decode(),
                             pay(3, 20, 10).encode().decode(), pay(2, 20, 10).encode().decode(),
                             pay(3, 40, 20).encode().decode()],
                "results": ["ok", "replayed", "out_of_order", "ok", "pays_undelivered"], "paid": 20})

# -- HTLC channels through a hub (the payer -> hub hop: the buyer pays the reseller, which routes to the issuer) --

hub_open = sign(HubOpen(b"\xc1" * 16, b"", R, 1000, 200, "cd" * 32 + ":2"), BUYER, "hub_open")
message("hub_open", hub_open, BUYER)


def hub_state(seq: int, paid: int, htlcs, name: str, key: bytes = BUYER) -> HubState:
    return sign(HubState(hub_open.channel, b"", seq, paid, tuple(htlcs)), key, name)


HX1, HX2 = Htlc(H1, 100, 40, I), Htlc(H2, 50, 40, I)
message("hub_state", hub_state(1, 0, [HX1], "hub_state1"), BUYER, signed_as="hub_state1",
        about="an HTLC of 100 to the issuer, hash H1, expiry 40")
message("htlc_fulfill", sign(HtlcFulfill(hub_open.channel, b"", H1, X1), RESELLER, "htlc_fulfill"), RESELLER)
message("htlc_fail", sign(HtlcFail(hub_open.channel, b"", H2, "no_route"), RESELLER, "htlc_fail"), RESELLER)
steps = [
    {"height": 10, "state": hub_state(1, 0, [HX1], "hub_state1").encode().decode()},               # add H1
    {"height": 10, "state": hub_state(2, 100, [], "hub_settle_early").encode().decode()},          # no fulfill yet
    {"height": 10, "fulfill": X1.hex()},
    {"height": 10, "state": hub_state(2, 100, [], "hub_settle").encode().decode()},                # settled
    {"height": 10, "state": hub_state(2, 100, [], "hub_settle").encode().decode()},                # replayed
    {"height": 10, "state": hub_state(3, 100, [Htlc(H2, 901, 40, I)], "hub_over").encode().decode()},
    {"height": 36, "state": hub_state(3, 100, [HX2], "hub_late").encode().decode()},               # < h + 6
    {"height": 10, "state": hub_state(3, 100, [HX2], "hub_add2").encode().decode()},               # add H2
    {"height": 10, "state": hub_state(4, 100, [], "hub_cancel_early").encode().decode()},          # not expired
    {"height": 40, "state": hub_state(4, 100, [], "hub_cancel_early").encode().decode()},          # at its expiry
    {"height": 40, "state": hub_state(5, 100, [HX1], "hub_reuse").encode().decode()},              # H1 again
]
vectors.append({"id": "hub_channel_sequence", "kind": "market.hub_channel", "open": hub_open.body(),
                "private_key": RESELLER.hex(), "steps": steps,
                "about": "add, settle only after the fulfill, replay, over capacity, too close to expiry, cancel "
                         "only from the expiry, a hash used twice",
                "results": ["ok", "bad_transition", "ok", "ok", "replayed", "over_capacity", "expired", "ok",
                            "bad_transition", "ok", "duplicate_hash"],
                "paid": 100, "pending": [], "close_height": 40, "close": [100, 900]})

# the close of a state with paid 100 and two pending HTLCs, on the chain (hub_chain.py)
SENDER_PK, RECEIVER_PK = Key.from_seed("vector hub sender").pubkey, Key.from_seed("vector hub receiver").pubkey
close_terms = HubTerms(hub_open, SENDER_PK, RECEIVER_PK, 10)
close_state = hub_state(4, 100, [HX1, HX2], "hub_close_state")
close = close_tx(close_terms, close_state)
vectors.append({"id": "hub_close", "kind": "market.hub_close", "open": hub_open.body(), "sender_pk": SENDER_PK.hex(),
                "receiver_pk": RECEIVER_PK.hex(), "fee": 10, "state": close_state.encode().decode(),
                "about": "outputs: paid to the receiver's P2PKH, each pending HTLC to the swap's chain HTLC "
                         "(receiver with the preimage, sender from the expiry), the rest to the sender's P2PKH",
                "outputs": [[o.value, o.script_pubkey.hex()] for o in close.outputs], "close_tx": close.raw.hex(),
                "txid": close.txid_hex})

# -- invalid messages -----------------------------------------------------------------------------------------

text = reveal.encode().decode()
bad("reveal_bad_signature", text.replace(X1.hex(), X2.hex()), "bad_signature", "the preimage changed after signing")
bad("reveal_duplicate_key", text[:-1] + ',"lock":"' + "00" * 16 + '"}', "malformed", "a key twice")
bad("reveal_float", text.replace('"v":1', '"v":1.0'), "malformed", "no floats anywhere")
bad("reveal_extra_field", text[:-1] + ',"note":"x"}', "malformed", "exactly the type's fields")
bad("reveal_upper_hex", text.replace(B.hex(), B.hex().upper()), "malformed", "lowercase hex only")
bad("unknown_type", '{"v":1,"type":"mint"}', "malformed", "no such message")
bad("update_wrong_version", u0.encode().decode().replace('"v":1', '"v":2'), "malformed", "version 1 only")

# -- discredit proofs -----------------------------------------------------------------------------------------


def discredit(vid: str, proof: Discredit, about: str, error: str | None = None, quorum: int = 2) -> None:
    v = {"id": vid, "kind": "market.discredit", "about": about, "message": proof.body(), "replicators": RK,
         "quorum": quorum}
    v.update({"error": error} if error else {"fault": proof.fault})
    vectors.append(v)


u1b = update(1, u0, 101, [Lock(sign(LockRequest(I, "router-vrA", b"", B, H1, 110, b"\x03" * 16), ISSUER,
                                    "u1b.request"))], "update1b")
p1 = Discredit(I, "double_update", (u1, u1b))
message("discredit", p1, about="a discredit proof (unsigned: it proves itself)")
discredit("fault1_double_update", p1, "two updates at height 1")
stolen = sign(LockRequest(I, "lease-eth1-1", b"", B, H1, 110, b"\x04" * 16), BUYER, "stolen")
discredit("fault2_lock_without_owner_signature",
          Discredit(I, "lock_without_owner_signature", (u0, update(1, u0, 101, [Lock(stolen)], "fault2"))),
          "a lock signed by someone who does not own the token")
discredit("fault3_bad_transfer", Discredit(I, "bad_transfer", (u0, u1, bad_transfer)), "the wrong preimage")
discredit("fault3_wrong_recipient",
          Discredit(I, "bad_transfer", (u0, u1, update(2, u1, 102, [Transfer(req1.lock_id, X1, R)], "fault3b"))),
          "the right preimage, the wrong recipient")
discredit("invalid_update_unlock_early",
          Discredit(I, "invalid_update", (u0, u1, update(2, u1, 105, [Unlock(req1.lock_id)], "early"))),
          "an unlock before the lock's timeout")
unlock = update(2, u1, 110, [Unlock(req1.lock_id)], "unlock_after_reveal")
witnesses = tuple(sign(Attestation(b"", I, reveal.digest(), 105 + i, 105 + i, 2, u1.digest()), REPLICATORS[i],
                       f"witness{i}") for i in range(2))
p4 = Discredit(I, "unlock_after_reveal", (u0, u1, unlock), reveal, witnesses)
discredit("fault4_unlock_after_reveal", p4, "two trusted replicators saw the reveal before the timeout 110")
discredit("fault4_one_witness", dataclasses.replace(p4, attestations=witnesses[:1]),
          "one witness is not a quorum of 2", error="no_quorum")
discredit("fault4_quorum_one", dataclasses.replace(p4, attestations=witnesses[:1]),
          "the same proof for a verifier that trusts one witness", quorum=1)
late = tuple(sign(Attestation(b"", I, reveal.digest(), 110, 110, 2, u1.digest()), REPLICATORS[i], f"late{i}")
             for i in range(2))
discredit("fault4_late_witnesses", dataclasses.replace(p4, attestations=late),
          "seen only at the timeout: no fault", error="no_quorum")
req5 = sign(LockRequest(I, "lease-eth1-1", b"", B, H1, 130, b"\x05" * 16), ISSUER, "refused.request")
refusals = tuple(sign(Attestation(b"", I, req5.digest(), 101, 104, 1, u0.digest()), REPLICATORS[i],
                      f"refusal{i}") for i in range(2))
p5 = Discredit(I, "refused_request", (u0,), req5, refusals)
discredit("fault5_refused_lock", p5, "a valid lock request not locked within 3 blocks (seen 101, still not at 104)")
early = tuple(dataclasses.replace(a, at_height=103).signed(REPLICATORS[i], nonce(f"early{i}"))
              for i, a in enumerate(refusals))
discredit("fault5_too_early", dataclasses.replace(p5, attestations=early), "only 2 blocks passed",
          error="no_quorum")
locked = update(1, u0, 102, [Lock(req5)], "locked")
discredit("fault5_but_it_locked", dataclasses.replace(p5, updates=(u0, locked)),
          "the chain holds the lock: the issuer acted", error="not_a_fault")
discredit("tampered_update", Discredit(I, "double_update", (u1, dataclasses.replace(u1b, pkt_height=102))),
          "an update changed after the issuer signed it", error="bad_update_signature")
discredit("wrong_fault_named", Discredit(I, "bad_transfer", (u0, update(1, u0, 101, [Lock(stolen)], "fault2"))),
          "the proof names another fault than the update breaks", error="wrong_fault")

# -- BitTorrent Token mode ------------------------------------------------------------------------------------

for vid, bids, slots, reserve, received, winners, price in [
    ("auction_uniform_price", {"a": 50, "b": 40, "c": 30, "d": 10}, 2, 20, {}, ["a", "b"], 30),
    ("auction_reserve_price", {"a": 50, "b": 40, "c": 5}, 2, 20, {}, ["a", "b"], 20),
    ("auction_lone_bidder", {"a": 900}, 4, 7, {}, ["a"], 7),
    ("auction_ties_by_bytes", {"a": 10, "b": 10, "c": 10}, 2, 0, {"c": 500, "b": 100}, ["c", "b"], 10),
]:
    vectors.append({"id": vid, "kind": "market.auction", "bids": bids, "slots": slots, "reserve": reserve,
                    "bytes_received": received, "winners": winners, "price": price})
vectors.append({"id": "auto_bid", "kind": "market.auto_bid", "balance": 1000, "remaining_bytes": 102400, "bid": 10})
vectors.append({"id": "auto_bid_half", "kind": "market.auto_bid", "balance": 999, "remaining_bytes": 3000,
                "spend_rate": 0.5, "bid": 170})

# bids on a seller's link (bids.py): the bid message, and a seller's rounds fed bids and round ends
bid_b = make_bid(BUYER, I, "prio", 2, 30, nonce("bid"))
message("bid", bid_b, BUYER, "the buyer bids 30 atomic units per KiB for round 2 of the issuer's auction prio")
bad("bid_forged", bid_b.encode().decode().replace('"price":30', '"price":3000'), "bad_signature",
    "the price changed after the bidder signed")
bad("bid_negative_price", bid_b.encode().decode().replace('"price":30', '"price":-30'), "malformed",
    "prices are integers >= 0")


def bid_text(key: bytes, round_: int, price: int, name: str, auction: str = "prio", seller: bytes = I) -> str:
    return make_bid(key, seller, auction, round_, price, nonce(name)).encode().decode()


terms = AuctionTerms("prio", ("up", "opt"), 1, 5, 10.0, 2)
Bk, Rk = B.hex(), R.hex()
C_SK = sk("third")
Ck = keys.signing_public_key(C_SK).hex()
steps = [
    {"bid": bid_text(BUYER, 2, 30, "r1")},
    {"bid": bid_text(RESELLER, 2, 20, "r2")},
    {"bid": bid_text(C_SK, 2, 0, "r3")},
    {"bid": bid_text(BUYER, 2, 40, "r4")},
    {"bid": bid_text(BUYER, 1, 40, "r5")},
    {"bid": bid_text(BUYER, 3, 40, "r6")},
    {"bid": bid_text(BUYER, 2, 40, "r7", seller=R)},
    {"bid": bid_text(BUYER, 2, 40, "r8", auction="other")},
    {"close": 1010.0, "carried": {}, "accounts": {Bk: "ok", Rk: "ok"}},
    {"close": 1020.0, "carried": {"up": 100 * 1024 + 1000, "opt": 3 * 1024}, "accounts": {Bk: "ok", Rk: "ok"}},
    {"close": 1030.0, "carried": {"up": 7 * 1024, "opt": 50 * 1024}, "accounts": {Bk: "ok", Rk: "ok"}},
    {"close": 1040.0, "carried": {"up": 1024}, "accounts": {Bk: "unpaid", Rk: "ok"}},
]
results = bid_rounds(I.hex(), terms.view(), 1000.0, steps)
vectors.append({"id": "bid_rounds", "kind": "market.bid_rounds", "seller": I.hex(), "terms": terms.view(),
                "start": 1000.0, "about": "two bidders (30, 20) and one that only wants the link (0); bad bids; "
                "rounds: the higher bid wins at the losing bid, bills per complete KiB, the optimistic slot "
                "auctioned to the fresh bidder then free to the non-bidder, an unpaid winner left out",
                "steps": steps, "results": results})

doc = {"about": "pktlab's own vectors for the bandwidth market formats (README, Protocol): wire encodings "
                "with signatures reproducible from the key and sign_random (keys.sign), issuer chain replay, the "
                "five fault proofs, swap timeouts, channel payments, HTLC channels through a hub, the BitTorrent Token auction and bids. Generated by "
                "tests/vectors/make_market.py.",
       "vectors": vectors}
OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
print(f"wrote {len(vectors)} vectors to {OUT}")
