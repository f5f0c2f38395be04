"""Pay-as-you-go leases over one-way payment channels, running: the driver of channel.py and channel_chain.py in a
device's market (market_node.py), on the PKT chain and the devices that carry the lease (lease_devices.py).

The buyer (payer) funds a channel on the chain to the seller (payee) for ``units`` units of ``unit_bytes`` bytes of
the lease's traffic at ``unit_price`` each, plus the fee of the close; it sends channel_open; the seller hands the
lease to the buyer's key at both ends of its link (the agents' ``lease_grant``) until the offer's end, and keeps it
there while the payments keep up. The rules pktlab defines (PKT leaves them open):

* Metering: what the lease carried since the open, the sum of both ends' ingress byte counters of the lease (the
  referee's count); ``metered`` = complete units of ``unit_bytes``.
* Units: a unit is *delivered* (channel.py's ``sent``) when the seller lets it start: the first at the open, unit
  n+1 when unit n is used up (metered >= n) and units 1..n are paid. The buyer pays the units the seller reports
  delivered, all that is due in one payment (``channel_chain_pay``, with its signature on the close for the new
  total). So the seller's exposure, delivered - paid, is at most one unit at every update (checked and counted:
  ``checks``, ``violations``).
* Withdrawal: when a unit is used up and the next may not start (the buyer is behind: the one unit it may owe is
  unpaid; or the capacity is spent), or at the offer's end, or CLOSE_MARGIN blocks before the refund height, the
  seller withdraws the grant (``lease_grant`` expiring now: the free tier again) and closes the channel on chain
  with the latest commitment (paid to it: exactly what was paid off chain); with nothing paid there is nothing to
  close and the payer takes its refund.
* Price: the seller takes a unit price of at least its term price per byte of the guarantee, ``ceil(price x
  unit_bytes / (kbps x 125 x term_s))`` (:func:`min_unit_price`): buying the guarantee's full volume by the unit
  costs what the term costs.
* Refund: a payer whose channel is still unspent when the chain reaches the refund height sends the refund
  (everything back less the fee): the seller vanished.
* Auctions (bids.py, auctions.py): a channel whose ``token`` names an auction of the seller's has unit price 1 and
  no lease of its own; the seller adds each round's bill to what it delivered (``bill``: the exposure is then one
  round's bill, and an unpaid bill keeps the bidder out of the next round), the buyer pays it, and the seller
  closes on chain CLOSE_MARGIN blocks before the refund height. A seller takes one such channel per payer.

HTTP (api.py): the buyer's market sends ``POST /channel_open`` {"open": channel_open, "payer_pk", "fee", "token",
"funding_tx"} (an unconfirmed funding is refused ``unconfirmed``, and the buyer says it again on its next tick),
``POST /channel_pay`` <channel_chain_pay>, and reads ``GET /channels/ID`` (the units delivered) on every tick.

Through a hub (``via``, hubs.py): the buyer funds no channel of its own; it needs an open hub channel to a hub
market that has one to the seller. Its channel_open then names that hub channel's funding and refund height
(informative: nothing is closed for it), capacity = units x unit_price, and goes as ``POST /channel_open`` {"open",
"token", "via": the hub's URL}. The seller grants and meters the lease as above, and draws an invoice (hubs.py)
for each unit it delivers, shown in ``GET /channels/ID`` (``invoices``: the unpaid ones); the buyer pays each
through the hub (unit_price + the hub's fee), and a unit counts as paid once the seller fulfilled its HTLC. The
same one-unit exposure and withdrawal rules hold; at the withdrawal there is nothing to close here (the seller's
money is in its hub channel, which closes on its own).

Persisted in ``<state_dir>/market/channels.jsonl``, each record appended before it is acted on: a buyer's open and
each payment it signs, a seller's open (with the byte count it meters from), each unit it delivers, each payment
it accepts and its withdrawal; a restarted market replays them and carries on (chain states are read again).
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from collections import Counter
from pathlib import Path

from node.chain.tx import Transaction
from node.chain.wallet import WalletError
from node.chain.wire import DecodeError
from node.cjdns.keys import curve25519_from_signing_key, pubkey_text

from .chain_client import ChainClientError
from .channel import ChannelError, ChannelOpen, open_channel, refund_height
from .channel_chain import ChainPay, ChainPayee, ChainPayer, ChainTerms, close_by, funding_ok, funding_tx, refund_tx
from .errors import MarketError
from .lease_devices import LeaseDeviceError
from .wire import WireError, decode_as

log = logging.getLogger(__name__)

OPENING, OPEN, WITHDRAWN, CLOSING, CLOSED, REFUNDING, REFUNDED, REFUSED = (
    "opening", "open", "withdrawn", "closing", "closed", "refunding", "refunded", "refused")
ENDED = (CLOSED, REFUNDED)
BEHIND, FULL, TERM_END, REFUND_NEAR = "buyer_behind", "capacity_spent", "term_end", "refund_near"


def min_unit_price(price: int, kbps: int, term_s: float, unit_bytes: int) -> int:
    """The least a seller takes per unit: its term price per byte of the guarantee's volume, rounded up."""
    return max(1, math.ceil(price * unit_bytes / (kbps * 125 * term_s)))


