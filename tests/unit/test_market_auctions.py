"""BitTorrent Token bids between markets (node/market/auctions.py, bids.py, channels.py, api.py over HTTP on the
loopback) and a real chain node process: two bidders fund channels to the seller's auction and bid 30 and 20, a
third only says it wants the link; the higher bid wins each round and pays the losing bid x the KiB its lease
carried (the devices are FakeLeases: the test says what each lease carried), over its channel; the non-bidder gets
the optimistic slot free; a winner that stops paying is left out of the next round; forged and malformed bids are
refused over HTTP with a counted reason. The seller's rounds run on the test's clock."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp

from node.chain.keys import Key
from node.market.auctions import HOLD_OVER_S
from node.market.bids import KIB, BidPlan, make_bid
from node.market.channels import holder_key
from tests.unit import chain_helpers as H
from tests.unit.market_fakes import FakeLeases
from tests.unit.test_market_channels import SELLER_WALLET, Market, _ticks, chain  # noqa: F401  (the fixture)

B_WALLET = Key.from_seed("auction market test bidder b wallet")
AUCTION = {"name": "prio", "leases": ["up", "opt"], "slots": 1, "reserve": 5, "round_s": 10, "free_every": 2}
CAPACITY = 1_000_000


async def _post(url: str, data: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(url, data=data) as r:
        return r.status, await r.json()


def test_two_bidders_and_a_non_bidder_over_rounds(chain, tmp_path):         # noqa: F811
    chain.mine(2, payout=B_WALLET.p2pkh_script)
    chain.mine(3)                                                           # b's coinbases mature

    async def run():
        t = [1000.0]
        devices = FakeLeases(["up", "opt"])
        seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, devices).start()
        a = await Market(tmp_path, "a", chain, H.MINER).start()
        b = await Market(tmp_path, "b", chain, B_WALLET).start()
        c = await Market(tmp_path, "c", chain, Key.from_seed("auction test c")).start()
        seller.node.auctions.clock = lambda: t[0]
        everyone = (seller, a, b, c)
        try:
            seller.node.auctions.create(AUCTION)
            await a.node.auctions.bid(seller.url, "prio", BidPlan(price=30), CAPACITY)
            await b.node.auctions.bid(seller.url, "prio", BidPlan(price=20), CAPACITY)
            await c.node.auctions.bid(seller.url, "prio", BidPlan(price=0))     # interest only: no channel
            await _ticks(*everyone)
            chain.mine(1)                                                   # the fundings
            await _ticks(*everyone, n=2)
            view = seller.node.auctions.view("prio")
            ka, kb, kc = (m.node.key.hex() for m in (a, b, c))
            assert {k: v["price"] for k, v in view["bids"].items()} == {ka: 30, kb: 20, kc: 0}
            assert view["accounts"][ka]["state"] == view["accounts"][kb]["state"] == "open"
            assert view["accounts"][kc] is None

            t[0] += 10                                  # round 1 ends: round 2 auctioned
            await _ticks(seller)
            r2 = seller.node.auctions.view("prio")["rounds"][-1]
            assert (r2["round"], r2["winners"], r2["price"]) == (2, [ka], 20)
            assert (r2["optimistic"], r2["optimistic_price"]) == (kb, 5)    # auctioned among fresh bidders
            assert devices.grants == [("up", holder_key(a.node.key), 1020.0 + HOLD_OVER_S),
                                      ("opt", holder_key(b.node.key), 1020.0 + HOLD_OVER_S)]

            devices.carry("up", 100 * KIB + 500)
            devices.carry("opt", 10 * KIB)
            t[0] += 10                                  # round 2 ends: billed; round 3: the free slot
            await _ticks(seller)
            r = seller.node.auctions.view("prio")["rounds"]
            assert r[-2]["bills"] == {ka: 20 * 100, kb: 5 * 10}
            assert devices.grants[2:] == [("up", holder_key(a.node.key), 1030.0 + HOLD_OVER_S),
                                          ("opt", holder_key(c.node.key), 1030.0 + HOLD_OVER_S)]
            assert (r[-1]["winners"], r[-1]["optimistic"], r[-1]["optimistic_price"]) == ([ka], kc, 0)
            await _ticks(a, b)                          # the bidders pay what is due
            await _ticks(seller)
            accounts = seller.node.auctions.view("prio")["accounts"]
            assert (accounts[ka]["billed"], accounts[ka]["paid"], accounts[ka]["owed"]) == (2000, 2000, 0)
            assert (accounts[kb]["billed"], accounts[kb]["paid"]) == (50, 50)
            cid = accounts[ka]["channel"]
            assert a.node.channels.status(cid)["paid"] == 2000

            # a stops paying: its bill of round 3 is unpaid a round later, so round 5 is b's at the reserve
            a.node.channels.stop(cid)
            devices.carry("up", 7 * KIB)
            t[0] += 10
            await _ticks(seller, a, b)
            assert seller.node.auctions.view("prio")["rounds"][-2]["bills"] == {ka: 20 * 7, kc: 0}
            # nobody is new for the optimistic slot: it is withdrawn from c at once
            assert devices.grants[-1] == ("opt", holder_key(c.node.key), 1030.0)
            t[0] += 10
            await _ticks(seller)
            r5 = seller.node.auctions.view("prio")["rounds"][-1]
            assert r5["ineligible"] == {ka: "unpaid"} and (r5["winners"], r5["price"]) == ([kb], 5)

            # bad bids over HTTP: refused with a counted reason
            good = make_bid(a.secret, seller.node.key, "prio", r5["round"] + 1, 99)
            forged = dataclasses.replace(good, price=1).encode()
            assert await _post(f"{seller.url}/bid", forged) == \
                (400, {"error": "bad_signature", "detail": "the bid is not signed by its bidder"})
            status, answer = await _post(f"{seller.url}/bid", b'{"v":1,"type":"bid","price":-1}')
            assert (status, answer["error"]) == (400, "malformed")
            status, answer = await _post(f"{seller.url}/bid", make_bid(a.secret, seller.node.key, "prio", 2,
                                                                        99).encode())
            assert (status, answer["error"]) == (400, "old_round")
            st = seller.node.status()
            assert st["rejected"]["api_bad_signature"] == st["rejected"]["api_malformed"] == 1
            assert seller.node.auctions.view("prio")["rejected"]["bad_signature"] == 1
            assert st["bid_rejected"] == {"malformed": 1}
            assert json.loads(json.dumps(st["auctions"]))[0]["name"] == "prio"
        finally:
            for m in everyone:
                await m.stop()
    asyncio.run(run())


BAD_REQUESTS = [
    ("POST", "/auctions", b"{", "bad_json"),
    ("POST", "/auctions", dict(AUCTION, slots=2), "bad_field"),                 # 2 slots need 3 leases
    ("POST", "/auctions", dict(AUCTION, name="p2", leases=["gone", "up"]), "no_device"),
    ("POST", "/auctions", dict(AUCTION, name="p3"), "busy"),                    # its leases are in prio
    ("POST", "/auctions", AUCTION, "duplicate_token"),                          # after the first one below
    ("GET", "/auctions/other", None, "unknown_auction"),
    ("GET", "/auctions/prio?last=0", None, "bad_field"),
    ("POST", "/bid", b"", "bad_json"),
    ("POST", "/bid", b'{"v":1,"type":"bid"}', "malformed"),
    ("POST", "/bids", {"url": "http://x", "auction": "prio"}, "bad_field"),
    ("POST", "/bids", {"url": "http://x", "auction": "prio", "price": 1, "remaining_bytes": 9}, "bad_field"),
    ("POST", "/bids", {"url": "http://x", "auction": "prio", "price": -1}, "bad_field"),
    ("POST", "/bids", {"url": "http://x", "auction": "prio", "price": 1, "spend_rate": 0}, "bad_field"),
    ("POST", "/bids", {"url": "ftp://x", "auction": "prio", "price": 1}, "bad_field"),
]


def test_bad_auction_requests_are_refused_by_reason(chain, tmp_path):        # noqa: F811
    async def run():
        m = await Market(tmp_path, "s1", chain, SELLER_WALLET, FakeLeases(["up", "opt"])).start()
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(m.url + "/auctions", data=json.dumps(AUCTION).encode()) as r:
                    assert r.status == 200, await r.text()
                for method, path, body, _ in BAD_REQUESTS:
                    data = json.dumps(body).encode() if isinstance(body, dict) else body
                    async with s.request(method, m.url + path, data=data) as r:
                        out.append((r.status, (await r.json())["error"]))
                # a bid at the reserve or more with no channel and no capacity to open one
                bids = {"url": m.url, "auction": "prio", "price": 5}
                async with s.post(m.url + "/bids", data=json.dumps(bids).encode()) as r:
                    out.append((r.status, (await r.json())["error"]))
        finally:
            await m.stop()
        return out
    assert asyncio.run(run()) == [(400, code) for *_, code in BAD_REQUESTS] + [(400, "no_channel")]
