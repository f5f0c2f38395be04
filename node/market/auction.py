"""BitTorrent Token mode (seeds-digest.md §3: BTT-T04, T05, T08, T10): bids for priority, the uniform-price
auction, the auto-bid formula, the re-bid limits and the optimistic slot.

Bids and prices are integers: atomic PKT units per KiB (1024 bytes) of traffic. Pure: the time is passed in.

* :func:`auto_bid`: ``bid = spend_rate * balance / (remaining_bytes / 1024)``, rounded down (exact arithmetic).
* :func:`auction` (T08): a bid is eligible iff bid >= reserve; eligible bidders are ranked by bid, then by the
  bytes we received from them, then by peer id (so the result is deterministic); the first ``slots`` win, one
  slot per peer. Every winner pays the same clearing price ``max(highest losing bid, reserve)``; with no loser
  (a lone bidder, or no more bidders than slots) the price is the reserve. A winner never pays above its bid.
* :class:`RebidLimiter` (T04): a bid goes only to a peer that holds pieces we need; to one peer at most once per
  ``60 s x time_scale``, and then only if it changed by more than 10 %; a budget change re-bids at once (that is
  what "immediately" in the paper means: it bypasses the 60 s).
* :class:`OptimisticSlot` (T10): the extra slot goes to a peer never unchoked before. It is auctioned among such
  peers that bid at least the reserve, except every ``free_every``-th round, which goes to the longest-waiting such
  peer that does not bid (or bids below the reserve), free. So a non-bidder waits at most ``free_every`` rounds per
  non-bidder ahead of it, however many new bidders arrive (with no candidate of the round's kind, the other kind
  gets the slot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

REBID_INTERVAL_S = 60.0
REBID_CHANGE = Fraction(1, 10)


def auto_bid(balance: int, remaining_bytes: int, spend_rate: float = 1.0) -> int:
    """The BTT auto-bid, units per KiB: spend_rate x balance / (remaining_bytes / 1024), rounded down."""
    if isinstance(balance, bool) or not isinstance(balance, int) or balance < 0:
        raise ValueError(f"balance must be an integer >= 0, got {balance!r}")
    if isinstance(remaining_bytes, bool) or not isinstance(remaining_bytes, int) or remaining_bytes <= 0:
        raise ValueError(f"remaining_bytes must be an integer > 0, got {remaining_bytes!r}")
    if isinstance(spend_rate, bool) or not isinstance(spend_rate, (int, float)) or not 0 <= spend_rate < math.inf:
        raise ValueError(f"spend_rate must be a finite number >= 0, got {spend_rate!r}")
    return math.floor(Fraction(spend_rate) * balance * 1024 / remaining_bytes)


@dataclass(frozen=True)
class AuctionResult:
    winners: tuple          # peers, best first
    price: int              # what every winner pays
    losers: tuple           # eligible peers that did not win, best first
    ineligible: tuple       # peers that bid below the reserve


def _check_amount(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def auction(bids: dict, slots: int, reserve: int, bytes_received: dict | None = None) -> AuctionResult:
    """The uniform-price auction of ``slots`` slots among ``bids`` ({peer: bid})."""
    _check_amount(slots, "slots")
    _check_amount(reserve, "reserve")
    received = bytes_received or {}
    for peer, bid in bids.items():
        _check_amount(bid, f"bid of {peer!r}")
    eligible = sorted((p for p, b in bids.items() if b >= reserve),
                      key=lambda p: (-bids[p], -received.get(p, 0), p))
    winners, losers = eligible[:slots], eligible[slots:]
    price = max([bids[p] for p in losers] + [reserve])
    ineligible = tuple(sorted(p for p, b in bids.items() if b < reserve))
    return AuctionResult(tuple(winners), price, tuple(losers), ineligible)


class RebidLimiter:
    """Decides whether a new bid may go to a peer now (and remembers it if so)."""

    def __init__(self, time_scale: float = 1.0):
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.interval = REBID_INTERVAL_S * time_scale
        self._last: dict = {}           # peer -> (bid, time, budget)

    def may_bid(self, peer, bid: int, now: float, budget: int, has_needed_pieces: bool = True) -> bool:
        if not has_needed_pieces:
            return False
        last = self._last.get(peer)
        if last is not None:
            last_bid, last_time, last_budget = last
            if budget == last_budget:
                if now - last_time < self.interval:
                    return False
                if abs(bid - last_bid) <= REBID_CHANGE * last_bid:
                    return False
        self._last[peer] = (bid, now, budget)
        return True


class OptimisticSlot:
    def __init__(self, free_every: int = 3):
        if not isinstance(free_every, int) or free_every < 1:
            raise ValueError("free_every must be an integer >= 1")
        self.free_every = free_every
        self.round = 0
        self.unchoked_ever: set = set()
        self._arrival: dict = {}        # peer -> order in which we first saw it

    def note_unchoked(self, peers) -> None:
        """Peers the regular slots unchoked: no longer candidates for this slot."""
        self.unchoked_ever.update(peers)

    def choose(self, peers, bids: dict, reserve: int, bytes_received: dict | None = None):
        """(peer, price) for this round, or None if every peer was unchoked before."""
        self.round += 1
        for p in peers:
            self._arrival.setdefault(p, len(self._arrival))
        fresh = [p for p in peers if p not in self.unchoked_ever]
        bidders = {p: bids[p] for p in fresh if bids.get(p, -1) >= reserve}
        free = sorted((p for p in fresh if p not in bidders), key=self._arrival.__getitem__)
        if bidders and not (free and self.round % self.free_every == 0):
            result = auction(bidders, 1, reserve, bytes_received)
            pick, price = result.winners[0], result.price
        elif free:
            pick, price = free[0], 0
        else:
            return None
        self.unchoked_ever.add(pick)
        return pick, price
