"""BitTorrent Token mode, running: the driver of bids.py in a device's market (market_node.py), both sides.

Seller: ``create`` starts an auction of priority on its link (bids.py's AuctionTerms: the leases, slots, reserve,
round_s, free_every); bids arrive as ``POST /bid``; every tick, a round that is due is closed: the bytes each lease
carried in it are read from the devices at the link's ends (lease_devices.py, as channels.py meters), each holder
is billed on its payment channel to us (channels.py: an auction's channel has unit price 1, so a bill of any
amount is whole units; the bidder pays what is due on its next tick), the next round is auctioned, and its holders
get their leases at both ends of the link (``lease_grant``) until the round's end + HOLD_OVER_S. A new holder's
grant replaces the old one at once, and a lease nobody won for the next round is withdrawn at once (a grant to its
last holder that expires now), so the hold-over only lets a holder that wins again keep its lease without a gap:
the devices announce a lease's new holder to the route servers at once, but a later end of the same holder only
with their periodic announcement (every 10 s, node/route_server/client.py), and until then the route servers
would take the lease for expired and route its holder on the free tier.

Bidder: ``bid`` opens a channel to the seller's auction (``capacity`` atomic units, unless one is open) and keeps
a BidPlan: every tick it reads the seller's running round (``GET /auctions/NAME``) and sends what bids.py's Bidder
says (``POST /bid``): the first bid at once, a new one when the RebidLimiter lets it; a bid that did not arrive or
came too late for its round goes out again for the round then open.

Nothing here is journaled: a restarted market forgets its auctions and bidding (the channels and their bills are
channels.py's journal, so no payment is lost).
"""
from __future__ import annotations

import logging
import time
from collections import Counter

from .bids import AuctionTerms, Bid, Bidder, BidPlan, Rounds
from .channels import holder_key
from .errors import MarketError
from .lease_devices import LeaseDeviceError
from .wire import WireError, decode_as

log = logging.getLogger(__name__)
HOLD_OVER_S = 15.0          # longer than the route-server announcement interval (10 s): see the module docstring
RESEND = {"unreachable", "old_round"}       # a bid to send again, for the round then open


class _Bidding:
    def __init__(self, url: str, name: str, seller: bytes, plan: BidPlan, time_scale: float):
        self.url, self.name, self.seller = url, name, seller
        self.bidder = Bidder(plan, time_scale)
        self.refused: Counter = Counter()
        self.sent = 0

    def view(self, channel: dict | None) -> dict:
        last = self.bidder.last
        p = self.bidder.plan
        return {"seller": self.url, "auction": self.name, "seller_key": self.seller.hex(),
                "plan": {"price": p.price, "remaining_bytes": p.remaining_bytes, "spend_rate": p.spend_rate},
                "bid": None if last is None else {"round": last.round, "price": last.price},
                "sent": self.sent, "refused": dict(self.refused),
                "channel": None if channel is None else channel["channel"]}


