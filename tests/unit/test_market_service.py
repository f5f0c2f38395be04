"""The market services for real (node/market/service.py, market_node.py, api.py): a seller device and a buyer as
processes on the loopback, a real chain node process behind them; a token bought by atomic swap with real chain
transactions, a swap whose seller dies refunded, and bad HTTP bodies refused by reason."""
from __future__ import annotations

import time

import pytest

from node.chain.keys import Key
from tests.unit import chain_helpers as H
from tests.unit.market_chain_node import ChainNodeProcess
from tests.unit.market_services import MarketProcess

PRICE = 50_000_000
FEE = 10_000
OFFER = {"token": "s1.lease1", "lease": "lease1", "link": "s1--b1", "kbps": 2000, "term_s": 600, "price": PRICE}


@pytest.fixture
def world(tmp_path):
    chain = ChainNodeProcess(tmp_path / "chain")
    procs = []
    try:
        chain.mine(4)                   # the buyer (the test miner's key) has mature coinbases
        seller = MarketProcess(tmp_path / "s1", "s1", chain, Key.from_seed("market test seller wallet"), [OFFER])
        buyer = MarketProcess(tmp_path / "b1", "b1", chain, H.MINER)
        procs += [seller, buyer]
        yield chain, seller, buyer
    finally:
        for p in procs:
            p.stop()
        chain.stop()


def _mine_until(chain, done, blocks: int, every: float = 0.4):
    for _ in range(blocks):
        got = done()
        if got:
            return got
        chain.mine(1)
        time.sleep(every)
    raise AssertionError(f"not done after {blocks} blocks")


def _owner(market, token):
    return next(t["owner"] for t in market.get("/tokens")["tokens"] if t["token"] == token)


def test_a_token_bought_by_atomic_swap_between_two_market_processes(world):
    chain, seller, buyer = world
    _mine_until(chain, lambda: seller.get("/offers")["offers"], 5)
    offer = seller.get("/offers")["offers"][0]
    assert {k: offer[k] for k in ("token", "lease", "link", "kbps", "price")} == \
        {k: OFFER[k] for k in ("token", "lease", "link", "kbps", "price")}
    assert offer["end"] - offer["start"] == 600 and offer["issuer"] == seller.key
    before = buyer.get("/status")
    sid = buyer.post("/buy", {"url": seller.url, "issuer": seller.key, "token": OFFER["token"],
                              "price": PRICE})["swap"]
    done = _mine_until(chain, lambda: (s := buyer.get(f"/swaps/{sid}"))["outcome"] and s, 40)
    assert done["outcome"] == "completed", done
    _mine_until(chain, lambda: seller.get(f"/swaps/{sid}")["outcome"], 10)
    assert seller.get(f"/swaps/{sid}")["outcome"] == "completed"
    # the issuer chain says the buyer owns the token, in the seller's and the buyer's replicas
    assert _owner(seller, OFFER["token"]) == buyer.key == _owner(buyer, OFFER["token"])
    assert seller.get("/offers")["offers"] == []
    # the chain says the seller was paid the price less its claim fee
    sw = chain.rpc(f"/coins?address={seller.wallet.address}")["balance"]
    assert sw["spendable"] + sw["immature"] == PRICE - FEE
    assert before["counters"] == {} and buyer.get("/status")["rejected"] == {}


def test_a_swap_whose_seller_dies_is_refunded_and_the_token_unlocks(world):
    chain, seller, buyer = world
    _mine_until(chain, lambda: seller.get("/offers")["offers"], 5)
    # the buyer's claimable balance before: everything it has that is spendable at the current height
    sid = buyer.post("/buy", {"url": seller.url, "issuer": seller.key, "token": OFFER["token"],
                              "price": PRICE})["swap"]
    state = _mine_until(chain, lambda: (s := buyer.get(f"/swaps/{sid}"))["phase"] == "funded" and s, 10)
    seller.kill()                       # before it can claim: the buyer must get its PKT back
    done = _mine_until(chain, lambda: (s := buyer.get(f"/swaps/{sid}"))["outcome"] and s, 40)
    assert done["outcome"] == "refunded", done
    htlc = state["outpoint"]
    assert buyer.get("/status")["counters"].get("RefundHtlc_sent", 0) >= 1
    coins = chain.rpc(f"/coins?address={buyer.wallet.address}")["coins"]
    assert not any(f"{c['txid']}:{c['index']}" == htlc for c in coins)      # spent, by the refund
    refund_values = [c["value"] for c in coins if c["value"] == PRICE - FEE]
    assert refund_values, "the refund output is the buyer's"
    # the restarted seller's issuer (its chain read back from disk) unlocks the token at the lock timeout
    seller.start()
    _mine_until(chain, lambda: seller.get("/offers")["offers"], state["lock_timeout"] - chain.chain.height + 6)
    assert _owner(seller, OFFER["token"]) == seller.key


@pytest.mark.parametrize("method, path, body, code", [
    ("POST", "/buy", b"not json", "bad_json"),
    ("POST", "/buy", b'{"url": "http://x", "issuer": "00", "token": "t", "price": 1}', "bad_field"),
    ("POST", "/buy", b'{"url": "ftp://x", "issuer": "' + b"00" * 32 + b'", "token": "t", "price": 1}', "bad_field"),
    ("POST", "/buy", b'{"url": "http://x", "issuer": "' + b"00" * 32 + b'", "token": "t", "price": true}',
     "bad_field"),
    ("POST", "/swap", b"", "bad_json"),
    ("POST", "/swap", b'{"v": 1, "type": "swap_propose"}', "malformed"),
    ("POST", "/swap", b'{"v": 1, "type": "update"}', "malformed"),
    ("POST", "/issuer", b"[1, 2]", "malformed"),
    ("GET", "/updates?issuer=zz", None, "bad_field"),
    ("GET", "/updates?issuer=" + "00" * 32 + "&from=-1", None, "bad_field"),
    ("GET", "/swaps/" + "00" * 16, None, "unknown_swap"),
])
def test_bad_requests_are_refused_by_reason_and_counted(world, method, path, body, code):
    _, seller, _ = world
    status, answer = seller.request(method, path, body)
    assert (status, answer["error"]) == (400, code), answer
    assert seller.get("/status")["rejected"][f"api_{code}"] == 1
