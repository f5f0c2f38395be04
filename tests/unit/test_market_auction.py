"""BitTorrent Token mode (node/market/auction.py): BTT-T04 re-bid limits, T05 auto-bid, T08 auction, T10 optimistic
slot."""
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from node.market.auction import OptimisticSlot, RebidLimiter, auction, auto_bid

bids_st = st.dictionaries(st.sampled_from("abcdefghij"), st.integers(0, 1000), max_size=10)


def test_each_winner_pays_the_clearing_price():
    r = auction({"a": 50, "b": 40, "c": 30, "d": 10}, slots=2, reserve=20)
    assert r.winners == ("a", "b") and r.losers == ("c",) and r.ineligible == ("d",)
    assert r.price == 30                            # the highest losing bid


def test_reserve_sets_the_price_when_the_losers_bid_less():
    assert auction({"a": 50, "b": 40, "c": 5}, slots=2, reserve=20).price == 20


def test_a_lone_bidder_pays_the_reserve():
    r = auction({"a": 900}, slots=4, reserve=7)
    assert r.winners == ("a",) and r.price == 7


def test_ties_break_on_bytes_received_then_peer():
    r = auction({"a": 10, "b": 10, "c": 10}, slots=2, reserve=0, bytes_received={"c": 500, "b": 100})
    assert r.winners == ("c", "b") and r.price == 10


def test_nobody_eligible():
    r = auction({"a": 1, "b": 2}, slots=2, reserve=3)
    assert r.winners == () and r.ineligible == ("a", "b")


@pytest.mark.parametrize("bad", [{"a": -1}, {"a": 1.5}, {"a": True}])
def test_bad_bids_are_errors(bad):
    with pytest.raises(ValueError, match="bid of 'a'"):
        auction(bad, 1, 0)


@settings(max_examples=200)
@given(bids_st, st.integers(0, 5), st.integers(0, 500), st.dictionaries(st.sampled_from("abcdefghij"),
                                                                       st.integers(0, 10 ** 6)))
def test_auction_rules(bids, slots, reserve, received):
    r = auction(bids, slots, reserve, received)
    eligible = {p for p, b in bids.items() if b >= reserve}
    assert set(r.winners) | set(r.losers) == eligible and not set(r.winners) & set(r.losers)
    assert len(r.winners) == min(slots, len(eligible))
    for w in r.winners:                              # T08 check: every winner's price is <= its bid, and uniform
        assert reserve <= r.price <= bids[w]
        for loser in r.losers:
            assert (bids[w], received.get(w, 0)) >= (bids[loser], received.get(loser, 0))
    assert r.price == max([bids[p] for p in r.losers] + [reserve])


@settings(max_examples=200)
@given(st.integers(0, 10 ** 12), st.integers(1, 10 ** 12), st.floats(0, 10, allow_nan=False))
def test_auto_bid_formula(balance, remaining, rate):
    bid = auto_bid(balance, remaining, rate)
    exact = Fraction(rate) * balance / (Fraction(remaining) / 1024)
    assert bid == math.floor(exact) and 0 <= exact - bid < 1          # BTT-T05: within rounding


def test_auto_bid_example_and_errors():
    assert auto_bid(1000, 1024 * 100) == 10
    assert auto_bid(1000, 1024 * 100, spend_rate=0.5) == 5
    for args in [(-1, 10), (10, 0), (10, 10, -0.1), (10, 10, math.inf), (1.5, 10)]:
        with pytest.raises(ValueError):
            auto_bid(*args)


def test_rebid_limits():
    lim = RebidLimiter(time_scale=0.5)              # 30 s
    assert lim.may_bid("p", 100, now=0, budget=1000)
    assert not lim.may_bid("p", 200, now=29.9, budget=1000)        # too soon, however large the change
    assert not lim.may_bid("p", 110, now=31, budget=1000)          # exactly 10 %: not more than 10 %
    assert lim.may_bid("p", 111, now=31, budget=1000)
    assert lim.may_bid("p", 111, now=31.5, budget=2000)            # a budget change bids at once
    assert not lim.may_bid("q", 100, now=0, budget=1000, has_needed_pieces=False)
    assert lim.may_bid("q", 100, now=0, budget=1000)               # other peers are independent


@settings(max_examples=100)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 300), st.booleans()), max_size=40))
def test_at_most_one_bid_per_peer_per_interval_unless_the_budget_changes(steps):
    lim = RebidLimiter()
    now, budget, sent = 0.0, 1000, []
    for dt, bid, budget_change in steps:
        now += dt * 10
        budget += 1 if budget_change else 0
        if lim.may_bid("p", bid, now, budget):
            sent.append((now, bid, budget))
    for (t0, b0, g0), (t1, b1, g1) in zip(sent, sent[1:]):
        assert g1 != g0 or (t1 - t0 >= 60 and abs(b1 - b0) > b0 / 10)


def test_optimistic_slot_goes_to_a_non_bidder_eventually():
    """A non-bidder waiting while new bidders keep arriving still gets the slot (BTT-T10)."""
    slot = OptimisticSlot(free_every=3)
    peers, bids = ["newbie"], {}
    picked = []
    for round_ in range(6):
        bidder = f"bidder{round_}"
        peers.append(bidder)
        bids[bidder] = 10 + round_
        pick, price = slot.choose(peers, bids, reserve=5)
        picked.append(pick)
        if pick == "newbie":
            assert price == 0
            break
    assert "newbie" in picked and len(picked) <= 3


def test_optimistic_slot_is_auctioned_among_never_unchoked_bidders():
    slot = OptimisticSlot(free_every=100)
    slot.note_unchoked(["rich"])                    # already had a regular slot
    pick, price = slot.choose(["rich", "a", "b", "c"], {"rich": 999, "a": 30, "b": 20, "c": 1}, reserve=5)
    assert (pick, price) == ("a", 20)               # a lone-slot auction: the second bid sets the price
    assert slot.choose(["rich", "a", "b"], {"rich": 999, "a": 30, "b": 20}, reserve=5) == ("b", 5)
    assert slot.choose(["rich", "a", "b"], {}, reserve=5) is None


@settings(max_examples=100)
@given(st.integers(1, 5), st.lists(st.integers(0, 3), min_size=1, max_size=30))
def test_every_non_bidder_gets_the_slot_within_bound(free_every, arrivals):
    slot = OptimisticSlot(free_every=free_every)
    peers, bids, waiting_since, n = ["quiet"], {}, 0, 0
    for round_, k in enumerate(arrivals):
        for _ in range(k):
            n += 1
            peers.append(f"b{n}")
            bids[f"b{n}"] = n
        got = slot.choose(peers, bids, reserve=0)
        if got and got[0] == "quiet":
            assert round_ - waiting_since < free_every
            return
    assert len(arrivals) < free_every               # it only may not have had its turn yet