class Auctions:
    """A market's auctions (seller) and bidding (bidder). ``market`` gives ``key``, ``secret``, ``channels``,
    ``get``/``post``, ``offer(name)``; ``devices`` carries our leases."""

    def __init__(self, market, devices, clock=time.time):
        self.m, self.devices, self.clock = market, devices, clock
        self.houses: dict[str, Rounds] = {}
        self.base: dict[str, dict | None] = {}         # auction -> {lease: bytes carried} at its round's start
        self.bidding: dict[tuple, _Bidding] = {}        # (seller url, auction) -> our bidding
        self.counters: Counter = Counter()
        self.rejected: Counter = Counter()              # bids refused before an auction was found

    # -- seller --------------------------------------------------------------------------------------------------

    def terms(self, name: str) -> AuctionTerms | None:
        house = self.houses.get(name)
        return None if house is None else house.terms

    def create(self, body) -> dict:
        terms = AuctionTerms.check(body)
        if terms.name in self.houses or self.m.offer(terms.name) is not None:
            raise MarketError("duplicate_token", f"{terms.name} names an auction or offer of ours already")
        for lease in terms.leases:
            if self.devices is None or not self.devices.has(lease):
                raise MarketError("no_device", f"no device of ours carries lease {lease}")
            if any(h.terms.leases.count(lease) for h in self.houses.values()):
                raise MarketError("busy", f"lease {lease} is in another auction")
        self.houses[terms.name] = Rounds(self.m.key, terms, self.clock())
        self.base[terms.name] = None
        return self.view(terms.name)

    def on_bid(self, data: bytes) -> dict:
        try:
            bid = decode_as({Bid.TYPE: Bid}, data)
        except WireError as e:
            self.rejected[e.code] += 1
            raise MarketError(e.code, e.detail) from None
        house = self.houses.get(bid.auction)
        if house is None:
            self.rejected["unknown_auction"] += 1
            raise MarketError("unknown_auction", f"no auction {bid.auction!r} here")
        try:
            house.receive(data)
        except WireError as e:
            raise MarketError(e.code, e.detail) from None
        return {"accepted": True, "auction": bid.auction, "round": bid.round, "price": bid.price}

    async def _carried(self, leases) -> dict:
        return {lease: await self.devices.carried(lease) for lease in leases}

    async def _seller_tick(self, name: str, house: Rounds) -> None:
        try:
            if self.base[name] is None:
                self.base[name] = await self._carried(house.terms.leases)
            now = self.clock()
            if not house.due(now):
                return
            counts = await self._carried(house.terms.leases)
        except LeaseDeviceError as e:
            self.counters["device_unreachable"] += 1
            log.warning("auction %s: %s", name, e)
            return
        carried = {lease: counts[lease] - self.base[name][lease] for lease in counts}
        accounts = {b: self.m.channels.account(name, bytes.fromhex(b)) for b in house.bids}
        nxt = house.close(now, carried, accounts)
        self.base[name] = counts
        ended = house.rounds[-2]
        for bidder, amount in ended.bills.items():
            if amount:
                billed = self.m.channels.bill(name, bytes.fromhex(bidder), amount)
                if billed != amount:
                    ended.bills[bidder] = billed        # what the channel could still pay
        grants = {lease: (bidder, nxt.end + HOLD_OVER_S) for lease, (bidder, _) in nxt.holders.items()}
        for lease, (bidder, _) in ended.holders.items():
            grants.setdefault(lease, (bidder, now))                     # nobody won it: withdrawn
        for lease, (bidder, until) in grants.items():
            try:
                await self.devices.grant(lease, holder_key(bytes.fromhex(bidder)), until)
            except LeaseDeviceError as e:
                self.counters["device_unreachable"] += 1
                log.warning("auction %s: grant %s: %s", name, lease, e)
        self.counters["rounds"] += 1

    def view(self, name: str, last: int | None = None) -> dict:
        house = self.houses.get(name)
        if house is None:
            raise MarketError("unknown_auction", f"no auction {name!r} here")
        out = house.view(last)
        out["seller"] = self.m.key.hex()
        out["accounts"] = {}
        for b in house.bids:
            c = self.m.channels.auction_channel(name, bytes.fromhex(b))
            out["accounts"][b] = None if c is None else {
                "channel": c["channel"], "state": c["state"], "capacity": c["capacity"], "billed": c["delivered"],
                "paid": c["paid"], "owed": c["exposure"]}
        return out

    # -- bidder --------------------------------------------------------------------------------------------------

    async def bid(self, url: str, name: str, plan: BidPlan, capacity: int | None = None,
                  time_scale: float = 1.0) -> dict:
        """Bid in the auction ``name`` at the seller ``url`` from now on (replacing our plan there, if any)."""
        url = url.rstrip("/")
        info = await self.m.get(f"{url}/auctions/{name}")
        seller = bytes.fromhex(info["seller"])
        channel = self._channel(url, name)
        if channel is None and capacity is not None:
            await self.m.channels.open(url, name, capacity, 1024, 1)
        elif channel is None and (plan.price is None or plan.price >= info["reserve"]):
            raise MarketError("no_channel", "a bid at the reserve or more needs a channel: give its capacity")
        self.bidding[(url, name)] = _Bidding(url, name, seller, plan, time_scale)
        return self.bidding[(url, name)].view(self._channel(url, name))

    def _channel(self, url: str, name: str) -> dict | None:
        c = self.m.channels.auction_channel(name, self.m.key, "buyer")
        return c if c is not None and c["seller"] == url else None

    async def _bidder_tick(self, b: _Bidding) -> None:
        try:
            info = await self.m.get(f"{b.url}/auctions/{b.name}?last=1")
        except MarketError as e:
            self.counters[f"bid_{e.code}"] += 1
            return
        c = self._channel(b.url, b.name)
        balance = 0 if c is None else c["capacity"] - c["fee"] - c["paid"]
        budget = 0 if c is None else c["capacity"]
        bid = b.bidder.next_bid(self.m.secret, b.seller, b.name, info["round"], balance, budget, self.clock())
        if bid is None:
            return
        try:
            await self.m.post(f"{b.url}/bid", bid.encode())
        except MarketError as e:
            b.refused[e.code] += 1
            if e.code in RESEND:
                b.bidder.lost(bid)
            else:
                b.bidder.sent(bid, False)
            return
        b.sent += 1
        b.bidder.sent(bid, True)

    def bids(self) -> list[dict]:
        return [b.view(self._channel(b.url, b.name)) for b in self.bidding.values()]

    # -- both ----------------------------------------------------------------------------------------------------

    async def tick(self) -> None:
        for name, house in list(self.houses.items()):
            await self._seller_tick(name, house)
        for b in list(self.bidding.values()):
            await self._bidder_tick(b)

    def list(self) -> list[dict]:
        return [self.view(name, last=3) for name in self.houses]
