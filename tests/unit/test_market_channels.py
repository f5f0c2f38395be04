"""Pay-as-you-go leases over payment channels (node/market/channels.py) between two markets (market_node.py, api.py
over HTTP on the loopback) and a real chain node process: the buyer funds and opens a channel, the seller grants the
lease and delivers unit after unit while the payments keep up (the devices that carry the lease are FakeLeases: the
test says what the lease carried), the exposure invariant checked at every update; the buyer stops paying, the
seller withdraws the lease one unit later and closes on chain with the latest payment; a restarted seller carries
on; a seller that vanishes is refunded after the timelock; bad opens are refused by reason."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from node.chain.keys import Key
from node.cjdns.keys import Identity
from node.market.api import make_app
from node.market.chain_client import ChainClient
from node.market.channels import holder_key, min_unit_price
from node.market.market_node import MarketError, MarketNode
from tests.unit import chain_helpers as H
from tests.unit.market_chain_node import ChainNodeProcess, free_port
from tests.unit.market_fakes import FakeLeases

PRICE, KBPS, TERM_S = 50_000_000, 2000, 600
OFFER = {"token": "s1.lease1", "lease": "lease1", "link": "s1--b1", "kbps": KBPS, "term_s": TERM_S, "price": PRICE}
UNIT = 100_000                          # bytes
UNIT_PRICE = min_unit_price(PRICE, KBPS, TERM_S, UNIT)
FEE = 10_000
SELLER_WALLET = Key.from_seed("channel market test seller wallet")


class Market:
    """A MarketNode with its HTTP API on the loopback."""

    def __init__(self, tmp, name, chain, wallet, devices=None, offers=(), refund_blocks=None, port=None, **node_kw):
        self.args = (tmp / name, name, chain, wallet, devices, offers, refund_blocks)
        self.node_kw = node_kw                  # more MarketNode settings (hub, hub_fee)
        self.secret = Identity.from_seed(f"channel test {name}".encode(), 0).private_key
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.devices = devices

    async def start(self):
        directory, name, chain, wallet, devices, offers, refund_blocks = self.args
        self.node = MarketNode(name, self.secret, wallet, ChainClient(chain.url, chain.params), directory,
                               offers=list(offers), lease_devices=devices, refund_blocks=refund_blocks,
                               url=self.url, **self.node_kw)
        await self.node.start(time.time())
        self.runner = web.AppRunner(make_app(self.node))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self):
        await self.runner.cleanup()
        await self.node.close()


@pytest.fixture
def chain(tmp_path):
    c = ChainNodeProcess(tmp_path / "chain")
    try:
        c.mine(4)                       # the buyer (the test miner's key) has mature coinbases
        yield c
    finally:
        c.stop()


async def _ticks(*markets, n=1):
    for _ in range(n):
        for m in markets:
            await m.node.tick()


def _coin(chain, wallet, txid):
    coins = chain.rpc(f"/coins?address={wallet.address}")["coins"]
    return next((c["value"] for c in coins if c["txid"] == txid), None)


async def _open(chain, seller, buyer, units):
    cid = await buyer.node.channels.open(seller.url, OFFER["token"], units, UNIT)
    await _ticks(seller, buyer)
    assert buyer.node.channels.status(cid)["state"] == "opening"     # the funding is not mined yet
    chain.mine(1)
    await _ticks(seller, buyer)
    return cid


def test_a_lease_paid_by_the_unit_is_withdrawn_one_unit_after_the_buyer_stops_and_closed_on_chain(chain, tmp_path):
    async def run():
        devices = FakeLeases(["lease1"])
        seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, devices, [OFFER]).start()
        buyer = await Market(tmp_path, "b1", chain, H.MINER).start()
        try:
            cid = await _open(chain, seller, buyer, units=10)
            s = seller.node.channels.status(cid)
            assert (s["state"], s["delivered"], s["paid_units"]) == ("open", 1, 1)      # unit 1 paid at once
            assert s["capacity"] == 10 * UNIT_PRICE + FEE and s["unit_price"] == UNIT_PRICE
            assert devices.grants == [("lease1", holder_key(buyer.node.key), seller.node.offer(OFFER["token"])
                                       ["end"])]
            # the lease carries a unit per round: the seller lets the next start, the buyer pays it
            for n in range(2, 5):
                devices.carry("lease1", UNIT)
                await _ticks(seller, buyer)
                s = seller.node.channels.status(cid)
                assert (s["metered"], s["delivered"], s["paid_units"], s["state"]) == (n - 1, n, n, "open")
            assert buyer.node.channels.status(cid)["paid"] == 4 * UNIT_PRICE
            assert (s["checks"], s["violations"]) == (7, 0)         # 4 payments and 3 meterings, all within

            # a seller that restarts carries on where it was
            await seller.stop()
            seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, devices, [OFFER], port=seller.port).start()
            unmetered = {"checks", "metered"}                 # counted again from the next tick
            assert {k: v for k, v in seller.node.channels.status(cid).items() if k not in unmetered} == \
                {k: v for k, v in s.items() if k not in unmetered}

            # the buyer stops paying: one more unit starts (4 is paid), then the seller withdraws
            buyer.node.channels.stop(cid)
            devices.carry("lease1", UNIT)
            await _ticks(seller, buyer)
            s = seller.node.channels.status(cid)
            assert (s["delivered"], s["paid_units"], s["exposure"], s["state"]) == (5, 4, UNIT_PRICE, "open")
            devices.carry("lease1", UNIT)
            await _ticks(seller, buyer)
            s = seller.node.channels.status(cid)
            assert (s["state"], s["reason"], s["metered"], s["paid_units"]) == ("closing", "buyer_behind", 5, 4)
            assert devices.grants[-1][:2] == ("lease1", holder_key(buyer.node.key))
            assert devices.grants[-1][2] <= time.time()                         # expired: the free tier again
            assert (s["checks"], s["violations"]) == (2, 0)         # since the restart
            assert seller.node.status()["channel_counters"] == {"withdrawn_buyer_behind": 1, "closing_sent": 1}
            chain.mine(1)
            await _ticks(seller, buyer)
            s, b = seller.node.channels.status(cid), buyer.node.channels.status(cid)
            assert s["state"] == b["state"] == "closed" and s["close_txid"] == b["close_txid"]
            # on the chain: the seller got exactly the 4 units paid, the buyer the rest less the fee
            assert _coin(chain, SELLER_WALLET, s["close_txid"]) == 4 * UNIT_PRICE
            assert _coin(chain, H.MINER, s["close_txid"]) == 6 * UNIT_PRICE
            # a payment after the close is refused by reason
            with pytest.raises(MarketError) as e:
                seller.node.channels.on_pay(buyer.node.channels.channels[cid].payer.unit_verified())
            assert e.value.code == "closed"
        finally:
            await seller.stop()
            await buyer.stop()
    asyncio.run(run())


def test_a_buyer_whose_seller_vanishes_takes_its_refund_after_the_timelock(chain, tmp_path):
    async def run():
        seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, FakeLeases(["lease1"]), [OFFER]).start()
        buyer = await Market(tmp_path, "b1", chain, H.MINER, refund_blocks=8).start()
        try:
            cid = await _open(chain, seller, buyer, units=3)
            assert seller.node.channels.status(cid)["state"] == "open"
            await seller.stop()                                             # gone, without closing
            b = buyer.node.channels.status(cid)
            for _ in range(b["refund_height"] - chain.chain.height - 1):
                chain.mine(1)
                await _ticks(buyer)
                assert buyer.node.channels.status(cid)["state"] == "open"          # not before the timelock
            chain.mine(1)
            await _ticks(buyer)
            assert buyer.node.channels.status(cid)["state"] == "refunding"
            chain.mine(1)
            await _ticks(buyer)
            b = buyer.node.channels.status(cid)
            assert b["state"] == "refunded"
            assert _coin(chain, H.MINER, b["close_txid"]) == b["capacity"] - FEE
        finally:
            await buyer.stop()
    asyncio.run(run())


def test_bad_channel_opens_are_refused_by_reason(chain, tmp_path):
    async def run():
        seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, FakeLeases(["lease1"]), [OFFER]).start()
        buyer = await Market(tmp_path, "b1", chain, H.MINER).start()
        try:
            with pytest.raises(MarketError) as e:
                await buyer.node.channels.open(seller.url, OFFER["token"], 3, UNIT, UNIT_PRICE - 1)
            assert e.value.code == "price_too_low"
            with pytest.raises(MarketError) as e:
                await buyer.node.channels.open(seller.url, "s1.nothing", 3, UNIT)
            assert e.value.code == "unknown_token"
            cid = await buyer.node.channels.open(seller.url, OFFER["token"], 3, UNIT)
            c = buyer.node.channels.channels[cid]
            body = {"open": c.terms.open.encode().decode(), "payer_pk": c.terms.payer_pk.hex(), "fee": FEE,
                    "token": OFFER["token"], "funding_tx": c.funding_tx}

            async def refused(changes):
                with pytest.raises(MarketError) as e:
                    await seller.node.channels.on_open(json.dumps(dict(body, **changes)).encode())
                return e.value.code
            assert await refused({}) == "unconfirmed"
            chain.mine(1)
            await _ticks(seller)
            assert await refused({"fee": FEE - 1}) == "fee_too_low"
            assert await refused({"token": "s1.other"}) == "unknown_token"
            assert await refused({"funding_tx": c.funding_tx[:-2] + "01"}) == "bad_funding"    # another txid
            assert await refused({"open": body["open"].replace('"capacity":', '"capacity":1')}) == "bad_signature"
            with pytest.raises(MarketError) as e:
                await seller.node.channels.on_open(b"not json")
            assert e.value.code == "bad_json"
            assert (await seller.node.channels.on_open(json.dumps(body).encode()))["state"] == "open"
            assert (await seller.node.channels.on_open(json.dumps(body).encode()))["delivered"] == 1   # again
            cid2 = await buyer.node.channels.open(seller.url, OFFER["token"], 3, UNIT)
            chain.mine(1)
            await _ticks(seller, buyer)
            assert buyer.node.channels.status(cid2)["state"] == "refused"       # the token is in a channel
            assert buyer.node.channels.status(cid2)["reason"].startswith("busy")
        finally:
            await seller.stop()
            await buyer.stop()
    asyncio.run(run())


def test_agent_leases_sum_both_ends_and_grant_at_both(tmp_path):
    """lease_devices.AgentLeases over the agents' control protocol (one JSON line each way), here two small
    socket servers answering as node/tun_switch/lease_plane.py does."""
    import socket
    import threading

    from node.market.lease_devices import AgentLeases, LeaseDeviceError

    seen = []

    def agent(path, ingress):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(str(path))
        srv.listen()

        def serve():
            while True:
                conn, _ = srv.accept()
                with conn:
                    req = json.loads(conn.makefile().readline())
                    seen.append((path.name, req))
                    answer = {"ok": True, "ingress": ingress} if req["cmd"] == "leases" else \
                        {"ok": False, "error": "no paid lease 'x'"} if req["lease"] == "x" else {"ok": True}
                    conn.sendall(json.dumps(answer).encode() + b"\n")
        threading.Thread(target=serve, daemon=True).start()
    a, b = tmp_path / "a.sock", tmp_path / "b.sock"
    agent(a, {"l1/up": {"bytes": 1000}, "l1/free": {"bytes": 7}})
    agent(b, {"l1/up": {"bytes": 234}})
    devices = AgentLeases({"up": [str(a), str(b)], "x": [str(a)]})
    assert asyncio.run(devices.carried("up")) == 1234
    asyncio.run(devices.grant("up", "key.k", 99.0))
    grants = [(name, r) for name, r in seen if r["cmd"] == "lease_grant"]
    assert grants == [(n, {"cmd": "lease_grant", "lease": "up", "holder": "key.k", "expires_at": 99.0})
                      for n in ("a.sock", "b.sock")]
    with pytest.raises(LeaseDeviceError, match="no paid lease"):
        asyncio.run(devices.grant("x", "key.k", 99.0))
    with pytest.raises(LeaseDeviceError, match="no device carries lease 'nope'"):
        asyncio.run(devices.carried("nope"))
    with pytest.raises(LeaseDeviceError, match="gone.sock"):
        asyncio.run(AgentLeases({"up": [str(tmp_path / "gone.sock")]}).carried("up"))


@pytest.mark.parametrize("method, path, body, code", [
    ("POST", "/channels", b"{", "bad_json"),
    ("POST", "/channels", {"url": "http://x", "token": "t"}, "bad_field"),
    ("POST", "/channels", {"url": "ftp://x", "token": "t", "units": 1, "unit_bytes": 1}, "bad_field"),
    ("POST", "/channels", {"url": "http://x", "token": "t", "units": 0, "unit_bytes": 1}, "bad_field"),
    ("POST", "/channels", {"url": "http://x", "token": "t", "units": 1, "unit_bytes": 1, "extra": 1}, "bad_field"),
    ("GET", "/channels/00", None, "bad_field"),
    ("GET", "/channels/" + "00" * 16, None, "unknown_channel"),
    ("POST", "/channels/" + "00" * 16 + "/stop", b"", "unknown_channel"),
    ("POST", "/channel_open", {"open": "x"}, "bad_field"),
    ("POST", "/channel_pay", b'{"v":1}', "malformed"),
])
def test_bad_channel_requests_are_refused_by_reason(chain, tmp_path, method, path, body, code):
    import aiohttp

    async def run():
        m = await Market(tmp_path, "s1", chain, SELLER_WALLET, FakeLeases(["lease1"]), [OFFER]).start()
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            async with aiohttp.ClientSession() as s, s.request(method, m.url + path, data=data) as r:
                return r.status, await r.json()
        finally:
            await m.stop()
    status, answer = asyncio.run(run())
    assert (status, answer["error"]) == (400, code), answer
