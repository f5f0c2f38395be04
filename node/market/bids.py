"""BitTorrent Token mode on a seller's link, the pure part: the signed bid, the seller's rounds and the bidder's
plan (auction.py's rules: uniform price, optimistic slot, auto-bid, re-bid limits). The I/O is auctions.py's.

PKT never published BTT's wire format, so pktlab defines it (README, Protocol: the market)::

    bid  {"v":1, "type":"bid", "seller": KEY, "auction": NAME, "round": N, "price": UNITS_PER_KIB,
          "bidder": KEY, "sig" by bidder}

A seller's *auction* sells priority on its link in rounds of ``round_s`` seconds: ``slots`` leases go to the
highest bidders, one more lease (the last of ``leases``) is the optimistic slot. Round 1 starts when the auction
is created, with no holders. Bids name the round they are for, the next one (the running round + 1); a bid
*stands* for that round and every later one until the bidder sends a bid for a later round. Price 0 says "I want
the link but do not bid": a candidate for the free optimistic slot only.

Rejected bids (``WireError``, counted by code): ``malformed``, ``bad_signature``, ``wrong_seller`` (the bid is for
another seller), ``unknown_auction``, ``old_round`` (for the running round or before: a replay of an old bid is
one), ``future_round`` (beyond the next round), ``replayed`` (a second bid of one bidder for one round, the same
or not: one bid per bidder per round, so a replayed earlier bid can never undo a later one).

At the end of round r (:meth:`Rounds.close`):

1. The bill of round r: each holder pays the price it won its lease at x the complete KiB (1024 bytes) that
   lease carried in round r (``metered``: both ends' counts of the lease, as channels.py meters). The free
   optimistic slot's price is 0, so it pays nothing.
2. Eligibility for round r + 1: a bid >= the reserve counts only if the bidder's account (its payment channel to
   the seller) is ``ok``: open, and every earlier bill paid (so the bill of round r - 1, made a whole round ago).
   Else the bidder is left out of the round, counted ``ineligible_unpaid`` or ``ineligible_no_channel``.
3. auction() among the eligible bids: the first ``slots`` win and pay ``max(highest losing bid, reserve)``.
   Then OptimisticSlot.choose among the other bidders that may take part (eligible ones and those below the
   reserve): the last lease, auctioned among never-unchoked bidders at the reserve or more, free to the
   longest-waiting non-bidder every ``free_every``-th round.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from .auction import OptimisticSlot, RebidLimiter, auction, auto_bid
from .errors import MarketError
from .wire import KEY, MAX_UINT, SIG, BAD_SIGNATURE, Message, Name, UInt, WireError, decode_as

KIB = 1024
WRONG_SELLER, UNKNOWN_AUCTION, OLD_ROUND, FUTURE_ROUND, REPLAYED = (
    "wrong_seller", "unknown_auction", "old_round", "future_round", "replayed")
OK, UNPAID, NO_CHANNEL = "ok", "unpaid", "no_channel"
AUCTION_KEYS = {"name", "leases", "slots", "reserve", "round_s", "free_every"}


@dataclass(frozen=True)
class Bid(Message):
    TYPE: ClassVar[str] = "bid"
    SIGNER: ClassVar[str] = "bidder"
    WIRE: ClassVar[dict] = {"seller": KEY, "auction": Name(), "round": UInt(), "price": UInt(), "bidder": KEY,
                            "sig": SIG}
    seller: bytes
    auction: str
    round: int
    price: int
    bidder: bytes = bytes(32)
    sig: bytes = b""


def make_bid(private_key: bytes, seller: bytes, name: str, round_: int, price: int,
             random32: bytes | None = None) -> Bid:
    return Bid(seller, name, round_, price).signed(private_key, random32)


@dataclass(frozen=True)
class AuctionTerms:
    name: str
    leases: tuple           # one lease per slot, then the optimistic slot's
    slots: int
    reserve: int
    round_s: float
    free_every: int = 3

    @classmethod
    def check(cls, o) -> "AuctionTerms":
        """From the JSON form {name, leases, slots, reserve, round_s, free_every}; MarketError bad_field."""
        if not isinstance(o, dict) or not AUCTION_KEYS - {"free_every"} <= set(o) <= AUCTION_KEYS:
            raise MarketError("bad_field", f"an auction has the fields {', '.join(sorted(AUCTION_KEYS))} "
                                           "(free_every optional)")
        try:
            Name().decode(o["name"], "name")
            if not isinstance(o["leases"], list):
                raise WireError("malformed", "leases must be a list of lease ids")
            for i, lease in enumerate(o["leases"]):
                Name().decode(lease, f"leases[{i}]")
        except WireError as e:
            raise MarketError("bad_field", e.detail) from None
        for k in ("slots", "reserve", "free_every"):
            v = o.get(k, 3)
            if isinstance(v, bool) or not isinstance(v, int) or not (0 if k == "reserve" else 1) <= v <= MAX_UINT:
                raise MarketError("bad_field", f"{k}: a whole number{' >= 1' if k != 'reserve' else ''}")
        if len(o["leases"]) != o["slots"] + 1 or len(set(o["leases"])) != len(o["leases"]):
            raise MarketError("bad_field", "leases: slots + 1 different leases (the last: the optimistic slot)")
        r = o["round_s"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1 <= r <= 86400:
            raise MarketError("bad_field", "round_s: seconds, 1..86400")
        return cls(o["name"], tuple(o["leases"]), o["slots"], o["reserve"], float(r), o.get("free_every", 3))

    def view(self) -> dict:
        return {"name": self.name, "leases": list(self.leases), "slots": self.slots, "reserve": self.reserve,
                "round_s": self.round_s, "free_every": self.free_every}


@dataclass
class Round:
    """One round: who held which lease at what price; once it ended, what each lease carried and each holder's
    bill. Bidders are their keys as hex."""
    number: int
    start: float
    end: float
    bids: dict = field(default_factory=dict)            # the standing bids the round was auctioned with
    winners: list = field(default_factory=list)
    price: int = 0
    optimistic: str | None = None
    optimistic_price: int = 0
    ineligible: dict = field(default_factory=dict)      # bidder -> unpaid | no_channel
    holders: dict = field(default_factory=dict)         # lease -> (bidder, price per KiB)
    carried: dict | None = None                         # lease -> bytes, once the round ended
    bills: dict | None = None                           # bidder -> atomic units, once the round ended

    def view(self) -> dict:
        return {"round": self.number, "start": self.start, "end": self.end, "bids": dict(self.bids),
                "winners": list(self.winners), "price": self.price, "optimistic": self.optimistic,
                "optimistic_price": self.optimistic_price, "ineligible": dict(self.ineligible),
                "holders": {lease: {"bidder": b, "price": p} for lease, (b, p) in self.holders.items()},
                "carried": self.carried, "bills": self.bills}


class Rounds:
    """A seller's auction: the standing bids and the rounds (see the module docstring). Pure: times passed in."""

    def __init__(self, seller: bytes, terms: AuctionTerms, now: float):
        self.seller, self.terms = seller, terms
        self.bids: dict[str, Bid] = {}                  # bidder hex -> its standing bid
        self.optimistic = OptimisticSlot(terms.free_every)
        self.rounds = [Round(1, now, now + terms.round_s)]
        self.rejected: Counter = Counter()

    @property
    def current(self) -> Round:
        return self.rounds[-1]

    def receive(self, data) -> Bid:
        """A bid; the accepted Bid, or WireError with the reason (counted in ``rejected``)."""
        try:
            bid = self.check(data)
        except WireError as e:
            self.rejected[e.code] += 1
            raise
        self.bids[bid.bidder.hex()] = bid
        return bid

    def check(self, data) -> Bid:
        bid = decode_as({Bid.TYPE: Bid}, data)
        if bid.seller != self.seller:
            raise WireError(WRONG_SELLER, "the bid is for another seller")
        if bid.auction != self.terms.name:
            raise WireError(UNKNOWN_AUCTION, f"no auction {bid.auction!r} here")
        if not bid.signature_ok():
            raise WireError(BAD_SIGNATURE, "the bid is not signed by its bidder")
        want = self.current.number + 1
        if bid.round < want:
            raise WireError(OLD_ROUND, f"round {bid.round}: bids now are for round {want}")
        if bid.round > want:
            raise WireError(FUTURE_ROUND, f"round {bid.round}: bids now are for round {want}")
        standing = self.bids.get(bid.bidder.hex())
        if standing is not None and standing.round >= bid.round:
            raise WireError(REPLAYED, f"the bidder has a bid for round {standing.round} already")
        return bid

    def due(self, now: float) -> bool:
        return now >= self.current.end

    def close(self, now: float, carried: dict, accounts: dict) -> Round:
        """End the running round at ``now``: its bills from ``carried`` ({lease: bytes it carried in the round});
        the next round auctioned among the standing bids, ``accounts`` ({bidder hex: ok | unpaid | no_channel},
        missing: no_channel) deciding who may take part. Returns the new round."""
        ended = self.current
        ended.carried = {lease: carried.get(lease, 0) for lease in ended.holders}
        ended.bills = {}
        for lease, (bidder, price) in ended.holders.items():
            ended.bills[bidder] = ended.bills.get(bidder, 0) + price * (ended.carried[lease] // KIB)
        # on schedule when the close is a tick late; a market that was stuck starts a whole round from now
        start = ended.end if now - ended.end < self.terms.round_s / 2 else now
        nxt = Round(ended.number + 1, start, start + self.terms.round_s)
        prices = {b: bid.price for b, bid in self.bids.items()}
        nxt.bids = dict(prices)
        eligible, candidates = {}, []
        for b, price in sorted(prices.items()):
            state = accounts.get(b, NO_CHANNEL)
            if price >= self.terms.reserve and state != OK:
                nxt.ineligible[b] = state
                self.rejected[f"ineligible_{state}"] += 1
                continue
            candidates.append(b)
            if price >= self.terms.reserve:
                eligible[b] = price
        result = auction(eligible, self.terms.slots, self.terms.reserve)
        nxt.winners, nxt.price = list(result.winners), result.price
        for lease, b in zip(self.terms.leases, result.winners):
            nxt.holders[lease] = (b, result.price)
        self.optimistic.note_unchoked(result.winners)
        pick = self.optimistic.choose([b for b in candidates if b not in result.winners],
                                      {b: prices[b] for b in candidates}, self.terms.reserve)
        if pick is not None:
            nxt.optimistic, nxt.optimistic_price = pick
            nxt.holders[self.terms.leases[-1]] = pick
        self.rounds.append(nxt)
        return nxt

    def view(self, last: int | None = None) -> dict:
        return {**self.terms.view(), "round": self.current.number, "round_end": self.current.end,
                "bids": {b: {"round": bid.round, "price": bid.price} for b, bid in self.bids.items()},
                "rejected": dict(self.rejected),
                "rounds": [r.view() for r in (self.rounds[-last:] if last else self.rounds)]}


@dataclass
class BidPlan:
    """What a bidder bids in one seller's auction: ``price`` (atomic units per KiB; 0: interest only), or the
    auto-bid from its channel's balance and the ``remaining_bytes`` it still wants to send."""
    price: int | None = None
    remaining_bytes: int | None = None
    spend_rate: float = 1.0

    def __post_init__(self):
        if (self.price is None) == (self.remaining_bytes is None):
            raise ValueError("a bid is either a price or an auto-bid (remaining_bytes)")

    def price_now(self, balance: int) -> int:
        if self.price is not None:
            return self.price
        return auto_bid(balance, self.remaining_bytes, self.spend_rate)


class Bidder:
    """The bidder's side of one auction: when a new bid goes out (RebidLimiter: once per interval unless the
    budget, its channel's capacity, changed, and only on a change of more than 10 %). A bid that did not reach
    the seller goes out again, for the round then open, without asking the limiter."""

    def __init__(self, plan: BidPlan, time_scale: float = 1.0):
        self.plan, self.limiter = plan, RebidLimiter(time_scale)
        self.last: Bid | None = None                    # the last bid the seller accepted
        self.unsent: int | None = None                  # the price of a bid that did not reach it

    def next_bid(self, private_key: bytes, seller: bytes, name: str, seller_round: int, balance: int,
                 budget: int, now: float) -> Bid | None:
        """The bid to send now (for the round after ``seller_round``), or None."""
        if self.last is not None and self.last.round > seller_round:
            return None                                 # one bid per round: ours for the next one is in
        price = self.unsent
        if price is None:
            price = self.plan.price_now(balance)
            if self.last is not None and self.last.price == price:
                return None                             # it stands
            if not self.limiter.may_bid(seller, price, now, budget):
                return None
        return make_bid(private_key, seller, name, seller_round + 1, price)

    def sent(self, bid: Bid, accepted: bool) -> None:
        """What became of a bid: accepted, or refused for good (``accepted`` False and not to be sent again)."""
        self.unsent = None
        if accepted:
            self.last = bid

    def lost(self, bid: Bid) -> None:
        """The bid did not reach the seller (or its round passed): send its price again."""
        self.unsent = bid.price