def holder_key(market_key: bytes) -> str:
    """The cjdns key (``....k``) a lease is granted to for a market key (its Ed25519 counterpart)."""
    return pubkey_text(curve25519_from_signing_key(market_key))


class _Channel:
    """What both sides keep of a channel beside the protocol object."""

    def __init__(self, role: str, terms: ChainTerms, token: str, lease: str, state: str):
        self.role, self.terms, self.token, self.lease, self.state = role, terms, token, lease, state
        self.reason = ""
        self.close_txid: str | None = None
        self.sent_at = -1                   # PKT height a close or refund was last sent at

    @property
    def id(self) -> str:
        return self.terms.open.channel.hex()

    @property
    def funding(self) -> str:
        return self.terms.open.funding


class Channels:
    """A market's channels, both sides. ``market`` gives: ``key``, ``secret``, ``wallet``, ``chain``, ``fee``,
    ``get``/``post`` (async HTTP to other markets, raising MarketError), ``offer(token)`` (our offer
    on sale, or None) and ``in_swap(token)``; ``devices`` carries our leases (lease_devices.py)."""

    def __init__(self, market, devices, directory: Path, refund_blocks: int | None = None,
                 clock=time.time):
        self.m, self.devices, self.clock = market, devices, clock
        self.path = Path(directory) / "channels.jsonl"
        self.refund_blocks = refund_blocks      # None: channel.py's T13 formula over the offer's remaining term
        self.channels: dict[str, _Channel] = {}
        self.counters: Counter = Counter()

    # -- persistence ---------------------------------------------------------------------------------------------

    def _journal(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def restore(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text().splitlines():
            r = json.loads(line)
            kind = r["kind"]
            if kind == "buy":
                self._buyer(r)
                continue
            c = self.channels[r["channel"]] if kind != "sell" else self._seller(r)
            if kind == "pay_via":
                c.paid_hashes.add(r["hash"])
            elif kind == "paid_via":
                c.payee.channel.paid += c.terms.open.unit_price
                c.invoices.remove(r["hash"])
            if kind == "pay":
                c.unsent = c.payer.unit_verified(r.get("units", 1))     # the seller may not have it: say it again
            elif kind == "delivered":
                c.payee.channel.bill(r["n"] - c.payee.channel.delivered)
                if r.get("invoice"):
                    c.invoices.append(r["invoice"])
            elif kind == "paid":
                c.payee.receive(r["data"].encode())
            elif kind == "withdrawn":
                c.state, c.reason = WITHDRAWN, r["reason"]
            elif kind == "opened":
                c.state = OPEN

    @staticmethod
    def _terms(r: dict) -> ChainTerms:
        return ChainTerms(ChannelOpen.decode(r["open"].encode()), bytes.fromhex(r["payer_pk"]),
                          bytes.fromhex(r["payee_pk"]), r["fee"])

    def _buyer(self, r: dict) -> _Channel:
        c = _Channel("buyer", self._terms(r), r["token"], r["lease"], OPENING)
        c.payer = ChainPayer(c.terms, self.m.secret, self.m.wallet)
        c.url, c.funding_tx, c.delivered, c.stopped, c.unsent = r["url"], r["funding_tx"], 0, False, None
        c.via, c.hub_fee, c.invoices, c.paid_hashes = r.get("via"), r.get("hub_fee", 0), [], set()
        self.channels[c.id] = c
        return c

    def _seller(self, r: dict) -> _Channel:
        c = _Channel("seller", self._terms(r), r["token"], r["lease"], OPEN)
        c.payee = ChainPayee(c.terms, self.m.wallet)
        c.base, c.until, c.metered = r["base"], r["until"], 0
        c.checks, c.violations = 0, 0
        c.via, c.invoices = r.get("via"), []             # through a hub: the unpaid units' invoices
        c.auction = r.get("auction", False)     # an auction's channel (bids.py): paid by the round's bill
        self.channels[c.id] = c
        return c

    def holds(self, token: str) -> bool:
        """Whether a live channel sells ``token`` (so it is not for sale by swap meanwhile)."""
        return any(c.role == "seller" and c.token == token and c.state in (OPEN, WITHDRAWN, CLOSING)
                   for c in self.channels.values())

    def _auction_channel(self, name: str, payer: bytes, role: str) -> _Channel | None:
        return next((c for c in self.channels.values() if c.role == role and c.token == name
                     and c.terms.open.payer == payer and c.state not in ENDED + (REFUSED,)), None)

    def auction_channel(self, name: str, payer: bytes, role: str = "seller") -> dict | None:
        """The live channel in which ``payer`` pays for auction ``name`` (our side ``role``), or None."""
        c = self._auction_channel(name, payer, role)
        return None if c is None else self.view(c)

    def account(self, name: str, payer: bytes) -> str:
        """bids.py's eligibility of a bidder: ok (its channel is open and every bill is paid), unpaid, no_channel."""
        c = self._auction_channel(name, payer, "seller")
        if c is None or c.state != OPEN:
            return "no_channel"
        return "ok" if c.payee.channel.exposure <= 0 else "unpaid"

    def bill(self, name: str, payer: bytes, amount: int) -> int:
        """An auction round's bill (atomic units; the channel's unit price is 1) on ``payer``'s channel; returns
        what was billed: never more than the channel has left (the rest is counted ``bill_over_capacity``)."""
        c = self._auction_channel(name, payer, "seller")
        if c is None:
            self.counters["bill_no_channel"] += 1
            return 0
        ch = c.payee.channel
        fits = min(amount, c.terms.most_paid - ch.delivered)
        if fits < amount:
            self.counters["bill_over_capacity"] += 1
        if fits > 0:
            ch.bill(fits)
            self._journal({"kind": "delivered", "channel": c.id, "n": ch.delivered})
        return fits

    # -- the buyer side ------------------------------------------------------------------------------------------

    async def open(self, url: str, token: str, units: int, unit_bytes: int, unit_price: int | None = None,
                   via: str | None = None) -> str:
        """Fund a channel to the seller at ``url`` for ``units`` units of its lease token ``token`` (or, ``via`` a
        hub's URL, pay them through that hub); returns the channel id. The open itself goes to the seller on the
        next ticks (once the funding is mined)."""
        url = url.rstrip("/")
        answer = await self.m.get(f"{url}/offers")
        offer = next((o for o in answer.get("offers", []) if o["token"] == token), None)
        if offer is None and token in answer.get("auctions", []):
            # an auction's channel (bids.py): unit price 1, so a round's bill of any amount is whole units
            unit_price, unit_bytes = 1, 1024
            offer = {"lease": token, "end": self.clock()}
        elif offer is None:
            raise MarketError("unknown_token", f"{url} offers no token {token}")
        else:
            term_s = offer["end"] - offer["start"]
            least = min_unit_price(offer["price"], offer["kbps"], term_s, unit_bytes)
            unit_price = least if unit_price is None else unit_price
            if unit_price < least:
                raise MarketError("price_too_low", f"the seller takes at least {least} per unit")
            if via is not None:
                return await self._open_via(url, via, offer, answer, units, unit_bytes, unit_price)
        height = self.m.chain.index.height()
        if self.refund_blocks is None:
            refund_h = refund_height(height, max(0.0, offer["end"] - self.clock()),
                                     self.m.chain.params.target_block_time)
        else:
            refund_h = height + self.refund_blocks
        payee_pk = bytes.fromhex(answer["wallet_key"])
        capacity = units * unit_price + self.m.fee
        try:
            coins = await self.m.chain.coins(self.m.wallet)
            tx = funding_tx(self.m.chain.params, self.m.wallet, coins, payee_pk, capacity, refund_h, self.m.fee)
            txid = await self.m.chain.send(tx)
        except (WalletError, ValueError, ChainClientError) as e:
            raise MarketError("fund_failed", str(e)) from None
        terms = open_channel(self.m.secret, secrets.token_bytes(16), bytes.fromhex(answer["key"]), capacity,
                             unit_price, unit_bytes, refund_h, f"{txid}:0")
        r = {"kind": "buy", "url": url, "token": token, "lease": offer["lease"], "open": terms.encode().decode(),
             "payer_pk": self.m.wallet.pubkey.hex(), "payee_pk": payee_pk.hex(), "fee": self.m.fee,
             "funding_tx": tx.raw.hex()}
        self._journal(r)
        return self._buyer(r).id

    async def _open_via(self, url: str, via: str, offer: dict, answer: dict, units: int, unit_bytes: int,
                        unit_price: int) -> str:
        via = via.rstrip("/")
        hub = self.m.hubs.sender_channel(via)
        if hub is None:
            raise MarketError("no_channel", f"no open hub channel of ours to {via}")
        hub_fee = (await self.m.get(f"{via}/hub"))["fee"]
        if units < 2:
            raise MarketError("bad_field", "units: at least 2")
        terms = open_channel(self.m.secret, secrets.token_bytes(16), bytes.fromhex(answer["key"]), units * unit_price,
                             unit_price, unit_bytes, hub.refund_height, hub.funding)
        r = {"kind": "buy", "url": url, "token": offer["token"], "lease": offer["lease"],
             "open": terms.encode().decode(), "payer_pk": self.m.wallet.pubkey.hex(), "payee_pk": answer["wallet_key"],
             "fee": 0, "funding_tx": "", "via": via, "hub_fee": hub_fee}
        self._journal(r)
        return self._buyer(r).id

    async def _buyer_via_tick(self, c: _Channel) -> None:
        """Through a hub: open, then pay each unit's invoice the seller shows through the hub."""
        try:
            if c.state == OPENING:
                body = {"open": c.terms.open.encode().decode(), "token": c.token, "via": c.via}
                answer = await self.m.post(f"{c.url}/channel_open", json.dumps(body).encode())
                c.state = OPEN
                self._journal({"kind": "opened", "channel": c.id})
            else:
                answer = await self.m.get(f"{c.url}/channels/{c.id}")
        except MarketError as e:
            self.counters[f"buyer_{e.code}"] += 1
            if c.state == OPENING and e.code != "unreachable":
                c.state, c.reason = REFUSED, f"{e.code}: {e.detail}"
            return
        c.delivered = answer["delivered"]
        if answer["state"] in ENDED:
            c.state, c.reason = answer["state"], answer["reason"]
            return
        for h in answer["invoices"]:
            if c.stopped or h in c.paid_hashes:
                continue
            try:        # (paid again after a restart that lost our record: the hub refuses it, duplicate_hash)
                self.m.hubs.pay(c.via, c.terms.open.payee, bytes.fromhex(h), c.terms.open.unit_price + c.hub_fee)
            except MarketError as e:
                self.counters[f"buyer_via_{e.code}"] += 1       # again on the next tick
                continue
            self._journal({"kind": "pay_via", "channel": c.id, "hash": h})
            c.paid_hashes.add(h)

    def _paid_via(self, c: _Channel) -> int:
        """What the buyer paid through the hub: its settled payments of this channel's invoices."""
        hashes = {bytes.fromhex(h) for h in c.paid_hashes}
        return sum(c.terms.open.unit_price for h, p in self.m.hubs.payments.items()
                   if h in hashes and p["state"] == "settled")

    def stop(self, channel: str) -> dict:
        """The buyer stops paying (what a buyer that is done, or defaults, does): the seller withdraws the lease
        once it is one unit behind, and closes."""
        c = self._get(channel)
        if c.role != "buyer":
            raise MarketError("not_buyer", "only the buyer's market stops paying")
        c.stopped = True
        return self.view(c)

    async def _buyer_tick(self, c: _Channel, height: int) -> None:
        if c.via is not None:
            if c.state not in ENDED and c.state != REFUSED:
                await self._buyer_via_tick(c)
            return
        if c.state in ENDED or self._settled(c):
            return
        if height >= c.terms.open.refund_height:         # the seller did not close in time: take it all back
            await self._send_once(c, height, refund_tx(c.terms, self.m.wallet), REFUNDING)
            return
        if c.state == REFUSED:
            return
        try:
            if c.state == OPENING:
                body = {"open": c.terms.open.encode().decode(), "payer_pk": c.terms.payer_pk.hex(),
                        "fee": c.terms.fee, "token": c.token, "funding_tx": c.funding_tx}
                answer = await self.m.post(f"{c.url}/channel_open", json.dumps(body).encode())
                c.state = OPEN
                self._journal({"kind": "opened", "channel": c.id})
            else:
                answer = await self.m.get(f"{c.url}/channels/{c.id}")
            c.delivered = answer["delivered"]
            if c.unsent is not None:
                await self._pay(c, c.unsent)
            units = c.delivered - c.payer.channel.verified
            if not c.stopped and c.state == OPEN and units > 0:       # all that is due in one payment
                try:
                    data = c.payer.unit_verified(units)
                except ChannelError:
                    self.counters["capacity_spent"] += 1
                    return
                self._journal({"kind": "pay", "channel": c.id, "units": units})
                c.unsent = data
                await self._pay(c, data)
        except MarketError as e:        # the seller did not answer (or not yet): again on the next tick
            self.counters[f"buyer_{e.code}"] += 1
            if c.state == OPENING and e.code not in ("unreachable", "unconfirmed"):
                c.state, c.reason = REFUSED, f"{e.code}: {e.detail}"

    async def _pay(self, c: _Channel, data: bytes) -> None:
        try:
            await self.m.post(f"{c.url}/channel_pay", data)
        except MarketError as e:
            if e.code != "replayed":    # "replayed": the seller had it already (we restarted before its answer)
                raise
        c.unsent = None

    # -- the seller side -----------------------------------------------------------------------------------------

    async def on_open(self, body: bytes) -> dict:
        try:
            r = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise MarketError("bad_json", f"the body is not JSON: {e}") from None
        via = isinstance(r, dict) and set(r) == {"open", "token", "via"} and all(isinstance(r[k], str) for k in r)
        if via:         # paid through a hub: no funding of its own (module docstring)
            r = dict(r, payer_pk="", fee=self.m.fee, funding_tx="")
        if not isinstance(r, dict) or set(r) - {"via"} != {"open", "payer_pk", "fee", "token", "funding_tx"} \
                or not all(isinstance(r[k], str) for k in ("open", "payer_pk", "token", "funding_tx")) \
                or isinstance(r["fee"], bool) or not isinstance(r["fee"], int):
            raise MarketError("bad_field", 'expected {"open", "payer_pk", "fee", "token", "funding_tx"}')
        try:
            open_ = decode_as({ChannelOpen.TYPE: ChannelOpen}, r["open"].encode())
        except WireError as e:
            raise MarketError(e.code, e.detail) from None
        known = self.channels.get(open_.channel.hex())
        if known is not None:
            if known.role != "seller" or known.terms.open != open_:
                raise MarketError("duplicate_channel", "that channel id is taken")
            return self.view(known)                 # the buyer did not get our answer: say it again
        if open_.payee != self.m.key:
            raise MarketError("wrong_payee", "the channel does not pay us")
        auction = self.m.auction_terms(r["token"])
        offer = self.m.offer(r["token"])
        if auction is not None:
            if open_.unit_price != 1:
                raise MarketError("bad_field", "an auction's channel has unit price 1 (bills are any amount)")
            if self._auction_channel(r["token"], open_.payer, "seller") is not None:
                raise MarketError("busy", f"that payer has a channel for auction {r['token']} already")
        elif offer is None:
            raise MarketError("unknown_token", f"we have no token {r['token']} on sale")
        else:
            if self.holds(r["token"]) or self.m.in_swap(r["token"]):
                raise MarketError("busy", f"{r['token']} is sold in another channel or swap")
            if self.devices is None or not self.devices.has(offer["lease"]):
                raise MarketError("no_device", f"no device of ours carries lease {offer['lease']}")
            least = min_unit_price(offer["price"], offer["kbps"], offer["end"] - offer["start"],
                                   open_.unit_bytes)
            if open_.unit_price < least:
                raise MarketError("price_too_low", f"unit_price {open_.unit_price} < {least}")
        if r["fee"] < self.m.fee:
            raise MarketError("fee_too_low", f"fee {r['fee']} < {self.m.fee}")
        if not open_.signature_ok():
            raise MarketError("bad_signature", "channel_open is not signed by its payer")
        if via:
            if auction is not None:
                raise MarketError("bad_field", "an auction's channel is paid directly, not through a hub")
            if not self.m.hubs.paid_by(r["via"]):
                raise MarketError("no_channel", f"no open hub channel from {r['via']} pays us")
            if open_.capacity <= open_.unit_price:
                raise MarketError("bad_field", "capacity: at least two units")
        else:
            self._check_funding(open_, r)
        if auction is not None:             # no lease of its own: the rounds grant and bill (auctions.py)
            rec = {"kind": "sell", "token": r["token"], "lease": "", "open": r["open"], "payer_pk": r["payer_pk"],
                   "payee_pk": self.m.wallet.pubkey.hex(), "fee": r["fee"], "base": 0, "until": None,
                   "auction": True}
            self._journal(rec)
            return self.view(self._seller(rec))
        try:
            base = await self.devices.carried(offer["lease"])
            await self.devices.grant(offer["lease"], holder_key(open_.payer), offer["end"])
        except LeaseDeviceError as e:
            raise MarketError("device_unreachable", str(e)) from None
        rec = {"kind": "sell", "token": r["token"], "lease": offer["lease"], "open": r["open"],
               "payer_pk": r["payer_pk"] or self.m.wallet.pubkey.hex(), "payee_pk": self.m.wallet.pubkey.hex(),
               "fee": 0 if via else r["fee"], "base": base, "until": offer["end"]}
        if via:
            rec["via"] = r["via"]
        self._journal(rec)
        c = self._seller(rec)
        self._deliver(c)
        return self.view(c)

    def _check_funding(self, open_: ChannelOpen, r: dict) -> None:
        try:
            terms = ChainTerms(open_, bytes.fromhex(r["payer_pk"]), self.m.wallet.pubkey, r["fee"])
            tx = Transaction.parse(bytes.fromhex(r["funding_tx"]))
        except (ValueError, DecodeError, ChannelError) as e:
            raise MarketError("bad_field", str(e)) from None
        if not funding_ok(terms, tx):
            raise MarketError("bad_funding", "funding_tx is not the funding channel_open names")
        if self.m.chain.index.confirmed(tx.txid_hex) is None:
            raise MarketError("unconfirmed", "the funding is not on the chain yet")
        if self.m.chain.index.spender(open_.funding) is not None:
            raise MarketError("bad_funding", "the funding is spent")
        if close_by(terms) <= self.m.chain.index.height():
            raise MarketError("refund_too_soon", f"refund height {open_.refund_height} leaves no time")

    def on_pay(self, data: bytes) -> dict:
        try:
            pay = decode_as({ChainPay.TYPE: ChainPay}, data)
        except WireError as e:
            raise MarketError(e.code, e.detail) from None
        c = self.channels.get(pay.channel.hex())
        if c is None or c.role != "seller":
            raise MarketError("unknown_channel", f"no channel {pay.channel.hex()} pays us")
        if c.state not in (OPEN, WITHDRAWN):
            raise MarketError("closed", f"channel {c.id} is {c.state}")
        before = Counter(c.payee.rejected)
        if not c.payee.receive(data):
            code = next(iter(c.payee.rejected - before))
            raise MarketError(code, f"channel_chain_pay refused: {code}")
        self._journal({"kind": "paid", "channel": c.id, "data": bytes(data).decode()})
        self._check(c)
        return self.view(c)

    def _deliver(self, c: _Channel) -> None:
        c.payee.channel.sent()
        invoice = self.m.hubs.invoice(c.terms.open.unit_price)["hash"] if c.via else None
        self._journal({"kind": "delivered", "channel": c.id, "n": c.payee.channel.delivered, "invoice": invoice})
        if invoice:
            c.invoices.append(invoice)

    def _check(self, c: _Channel) -> None:
        """The exposure invariant, at every update: delivered - paid <= one unit (an auction's channel is billed a
        round at a time: its bound is the rounds' eligibility rule, bids.py)."""
        if c.auction:
            return
        c.checks += 1
        if c.payee.channel.exposure > c.terms.open.unit_price:
            c.violations += 1
            log.error("channel %s: exposure %d above one unit", c.id, c.payee.channel.exposure)

    async def _seller_tick(self, c: _Channel, height: int) -> None:
        if c.state in ENDED:
            return
        if c.via is not None:              # units paid through the hub: their HTLCs we fulfilled
            for h in [h for h in c.invoices if self.m.hubs.fulfilled(bytes.fromhex(h))]:
                self._journal({"kind": "paid_via", "channel": c.id, "hash": h})
                c.payee.channel.paid += c.terms.open.unit_price
                c.invoices.remove(h)
                self._check(c)
        if c.state == OPEN and c.auction:
            if height >= close_by(c.terms):
                self._journal({"kind": "withdrawn", "channel": c.id, "reason": REFUND_NEAR})
                c.state, c.reason = WITHDRAWN, REFUND_NEAR
        elif c.state == OPEN:
            try:
                c.metered = (await self.devices.carried(c.lease) - c.base) // c.terms.open.unit_bytes
            except LeaseDeviceError as e:
                self.counters["device_unreachable"] += 1
                log.warning("channel %s: %s", c.id, e)
                return
            ch, reason = c.payee.channel, None
            while ch.delivered <= c.metered and reason is None:
                if ch.may_send():
                    self._deliver(c)
                else:
                    reason = BEHIND if ch.exposure > 0 else FULL
            if reason is None and self.clock() >= c.until:
                reason = TERM_END
            if reason is None and height >= close_by(c.terms):
                reason = REFUND_NEAR
            self._check(c)
            if reason is not None:
                await self._withdraw(c, reason)
        if c.state in (WITHDRAWN, CLOSING) and not self._settled(c):
            tx = c.payee.close()
            if tx is None:
                c.state = CLOSED                 # nothing was paid: nothing to close for, the payer refunds
            else:
                await self._send_once(c, height, tx, CLOSING)

    async def _withdraw(self, c: _Channel, reason: str) -> None:
        try:
            await self.devices.grant(c.lease, holder_key(c.terms.open.payer), self.clock())
        except LeaseDeviceError as e:
            self.counters["device_unreachable"] += 1
            log.warning("channel %s: withdraw: %s", c.id, e)
            return
        self._journal({"kind": "withdrawn", "channel": c.id, "reason": reason})
        c.state, c.reason = WITHDRAWN, reason
        self.counters[f"withdrawn_{reason}"] += 1

    # -- both ----------------------------------------------------------------------------------------------------

    def _settled(self, c: _Channel) -> bool:
        """Whether the funding was spent on the best chain: closed (a close, which needs the seller) or refunded
        (the payer's refund). A channel paid through a hub has no funding of its own."""
        if c.via is not None:
            return False
        spender = self.m.chain.index.spender(c.funding)
        if spender is None:
            return False
        if c.role == "buyer":
            refunded = spender == refund_tx(c.terms, self.m.wallet).txid_hex     # signatures are deterministic
        else:
            close = c.payee.close()
            refunded = close is None or spender != close.txid_hex
        c.close_txid, c.state = spender, REFUNDED if refunded else CLOSED
        return True

    async def _send_once(self, c: _Channel, height: int, tx, state: str) -> None:
        """A close or refund, sent at most once per PKT block (until the chain has one)."""
        if c.sent_at == height:
            return
        c.sent_at, c.state = height, state
        try:
            await self.m.chain.send(tx)
            self.counters[f"{state}_sent"] += 1
        except ChainClientError as e:
            self.counters[f"{state}_refused"] += 1
            log.info("channel %s: %s: %s", c.id, state, e)

    async def tick(self) -> None:
        height = self.m.chain.index.height()
        for c in list(self.channels.values()):
            if c.role == "buyer":
                await self._buyer_tick(c, height)
            else:
                await self._seller_tick(c, height)

    def _get(self, channel: str) -> _Channel:
        c = self.channels.get(channel)
        if c is None:
            raise MarketError("unknown_channel", f"no channel {channel}")
        return c

    def status(self, channel: str) -> dict:
        return self.view(self._get(channel))

    def view(self, c: _Channel) -> dict:
        o = c.terms.open
        out = {"channel": c.id, "role": c.role, "token": c.token, "lease": c.lease, "state": c.state,
               "reason": c.reason, "capacity": o.capacity, "unit_price": o.unit_price, "unit_bytes": o.unit_bytes,
               "fee": c.terms.fee, "funding": c.funding, "refund_height": o.refund_height,
               "close_txid": c.close_txid}
        if c.role == "seller":
            ch = c.payee.channel
            out.update(via=c.via, invoices=list(c.invoices), payer=o.payer.hex(), delivered=ch.delivered, paid=ch.paid,
                       paid_units=ch.paid // o.unit_price, metered=c.metered, exposure=ch.exposure,
                       checks=c.checks, violations=c.violations, rejected=dict(c.payee.rejected))
        else:
            ch = c.payer.channel
            paid = self._paid_via(c) if c.via else ch.paid
            out.update(via=c.via, seller=c.url, delivered=c.delivered, paid=paid, paid_units=paid // o.unit_price,
                       exposure=c.delivered * o.unit_price - paid, stopped=c.stopped)
        return out

    def list(self) -> list[dict]:
        return [self.view(c) for c in self.channels.values()]
