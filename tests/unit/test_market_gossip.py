"""Push gossip between market nodes (node/market/market_node.py, api.py's POST /gossip): three MarketNodes with
their real HTTP APIs on the loopback over one in-memory PKT chain (market_fakes.FakeChain). A double-issuing
issuer is discredited by the peer that got both of its updates, and a peer that saw only one verifies the proof on
its own and refuses the issuer from then on."""
import asyncio
import dataclasses
import os
import sys
import time

import pytest
from aiohttp import web

from node.chain.keys import Key
from node.market import faults
from node.market.api import make_app
from node.market.market_node import MarketError, MarketNode
from node.market.token_chain import make_update

sys.path.insert(0, os.path.dirname(__file__))
from market_chain_node import free_port  # noqa: E402
from market_fakes import FakeChain, LaggingView  # noqa: E402

OFFER = {"token": "f.lease1", "lease": "lease1", "link": "a--b", "kbps": 1000, "term_s": 600, "price": 100}


class FakeChainClient:
    """What MarketNode needs of chain_client.ChainClient: a ChainView to read, nothing to sync."""

    def __init__(self, view):
        self.index = view

    async def sync(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Markets:
    """Markets F (the issuer), X and Y, each peering with the two others (F's first peer is X), served over HTTP."""

    def __init__(self, tmp_path, double_issue=True, y_lag=0):
        self.chain = FakeChain({})
        self.chain.mine(6)
        self.ports = {n: free_port() for n in "FXY"}
        self.url = {n: f"http://127.0.0.1:{p}" for n, p in self.ports.items()}
        self.y_view = LaggingView(self.chain, y_lag)
        self.m = {}
        for n in "FXY":
            view = self.y_view if n == "Y" else self.chain
            self.m[n] = MarketNode(n, bytes([ord(n)]) * 32, Key.from_seed(n), FakeChainClient(view), tmp_path / n,
                                   peers=[self.url[p] for p in "FXY" if p != n],
                                   double_issue=double_issue and n == "F")
        self.runners = []

    async def __aenter__(self):
        for n, m in self.m.items():
            await m.start(time.time())
            r = web.AppRunner(make_app(m), access_log=None)
            await r.setup()
            await web.TCPSite(r, "127.0.0.1", self.ports[n]).start()
            self.runners.append(r)
        return self

    async def __aexit__(self, *exc):
        for m in self.m.values():
            await m.close()
        for r in self.runners:
            await r.cleanup()

    async def rounds(self, n=3):
        for _ in range(n):
            for m in self.m.values():
                await m.gossip_round()

    def key(self, n) -> bytes:
        return self.m[n].key


def run(coro):
    return asyncio.run(coro)


def test_a_double_issuer_is_discredited_and_a_peer_that_saw_one_update_verifies_the_proof(tmp_path):
    async def scenario():
        async with Markets(tmp_path) as w:
            F, X, Y = w.m["F"], w.m["X"], w.m["Y"]
            F.sell(OFFER, time.time())
            assert [len(q) for q in F.gossip_queue.values()] == [2, 1]     # X: the update and its twin; Y: one
            await w.rounds()
            fk = w.key("F")
            # X held both updates at height 0 and made the proof; Y held only the first one
            assert X.replicator.discredited[fk].fault == faults.DOUBLE_UPDATE
            assert [u.digest() for u in Y.replicator.chains[fk]] == [F.issuer.updates[0].digest()]
            proof = Y.replicator.discredited[fk]
            assert proof.fault == faults.DOUBLE_UPDATE and proof.issuer == fk
            assert {u.digest() for u in proof.updates} - {u.digest() for u in Y.replicator.chains[fk]}, \
                "Y never held the twin: it trusted the proof alone"
            listing = {i["issuer"]: i for i in Y.status()["issuers"]}
            assert listing[fk.hex()] == {"issuer": fk.hex(), "updates": 1, "mine": False, "discredited": True,
                                         "fault": "double_update"}
            assert X.counters["discredit_accepted"] == 1 and Y.counters["discredit_accepted"] == 1
            assert Y.counters["gossip_refused_duplicate"] >= 1                # the flood ends at X and F
            # from then on Y refuses the issuer: its next update, a purchase of its tokens; F itself sells no more
            nxt = make_update(bytes([ord("F")]) * 32, 1, F.issuer.updates[0].digest(), 5, w.chain.block_hash(5), ())
            with pytest.raises(MarketError, match="issuer_discredited"):
                Y.on_gossip(nxt.encode())
            with pytest.raises(MarketError, match="issuer_discredited"):
                await Y.buy(w.url["F"], fk, "f.lease1", 100)
            with pytest.raises(MarketError, match="issuer_discredited"):
                F.sell(dict(OFFER, token="f.lease2"), time.time())
            assert all(not q for m in w.m.values() for q in m.gossip_queue.values())
    run(scenario())


def test_an_honest_issuer_is_replicated_by_its_peers_and_discredited_by_none(tmp_path):
    async def scenario():
        async with Markets(tmp_path, double_issue=False) as w:
            w.m["F"].sell(OFFER, time.time())
            w.m["F"].sell(dict(OFFER, token="f.lease2"), time.time())
            await w.rounds()
            for n in "XY":
                assert len(w.m[n].replicator.chains[w.key("F")]) == 2
                assert not w.m[n].replicator.discredited and w.m[n].replicator.rejected == {}
            assert w.m["F"].counters["gossip_sent"] == 4
    run(scenario())


def test_a_peer_behind_the_anchor_or_unreachable_gets_the_update_again(tmp_path):
    async def scenario():
        async with Markets(tmp_path, double_issue=False, y_lag=3) as w:
            F, Y = w.m["F"], w.m["Y"]
            F.sell(OFFER, time.time())
            await w.rounds(2)
            assert F.counters["gossip_retry_unknown_pkt_block"] == 2 and len(F.gossip_queue[w.url["Y"]]) == 1
            w.y_view.lag = 0
            await w.rounds(1)
            assert len(Y.replicator.chains[w.key("F")]) == 1 and not F.gossip_queue[w.url["Y"]]
            await w.runners[2].cleanup()                                    # Y's API goes away
            F.sell(dict(OFFER, token="f.lease2"), time.time())
            await F.gossip_round()
            assert F.counters["gossip_retry_unreachable"] == 1 and len(F.gossip_queue[w.url["Y"]]) == 1
            assert not F.gossip_queue[w.url["X"]]                           # the other peer is not held up
    run(scenario())


def test_a_proof_that_proves_nothing_is_refused_and_not_passed_on(tmp_path):
    async def scenario():
        async with Markets(tmp_path, double_issue=False) as w:
            F, Y = w.m["F"], w.m["Y"]
            F.sell(OFFER, time.time())
            await w.rounds()
            u = F.issuer.updates[0]
            same = faults.Discredit(u.issuer, faults.DOUBLE_UPDATE, (u, u))                  # one update twice
            forged = faults.Discredit(u.issuer, faults.DOUBLE_UPDATE, (u, dataclasses.replace(
                make_update(b"Z" * 32, 0, u.prev, u.pkt_height, u.pkt_block, ()), issuer=u.issuer)))
            for proof, code in ((same, "proof_not_a_fault"), (forged, "proof_bad_update_signature")):
                with pytest.raises(MarketError, match=code):
                    Y.on_gossip(proof.encode())
            with pytest.raises(MarketError, match="malformed"):
                Y.on_gossip(b'{"v":1,"type":"discredit"}')
            assert not Y.replicator.discredited and not any(Y.gossip_queue.values())
            status, answer = await _post(w.url["Y"] + "/gossip", same.encode())
            assert (status, answer["error"]) == (400, "proof_not_a_fault")
    run(scenario())


async def _post(url, data):
    import aiohttp
    async with aiohttp.ClientSession() as s, s.post(url, data=data) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("settings,detail", [
    ({"peers": ["127.0.0.1:1"]}, "settings.peers[0]: expected a market's http:// URL"),
    ({"peers": "http://x"}, "settings.peers: expected list"),
    ({"double_issue": 1}, "settings.double_issue: expected bool"),
])
def test_bad_gossip_settings_are_refused_by_name(tmp_path, capsys, settings, detail):
    import json

    from node.market import service
    cfg = {"node": "s1", "address": "127.0.0.1", "state_dir": str(tmp_path), "log_file": str(tmp_path / "m.log"),
           "chain": {"genesis_bits": 0x207FFFFF},
           "settings": {"chain_url": "http://127.0.0.1:1", "node_secret": "11" * 32, "wallet_secret": "22" * 32,
                        **settings}}
    (tmp_path / "market.json").write_text(json.dumps(cfg))
    assert service.main([str(tmp_path / "market.json")]) == 2
    err = capsys.readouterr().err
    assert detail in err and "Traceback" not in err
