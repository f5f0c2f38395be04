"""BitTorrent Token mode on a seller's link, pure part (node/market/bids.py): the signed bid and its counted
rejects, the seller's rounds (uniform price, bills per KiB carried, the optimistic slot, unpaid bidders left out),
the bidder's plan under the re-bid limits."""
import dataclasses

import pytest

from node.cjdns import keys
from node.market.bids import (
    KIB,
    AuctionTerms,
    Bid,
    Bidder,
    BidPlan,
    Rounds,
    make_bid,
)
from node.market.errors import MarketError
from node.market.wire import WireError

SELLER_SK, A_SK, B_SK, C_SK = (bytes([i]) * 32 for i in (1, 2, 3, 4))
SELLER, A, B, C = (keys.signing_public_key(k) for k in (SELLER_SK, A_SK, B_SK, C_SK))
TERMS = AuctionTerms("prio", ("up", "opt"), slots=1, reserve=5, round_s=10.0, free_every=2)


def house(now=0.0, terms=TERMS):
    return Rounds(SELLER, terms, now)


def bid(sk, round_, price, name="prio", seller=SELLER):
    return make_bid(sk, seller, name, round_, price).encode()


def reject(h, data) -> str:
    with pytest.raises(WireError) as e:
        h.receive(data)
    return e.value.code


def test_a_bid_round_trips_and_is_signed_by_its_bidder():
    b = make_bid(A_SK, SELLER, "prio", 2, 30)
    again = Bid.decode(b.encode())
    assert again == b and again.bidder == A and again.signature_ok()
    assert b.body()["type"] == "bid" and set(b.body()) == {"v", "type", "seller", "auction", "round", "price",
                                                          "bidder", "sig"}


def test_bad_bids_are_refused_with_a_counted_reason():
    h = house()
    good = make_bid(A_SK, SELLER, "prio", 2, 30)
    forged = dataclasses.replace(good, price=3000).encode()         # A's signature over another price
    assert reject(h, forged) == "bad_signature"
    assert reject(h, b'{"v":1,"type":"bid"}') == "malformed"
    assert reject(h, b"not json") == "malformed"
    assert reject(h, good.encode().replace(b'"price":30', b'"price":30.5')) == "malformed"
    assert reject(h, bid(A_SK, 2, 30, seller=B)) == "wrong_seller"
    assert reject(h, bid(A_SK, 2, 30, name="other")) == "unknown_auction"
    assert reject(h, bid(A_SK, 1, 30)) == "old_round"               # the running round is 1: bids are for 2
    assert reject(h, bid(A_SK, 3, 30)) == "future_round"
    h.receive(good.encode())
    assert reject(h, good.encode()) == "replayed"
    assert reject(h, bid(A_SK, 2, 40)) == "replayed"               # one bid per bidder per round
    assert h.rejected == {"bad_signature": 1, "malformed": 3, "wrong_seller": 1, "unknown_auction": 1,
                          "old_round": 1, "future_round": 1, "replayed": 2}
    assert h.bids[A.hex()].price == 30


def test_the_higher_bid_wins_pays_the_losing_bid_per_kib_and_a_non_bidder_gets_the_optimistic_slot():
    h = house()
    h.receive(bid(A_SK, 2, 30))
    h.receive(bid(B_SK, 2, 20))
    h.receive(bid(C_SK, 2, 0))                      # interest only: no bid
    ok = {A.hex(): "ok", B.hex(): "ok"}
    r2 = h.close(10.0, {}, ok)
    assert (r2.number, r2.start, r2.end) == (2, 10.0, 20.0)
    assert r2.winners == [A.hex()] and r2.price == 20                   # the losing bid
    # round 2 (not free): the optimistic slot is auctioned among the fresh bidders: B alone, at the reserve
    assert (r2.optimistic, r2.optimistic_price) == (B.hex(), 5)
    assert r2.holders == {"up": (A.hex(), 20), "opt": (B.hex(), 5)}
    r3 = h.close(20.0, {"up": 100 * KIB + 1000, "opt": 3 * KIB}, ok)
    assert h.rounds[1].bills == {A.hex(): 20 * 100, B.hex(): 5 * 3}     # complete KiB x the price won at
    assert r3.winners == [A.hex()] and r3.price == 20
    assert (r3.optimistic, r3.optimistic_price) == (C.hex(), 0)         # round 3 of free_every 2: the non-bidder
    r4 = h.close(30.0, {"up": 0, "opt": 50 * KIB}, ok)
    assert h.rounds[2].bills == {A.hex(): 0, C.hex(): 0}                # the free slot pays nothing
    assert r4.optimistic is None                                        # everybody was unchoked once


def test_a_lone_bidder_pays_the_reserve():
    h = house()
    h.receive(bid(A_SK, 2, 900))
    r = h.close(10.0, {}, {A.hex(): "ok"})
    assert r.winners == [A.hex()] and r.price == 5 and r.holders["up"] == (A.hex(), 5)


def test_a_bidder_that_has_not_paid_or_has_no_channel_is_left_out():
    h = house()
    h.receive(bid(A_SK, 2, 30))
    h.receive(bid(B_SK, 2, 20))
    r = h.close(10.0, {}, {A.hex(): "unpaid"})
    assert r.ineligible == {A.hex(): "unpaid", B.hex(): "no_channel"} and r.winners == [] and r.holders == {}
    assert h.rejected == {"ineligible_unpaid": 1, "ineligible_no_channel": 1}
    r = h.close(20.0, {}, {A.hex(): "unpaid", B.hex(): "ok"})
    assert r.winners == [B.hex()] and r.price == 5                      # B alone now: the reserve


