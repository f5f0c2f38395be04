"""Payments through a hub (node/market/hubs.py) between three markets (market_node.py, api.py over HTTP on the
loopback) and a real chain node process: the payer funds a hub channel to the hub, the hub one to the payee; HTLCs
are forwarded hop by hop and settled by the payee's preimage; a restarted hub carries on; forged and replayed
messages are refused by reason; the channels close on chain with exactly what was paid; a payee that goes down
with an HTLC pending has it cancelled on both hops at its expiry."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from node.chain.keys import Key
from node.market import hub as hb
from node.market.hub_chain import HubChainState, chain_state
from node.market.market_node import MarketError
from tests.unit import chain_helpers as H
from node.market.channels import holder_key
from tests.unit.market_fakes import FakeLeases
from tests.unit.test_market_channels import (  # noqa: F401  (chain: the fixture)
    OFFER, SELLER_WALLET, UNIT, UNIT_PRICE, Market, _coin, _ticks, chain)

FEE, HUB_FEE, AMOUNT = 10_000, 2_000, 1_000_000
CAP_IN, CAP_OUT = 20 * AMOUNT, 10 * AMOUNT
HUB_WALLET = Key.from_seed("hub market test hub wallet")
PAYEE_WALLET = Key.from_seed("hub market test payee wallet")
OTHER_SK = bytes(range(200, 232))                       # a market key of no party


async def _three(chain, tmp_path):
    chain.mine(1, payout=HUB_WALLET.p2pkh_script)
    chain.mine(3)                                       # the hub's coinbase matures
    payer = await Market(tmp_path, "p1", chain, H.MINER).start()
    hub = await Market(tmp_path, "h1", chain, HUB_WALLET, hub=True, hub_fee=HUB_FEE).start()
    payee = await Market(tmp_path, "q1", chain, PAYEE_WALLET).start()
    cin = await payer.node.hubs.open(hub.url, CAP_IN, 60)
    cout = await hub.node.hubs.open(payee.url, CAP_OUT, 60)
    chain.mine(1)
    await _ticks(payer, hub, payee)
    await _ticks(payer, hub, payee)
    for m, c in ((payer, cin), (hub, cin), (hub, cout), (payee, cout)):
        assert m.node.hubs.status(c)["state"] == "open", m.node.hubs.status(c)
    return payer, hub, payee, cin, cout


async def _pay(payer, hub, payee, hold=False):
    inv = payee.node.hubs.invoice(AMOUNT, hold)
    p = payer.node.hubs.pay(hub.url, bytes.fromhex(inv["key"]), bytes.fromhex(inv["hash"]), AMOUNT + HUB_FEE)
    await _ticks(payer, hub, payee, n=4)
    return payer.node.hubs.payments[bytes.fromhex(p["hash"])]


def test_payments_through_the_hub_settle_and_close_on_chain_with_what_was_paid(chain, tmp_path):
    async def run():
        payer, hub, payee, cin, cout = await _three(chain, tmp_path)
        try:
            for _ in range(3):
                assert (await _pay(payer, hub, payee))["state"] == "settled"
            views = {(m.node.name, c): m.node.hubs.status(c) for m, c in
                     ((payer, cin), (hub, cin), (hub, cout), (payee, cout))}
            assert {k: (v["seq"], v["paid"], v["pending"]) for k, v in views.items()} == {
                ("p1", cin): (6, 3 * (AMOUNT + HUB_FEE), 0), ("h1", cin): (6, 3 * (AMOUNT + HUB_FEE), 0),
                ("h1", cout): (6, 3 * AMOUNT, 0), ("q1", cout): (6, 3 * AMOUNT, 0)}

            # a restarted hub carries on where it was (its journal replayed) and routes the next payment
            await hub.stop()
            hub = await Market(tmp_path, "h1", chain, HUB_WALLET, port=hub.port, hub=True, hub_fee=HUB_FEE).start()
            assert {c: hub.node.hubs.status(c) for c in (cin, cout)} == {c: views[("h1", c)] for c in (cin, cout)}
            assert hub.node.hubs.info()["outbox"] == {payer.url: 0, payee.url: 0}
            assert (await _pay(payer, hub, payee))["state"] == "settled"

            # forged and replayed messages are refused by reason, and change nothing
            c = hub.node.hubs.channels[cin]
            latest = hub.node.hubs.end(c).latest
            sent = HubChainState.decode(chain_state(c.terms, latest.encode(), H.MINER))     # what the payer sent
            tampered = dataclasses.replace(sent, seq=latest.seq + 1, paid=latest.paid + AMOUNT)
            preimage = next(iter(payee.node.hubs.invoices.values()))["preimage"]
            forged_fulfill = hb.HtlcFulfill(bytes.fromhex(cin), b"", hb.sha256(preimage), preimage).signed(OTHER_SK)
            for m, msg, code in ((hub, sent.encode(), "replayed"), (hub, tampered.encode(), "bad_close_sig"),
                                 (payer, forged_fulfill.encode(), "bad_signature"),
                                 (hub, b'{"v":1,"type":"hub_open"}', "malformed")):
                with pytest.raises(MarketError) as e:
                    m.node.hubs.on_message(msg)
                assert e.value.code == code
            assert hub.node.hubs.info()["rejected"] == {"replayed": 1, "bad_close_sig": 1, "malformed": 1}
            assert payer.node.hubs.info()["rejected"] == {"bad_signature": 1}
            assert hub.node.hubs.status(cin)["seq"] == payer.node.hubs.status(cin)["seq"] == 8

            # the payee and the hub close (each the receiver of one channel): on chain, each gets what was paid
            payee.node.hubs.close(cout)
            hub.node.hubs.close(cin)
            await _ticks(payer, hub, payee)
            chain.mine(1)
            await _ticks(payer, hub, payee)
            v = {(m.node.name, c): m.node.hubs.status(c) for m, c in
                 ((payer, cin), (hub, cin), (hub, cout), (payee, cout))}
            assert {x["state"] for x in v.values()} == {"closed"}
            t_in, t_out = v[("h1", cin)]["close_txid"], v[("h1", cout)]["close_txid"]
            assert v[("p1", cin)]["close_txid"] == t_in and v[("q1", cout)]["close_txid"] == t_out
            assert _coin(chain, PAYEE_WALLET, t_out) == 4 * AMOUNT
            assert _coin(chain, HUB_WALLET, t_out) == CAP_OUT - 4 * AMOUNT
            assert _coin(chain, HUB_WALLET, t_in) == 4 * (AMOUNT + HUB_FEE)
            assert _coin(chain, H.MINER, t_in) == CAP_IN - 4 * (AMOUNT + HUB_FEE)
        finally:
            for m in (payer, hub, payee):
                await m.stop()
    asyncio.run(run())


def test_a_payee_down_with_an_htlc_pending_has_it_cancelled_on_both_hops_at_its_expiry(chain, tmp_path):
    async def run():
        payer, hub, payee, cin, cout = await _three(chain, tmp_path)
        try:
            p = await _pay(payer, hub, payee, hold=True)             # the payee holds it: pending on both hops
            assert p["state"] == "pending"
            assert hub.node.hubs.status(cout)["pending"] == payee.node.hubs.status(cout)["pending"] == 1
            await payee.stop()
            expiry_out = p["expiry"] - hub.node.hubs.hub.margin
            while chain.chain.height < expiry_out:
                chain.mine(1)
                await _ticks(payer, hub)
                assert p["state"] == "pending" or chain.chain.height >= expiry_out
            await _ticks(payer, hub, n=2)
            assert (p["state"], p["reason"]) == ("failed", "expired")
            assert hub.node.hubs.status(cin)["pending"] == payer.node.hubs.status(cin)["pending"] == 0
            assert hub.node.hubs.status(cout)["pending"] == 0
            assert hub.node.hubs.info()["outbox"][payee.url] == 1      # the cancel waits for the payee
            payee = await Market(tmp_path, "q1", chain, PAYEE_WALLET, port=payee.port).start()
            assert payee.node.hubs.status(cout)["pending"] == 1         # as it was when it went down
            with pytest.raises(MarketError):
                payee.node.hubs.release(bytes.fromhex(p["hash"]))       # too late to be paid
            await _ticks(payer, hub, payee, n=2)
            assert payee.node.hubs.status(cout)["pending"] == 0 and payee.node.hubs.status(cout)["paid"] == 0
            assert hub.node.hubs.info()["outbox"][payee.url] == 0
            assert hub.node.hubs.status(cin)["paid"] == payer.node.hubs.status(cin)["paid"] == 0
        finally:
            for m in (payer, hub, payee):
                await m.stop()
    asyncio.run(run())


@pytest.mark.parametrize("path, body, code", [
    ("/hub_channels", {"url": "http://x"}, "bad_field"),
    ("/hub_channels", {"url": "http://x", "capacity": 0}, "bad_field"),
    ("/invoices", {"amount": 1, "hold": 1}, "bad_field"),
    ("/hub_pay", {"hub": "http://x", "to": "00" * 32, "hash": "00" * 32, "amount": 5}, "no_channel"),
    ("/hub_open", {"open": "x"}, "bad_field"),
    ("/hub_msg", b'{"v":1,"type":"swap_propose"}', "malformed"),
    ("/hub_channels/" + "00" * 16 + "/close", b"", "unknown_channel"),
    ("/invoices/" + "00" * 32 + "/release", b"", "unknown_invoice"),
])
def test_bad_hub_requests_are_refused_by_reason(chain, tmp_path, path, body, code):
    import aiohttp

    async def run():
        m = await Market(tmp_path, "q1", chain, PAYEE_WALLET).start()
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            async with aiohttp.ClientSession() as s, s.post(m.url + path, data=data) as r:
                return r.status, await r.json()
        finally:
            await m.stop()
    status, answer = asyncio.run(run())
    assert (status, answer["error"]) == (400, code), answer


def test_a_lease_paid_by_the_unit_through_the_hub_is_withdrawn_one_unit_after_the_buyer_stops(chain, tmp_path):
    """channels.py's pay-as-you-go lease with each unit paid through the hub (open ... via): the seller grants the
    lease, draws an invoice per unit it delivers, counts a unit paid once it fulfilled that invoice's HTLC, and
    withdraws the lease one unit after the payments stop."""
    async def run():
        devices = FakeLeases(["lease1"])
        chain.mine(1, payout=HUB_WALLET.p2pkh_script)
        chain.mine(3)
        buyer = await Market(tmp_path, "b1", chain, H.MINER).start()
        hub = await Market(tmp_path, "h1", chain, HUB_WALLET, hub=True, hub_fee=HUB_FEE).start()
        seller = await Market(tmp_path, "s1", chain, SELLER_WALLET, devices, [OFFER]).start()
        try:
            await buyer.node.hubs.open(hub.url, 10 * (UNIT_PRICE + HUB_FEE), 60)
            cout = await hub.node.hubs.open(seller.url, 10 * UNIT_PRICE, 60)
            chain.mine(1)
            await _ticks(buyer, hub, seller, n=2)
            cid = await buyer.node.channels.open(seller.url, OFFER["token"], 6, UNIT, via=hub.url)
            await _ticks(buyer, hub, seller, n=4)
            s = seller.node.channels.status(cid)
            assert (s["state"], s["via"], s["delivered"], s["paid_units"], s["invoices"]) == \
                ("open", hub.url, 1, 1, []), s
            assert devices.grants == [("lease1", holder_key(buyer.node.key), seller.node.offer(OFFER["token"])
                                       ["end"])]
            for n in range(2, 4):
                devices.carry("lease1", UNIT)
                await _ticks(seller, buyer, hub, seller, buyer, hub, seller)
                s = seller.node.channels.status(cid)
                assert (s["delivered"], s["paid_units"], s["violations"]) == (n, n, 0), s
            b = buyer.node.channels.status(cid)
            assert (b["paid_units"], b["paid"]) == (3, 3 * UNIT_PRICE), b
            assert hub.node.hubs.status(cout)["paid"] == 3 * UNIT_PRICE
            buyer.node.channels.stop(cid)
            devices.carry("lease1", UNIT)
            await _ticks(seller, buyer, hub, seller, buyer, hub, seller)
            s = seller.node.channels.status(cid)
            assert (s["delivered"], s["paid_units"], s["state"]) == (4, 3, "open"), s       # one unit owed
            devices.carry("lease1", UNIT)
            await _ticks(seller, buyer, hub, seller)
            s = seller.node.channels.status(cid)
            assert (s["state"], s["reason"], s["paid_units"], s["violations"]) == ("closed", "buyer_behind", 3, 0), s
            assert devices.grants[-1][2] <= time.time()                         # withdrawn: the free tier again
            await _ticks(buyer)
            assert buyer.node.channels.status(cid)["state"] == "closed"
            assert hub.node.hubs.status(cout)["paid"] == 3 * UNIT_PRICE       # what the seller's hub channel holds
        finally:
            for m in (buyer, hub, seller):
                await m.stop()
    asyncio.run(run())
