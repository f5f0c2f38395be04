"""A device market's HTTP API (aiohttp), on ``[fc00 address]:MARKET_PORT`` for other markets and on a Unix socket in
the node's run directory for the host (`pktlab market ...`).

    GET  /status                      key, wallet, PKT height, offers, swaps, counters, rejections by reason,
                                      issuers (each issuer chain held: updates, discredited and the fault)
    GET  /offers                      our lease tokens for sale: token, lease, link, kbps, start, end, price;
                                      our auctions (names: bids.py)
    GET  /tokens                      every token of every issuer chain we hold, with owner and lock
    GET  /updates?issuer=KEY&from=N   that issuer's updates from height N (encoded messages), as we hold them
    POST /issuer   <message>          a lock request or reveal for our issuer
    POST /swap     <message>          a swap message from a buyer -> {"replies": [message, ...]}
    POST /gossip   <message>          an update or a discredit proof another market pushes to our replicator
                                      (a refused one: 400 with the replicator's reason, e.g. duplicate)
    POST /buy      {"url", "issuer", "token", "price"}    start buying: -> {"swap": ID}
    POST /sell     {"token", "lease", "link", "kbps", "term_s", "price"}   issue a lease token for the term from
                                      now: -> {"offer": ...}
    GET  /swaps/ID                    a swap's phase and outcome (completed | refunded | null while running)
    POST /channels {"url", "token", "units", "unit_bytes", "unit_price" (optional: the seller's least), "via"
                    (optional: a hub's URL)}
                                      buy pay-as-you-go: fund a channel to that seller (or pay each unit through
                                      the hub we have a hub channel to) -> {"channel": ID}
    POST /channels/ID/stop            (the buyer) stop paying: the seller withdraws the lease and closes
    GET  /channels                    every channel we pay or are paid in (channels.py's view)
    GET  /channels/ID                 one channel: state, capacity, units delivered, paid, exposure
    POST /channel_open {"open", "payer_pk", "fee", "token", "funding_tx"}   a buyer's market opens a channel to us
                       ({"open", "token", "via"}: one paid through the hub at URL via)
    POST /channel_pay  <message>      a channel_chain_pay for a channel that pays us -> the channel's view
    GET  /hub                         whether we route (the hub setting), our fee and margin, keys, our payments
    POST /hub_channels {"url", "capacity", "refund_blocks"?}   fund a hub channel to that market -> {"channel"}
    GET  /hub_channels                every hub channel we send or receive on (hubs.py's view)
    GET  /hub_channels/ID             one: state, seq, paid, pending HTLCs
    POST /hub_channels/ID/close       (the receiver) close it on chain now with the latest state
    POST /invoices {"amount", "hold"?}   (a payee) draw a preimage -> {"hash", "key", "amount", "hold"}
    POST /invoices/HASH/release       (a payee) fulfill the HTLC that pays a hold invoice
    POST /hub_pay {"hub", "to", "hash", "amount", "expiry_blocks"?}   (a payer) pay ``to``'s invoice through the
                                      hub at URL ``hub`` over our channel to it -> the payment
    POST /hub_open {"open", "sender_pk", "fee", "funding_tx", "url"}   a market opens a hub channel to us
    POST /hub_msg  <message>          hub_chain_state, htlc_fulfill or htlc_fail for one of our hub channels
    POST /auctions {"name", "leases", "slots", "reserve", "round_s", "free_every"?}   (the seller) auction
                                      priority on our link in rounds (bids.py, auctions.py) -> the auction
    GET  /auctions                    our auctions, each with its last rounds
    GET  /auctions/NAME[?last=N]      one auction: running round, standing bids, accounts, rounds (the last N)
    POST /bid      <bid message>      a bidder's signed bid -> {"accepted", "round", "price"}
    POST /bids {"url", "auction", "price" | "remaining_bytes" (+ "spend_rate"?), "capacity"?, "time_scale"?}
                                      (the bidder) bid in a seller's auction from now on; capacity: open a
                                      channel to it first (atomic units) -> our bidding there
    GET  /bids                        our bidding: plan, last bid accepted, refusals, channel

Market messages travel as their wire.py JSON text. A request the market refuses gets 400 {"error": CODE,
"detail"} (the message rules' codes, or bad_json, bad_field, unknown_swap, busy, ...), counted by code in
``rejected``; an unexpected failure is a counted 500 ``internal``, never a dead service.
"""
from __future__ import annotations