def test_a_standing_bid_counts_in_every_round_until_a_later_one_replaces_it():
    h = house()
    h.receive(bid(A_SK, 2, 30))
    ok = {A.hex(): "ok", B.hex(): "ok"}
    h.close(10.0, {}, ok)
    h.receive(bid(B_SK, 3, 40))
    assert h.close(20.0, {}, ok).winners == [B.hex()]
    h.receive(bid(A_SK, 4, 50))
    r = h.close(30.0, {}, ok)
    assert r.winners == [A.hex()] and r.price == 40
    assert (h.close(40.4, {}, ok).start, h.current.end) == (40.0, 50.0)    # a tick late: on schedule
    late = h.close(95.0, {}, ok)                    # a stuck market: a whole round from now
    assert late.start == 95.0 and late.end == 105.0


@pytest.mark.parametrize("body, why", [
    ({"name": "p", "leases": ["up"], "slots": 1, "reserve": 5, "round_s": 10}, "slots + 1"),
    ({"name": "p", "leases": ["up", "up"], "slots": 1, "reserve": 5, "round_s": 10}, "slots + 1"),
    ({"name": "p", "leases": ["up", "o"], "slots": 0, "reserve": 5, "round_s": 10}, "slots"),
    ({"name": "p", "leases": ["up", "o"], "slots": 1, "reserve": -1, "round_s": 10}, "reserve"),
    ({"name": "p", "leases": ["up", "o"], "slots": 1, "reserve": 5, "round_s": 0.5}, "round_s"),
    ({"name": "p p", "leases": ["up", "o"], "slots": 1, "reserve": 5, "round_s": 10}, "name"),
    ({"name": "p", "leases": "up", "slots": 1, "reserve": 5, "round_s": 10}, "leases"),
    ({"name": "p", "leases": ["up", "o"], "slots": 1, "reserve": 5}, "fields"),
])
def test_bad_auction_terms_are_refused(body, why):
    with pytest.raises(MarketError) as e:
        AuctionTerms.check(body)
    assert e.value.code == "bad_field" and why in e.value.detail


def test_auction_terms_from_json():
    t = AuctionTerms.check({"name": "prio", "leases": ["up", "opt"], "slots": 1, "reserve": 5, "round_s": 10})
    assert t == dataclasses.replace(TERMS, free_every=3) and AuctionTerms.check(t.view()) == t


def test_an_explicit_bid_goes_once_and_stands():
    b = Bidder(BidPlan(price=30))
    first = b.next_bid(A_SK, SELLER, "prio", 1, 1000, 1000, now=0.0)
    assert (first.round, first.price, first.bidder) == (2, 30, A)
    b.sent(first, True)
    assert b.next_bid(A_SK, SELLER, "prio", 5, 900, 1000, now=500.0) is None


def test_a_bid_that_did_not_arrive_goes_again_for_the_round_then_open():
    b = Bidder(BidPlan(price=30))
    first = b.next_bid(A_SK, SELLER, "prio", 1, 1000, 1000, now=0.0)
    b.lost(first)
    again = b.next_bid(A_SK, SELLER, "prio", 2, 1000, 1000, now=0.1)      # within the re-bid interval
    assert (again.round, again.price) == (3, 30)


def test_a_new_price_waits_for_the_next_round_when_this_one_has_our_bid():
    b = Bidder(BidPlan(remaining_bytes=100 * KIB))
    first = b.next_bid(A_SK, SELLER, "prio", 1, 0, 0, now=0.0)         # no channel yet: 0, interest only
    assert first.price == 0
    b.sent(first, True)
    assert b.next_bid(A_SK, SELLER, "prio", 1, 1000, 5000, now=1.0) is None     # the channel opened: round 2 has one
    funded = b.next_bid(A_SK, SELLER, "prio", 2, 1000, 5000, now=1.5)           # a new budget: at once
    assert (funded.round, funded.price) == (3, 10)


def test_the_auto_bid_follows_the_balance_within_the_rebid_limits():
    b = Bidder(BidPlan(remaining_bytes=100 * KIB), time_scale=0.1)        # re-bid interval 6 s
    first = b.next_bid(A_SK, SELLER, "prio", 1, 1000, 5000, now=0.0)
    assert first.price == 10                                              # 1000 / 100 KiB
    b.sent(first, True)
    assert b.next_bid(A_SK, SELLER, "prio", 2, 500, 5000, now=1.0) is None    # too soon
    assert b.next_bid(A_SK, SELLER, "prio", 2, 950, 5000, now=7.0) is None    # 9: within 10 %
    later = b.next_bid(A_SK, SELLER, "prio", 2, 500, 5000, now=7.0)
    assert (later.round, later.price) == (3, 5)
    b.sent(later, True)
    now = b.next_bid(A_SK, SELLER, "prio", 3, 2000, 9000, now=7.5)        # a new budget: at once
    assert now.price == 20


def test_a_bid_plan_is_a_price_or_an_auto_bid():
    with pytest.raises(ValueError):
        BidPlan()
    with pytest.raises(ValueError):
        BidPlan(price=3, remaining_bytes=10)