import json
import logging
import re
import time

from aiohttp import web

from .bids import BidPlan
from .errors import MarketError
from .market_node import MarketNode
from .wire import MAX_PROOF_BYTES, MAX_UINT

log = logging.getLogger(__name__)
_HEX = re.compile(r"\A[0-9a-f]*\Z")


def _hex(value, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value) or len(value) % 2 or (size and len(value) != 2 * size):
        raise MarketError("bad_field", f"{what}: expected {f'{size} bytes as ' if size else ''}lowercase hex")
    return bytes.fromhex(value)


def _url(req: dict, key: str, whose: str) -> str:
    """req[key], another market's http:// URL (``whose``: the seller market's, the hub market's, ...)."""
    if not isinstance(req[key], str) or not req[key].startswith("http://"):
        raise MarketError("bad_field", f"{key}: {whose} http:// URL")
    return req[key]


def make_app(market: MarketNode) -> web.Application:
    @web.middleware
    async def errors(request, handler):
        try:
            return await handler(request)
        except MarketError as e:
            market.rejected[f"api_{e.code}"] += 1
            return web.json_response({"error": e.code, "detail": e.detail}, status=400)
        except web.HTTPException:
            raise
        except Exception as e:                  # the edge: one failed request, never a dead service
            market.rejected["api_internal"] += 1
            log.exception("market %s %s", request.method, request.path)
            return web.json_response({"error": "internal", "detail": f"{type(e).__name__}: {e}"}, status=500)

    async def body(request) -> bytes:
        data = await request.read()
        if not data:
            raise MarketError("bad_json", "empty body")
        return data

    async def status(request):
        return web.json_response(market.status())

    async def offers(request):
        return web.json_response({"offers": market.my_offers(), "auctions": sorted(market.auctions.houses),
                                  "pkt_height": market.chain.index.height(),
                                  "key": market.key.hex(), "wallet_key": market.wallet.pubkey.hex()})

    async def tokens(request):
        return web.json_response({"tokens": market.tokens()})

    async def updates(request):
        issuer = _hex(request.query.get("issuer"), "?issuer", 32)
        try:
            since = int(request.query.get("from", "0"))
        except ValueError:
            raise MarketError("bad_field", "?from must be a whole number") from None
        if since < 0:
            raise MarketError("bad_field", "?from must be >= 0")
        return web.json_response({"updates": market.updates(issuer, since)})

    async def issuer(request):
        market.on_issuer_message(await body(request))
        return web.json_response({"ok": True, "updates": len(market.issuer.updates)})

    async def gossip(request):
        market.on_gossip(await body(request))
        return web.json_response({"ok": True})

    async def swap(request):
        return web.json_response({"replies": await market.on_swap_message(await body(request))})

    async def buy(request):
        try:
            req = json.loads(await body(request))
        except (ValueError, UnicodeDecodeError) as e:
            raise MarketError("bad_json", f"the body is not JSON: {e}") from None
        if not isinstance(req, dict) or set(req) != {"url", "issuer", "token", "price"}:
            raise MarketError("bad_field", 'expected {"url", "issuer", "token", "price"}')
        price = req["price"]
        if isinstance(price, bool) or not isinstance(price, int) or not 0 < price <= MAX_UINT:
            raise MarketError("bad_field", "price: a whole number of atomic PKT units > 0")
        _url(req, "url", "the seller market's")
        if not isinstance(req["token"], str) or not req["token"]:
            raise MarketError("bad_field", "token: a token name")
        sid = await market.buy(req["url"], _hex(req["issuer"], "issuer", 32), req["token"], price)
        return web.json_response({"swap": sid.hex()})

    async def sell(request):
        return web.json_response({"offer": market.sell(await json_body(request), time.time())})

    async def json_body(request):
        try:
            return json.loads(await body(request))
        except (ValueError, UnicodeDecodeError) as e:
            raise MarketError("bad_json", f"the body is not JSON: {e}") from None

    def whole(req: dict, key: str) -> int:
        v = req[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_UINT:
            raise MarketError("bad_field", f"{key}: a whole number > 0")
        return v

    async def channel_new(request):
        req = await json_body(request)
        if not isinstance(req, dict) or not {"url", "token", "units", "unit_bytes"} <= set(req) \
                or not set(req) <= {"url", "token", "units", "unit_bytes", "unit_price", "via"}:
            raise MarketError("bad_field", 'expected {"url", "token", "units", "unit_bytes", "unit_price"?, "via"?}')
        if "via" in req:
            _url(req, "via", "the hub market's")
        _url(req, "url", "the seller market's")
        if not isinstance(req["token"], str) or not req["token"]:
            raise MarketError("bad_field", "token: a token name")
        price = whole(req, "unit_price") if "unit_price" in req else None
        cid = await market.channels.open(req["url"], req["token"], whole(req, "units"), whole(req, "unit_bytes"),
                                         price, req.get("via"))
        return web.json_response({"channel": cid})

    def channel_id(request) -> str:
        return _hex(request.match_info["id"], "channel id", 16).hex()

    async def channel_list(request):
        return web.json_response({"channels": market.channels.list()})

    async def channel_status(request):
        return web.json_response(market.channels.status(channel_id(request)))

    async def channel_stop(request):
        return web.json_response(market.channels.stop(channel_id(request)))

    async def channel_open(request):
        return web.json_response(await market.channels.on_open(await body(request)))

    async def channel_pay(request):
        return web.json_response(market.channels.on_pay(await body(request)))

    async def hub_info(request):
        return web.json_response(market.hubs.info())

    async def hub_new(request):
        req = await json_body(request)
        if not isinstance(req, dict) or not {"url", "capacity"} <= set(req) \
                or not set(req) <= {"url", "capacity", "refund_blocks"}:
            raise MarketError("bad_field", 'expected {"url", "capacity", "refund_blocks"?}')
        _url(req, "url", "the other market's")
        blocks = whole(req, "refund_blocks") if "refund_blocks" in req else None
        return web.json_response({"channel": await market.hubs.open(req["url"], whole(req, "capacity"), blocks)})

    async def hub_list(request):
        return web.json_response({"channels": market.hubs.list()})

    async def hub_status(request):
        return web.json_response(market.hubs.status(channel_id(request)))

    async def hub_close(request):
        return web.json_response(market.hubs.close(channel_id(request)))

    async def invoice(request):
        req = await json_body(request)
        if not isinstance(req, dict) or not {"amount"} <= set(req) <= {"amount", "hold"} \
                or not isinstance(req.get("hold", False), bool):
            raise MarketError("bad_field", 'expected {"amount", "hold"?: true|false}')
        return web.json_response(market.hubs.invoice(whole(req, "amount"), req.get("hold", False)))

    async def invoice_release(request):
        return web.json_response(market.hubs.release(_hex(request.match_info["hash"], "hash", 32)))

    async def hub_pay(request):
        req = await json_body(request)
        if not isinstance(req, dict) or not {"hub", "to", "hash", "amount"} <= set(req) \
                or not set(req) <= {"hub", "to", "hash", "amount", "expiry_blocks"}:
            raise MarketError("bad_field", 'expected {"hub", "to", "hash", "amount", "expiry_blocks"?}')
        _url(req, "hub", "the hub market's")
        extra = {"expiry_blocks": whole(req, "expiry_blocks")} if "expiry_blocks" in req else {}
        return web.json_response(market.hubs.pay(req["hub"], _hex(req["to"], "to", 32), _hex(req["hash"], "hash", 32),
                                                 whole(req, "amount"), **extra))

    async def hub_open(request):
        return web.json_response(market.hubs.on_open(await body(request)))

    async def hub_msg(request):
        return web.json_response(market.hubs.on_message(await body(request)))
    async def auction_new(request):
        return web.json_response(market.auctions.create(await json_body(request)))

    async def auction_list(request):
        return web.json_response({"auctions": market.auctions.list()})

    async def auction_status(request):
        last = request.query.get("last")
        if last is not None and (not last.isdigit() or int(last) < 1):
            raise MarketError("bad_field", "?last must be a whole number >= 1")
        return web.json_response(market.auctions.view(request.match_info["name"], int(last) if last else None))

    async def bid(request):
        return web.json_response(market.auctions.on_bid(await body(request)))

    async def bid_new(request):
        req = await json_body(request)
        known = {"url", "auction", "price", "remaining_bytes", "spend_rate", "capacity", "time_scale"}
        if not isinstance(req, dict) or not {"url", "auction"} <= set(req) <= known \
                or ("price" in req) == ("remaining_bytes" in req):
            raise MarketError("bad_field", 'expected {"url", "auction", "price" | "remaining_bytes", '
                                           '"spend_rate"?, "capacity"?, "time_scale"?}')
        _url(req, "url", "the seller market's")
        if not isinstance(req["auction"], str) or not req["auction"]:
            raise MarketError("bad_field", "auction: an auction name")
        price = req.get("price")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= MAX_UINT):
            raise MarketError("bad_field", "price: a whole number >= 0 (atomic units per KiB; 0: no bid)")
        for k in ("spend_rate", "time_scale"):
            v = req.get(k, 1.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e6:
                raise MarketError("bad_field", f"{k}: a number > 0")
        plan = BidPlan(price, whole(req, "remaining_bytes") if "remaining_bytes" in req else None,
                       float(req.get("spend_rate", 1.0)))
        capacity = whole(req, "capacity") if "capacity" in req else None
        return web.json_response(await market.auctions.bid(req["url"], req["auction"], plan, capacity,
                                                           float(req.get("time_scale", 1.0))))

    async def bid_list(request):
        return web.json_response({"bids": market.auctions.bids()})

    async def swap_status(request):
        return web.json_response(market.swap_status(_hex(request.match_info["id"], "swap id", 16)))

    app = web.Application(middlewares=[errors], client_max_size=MAX_PROOF_BYTES)     # a proof: 16 MiB
    app.router.add_get("/status", status)
    app.router.add_get("/offers", offers)
    app.router.add_get("/tokens", tokens)
    app.router.add_get("/updates", updates)
    app.router.add_post("/issuer", issuer)
    app.router.add_post("/swap", swap)
    app.router.add_post("/gossip", gossip)
    app.router.add_post("/buy", buy)
    app.router.add_post("/sell", sell)
    app.router.add_get("/swaps/{id}", swap_status)
    app.router.add_post("/channels", channel_new)
    app.router.add_get("/channels", channel_list)
    app.router.add_get("/channels/{id}", channel_status)
    app.router.add_post("/channels/{id}/stop", channel_stop)
    app.router.add_post("/channel_open", channel_open)
    app.router.add_post("/channel_pay", channel_pay)
    app.router.add_get("/hub", hub_info)
    app.router.add_post("/hub_channels", hub_new)
    app.router.add_get("/hub_channels", hub_list)
    app.router.add_get("/hub_channels/{id}", hub_status)
    app.router.add_post("/hub_channels/{id}/close", hub_close)
    app.router.add_post("/invoices", invoice)
    app.router.add_post("/invoices/{hash}/release", invoice_release)
    app.router.add_post("/hub_pay", hub_pay)
    app.router.add_post("/hub_open", hub_open)
    app.router.add_post("/hub_msg", hub_msg)
    app.router.add_post("/auctions", auction_new)
    app.router.add_get("/auctions", auction_list)
    app.router.add_get("/auctions/{name}", auction_status)
    app.router.add_post("/bid", bid)
    app.router.add_post("/bids", bid_new)
    app.router.add_get("/bids", bid_list)
    return app
