"""A chain node's network sides on the loopback, for real: two ChainNodes whose P2P (TCP) sync headers first and
relay a new block, malformed frames counted and their sender banned, and the RPC refusing bad bodies by reason
(node/chain/p2p.py, node/chain/rpc.py, node/chain/chain_node.py). The integration tests run them over the mesh."""
from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.chain import p2p_messages as M
from node.chain import params as P
from node.chain.chain_node import ChainNode
from node.chain.p2p import P2P
from node.chain.rpc import make_app
from node.chain.wire import hash_hex
from tests.unit import chain_helpers as H

PARAMS = P.regtest(coinbase_maturity=3)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def _until(pred, within: float = 20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def pair(tmp_path):
    """Two chain nodes on the loopback that dial each other once their P2P starts (`_connected`)."""
    a = ChainNode("a", PARAMS, tmp_path / "a", clock=lambda: 2_000_000_000)
    b = ChainNode("b", PARAMS, tmp_path / "b", clock=lambda: 2_000_000_000)
    pa, pb = _free_port("127.0.0.1"), _free_port("127.0.0.2")
    a.p2p = P2P(a, PARAMS, listen=("127.0.0.1", pa), peers=[("127.0.0.2", pb)])
    b.p2p = P2P(b, PARAMS, listen=("127.0.0.2", pb), peers=[("127.0.0.1", pa)])
    yield a, b
    a.close()
    b.close()


def _connected(a, b, until):
    """Start both nodes' P2P, wait for `until()` to hold, stop them."""
    async def go():
        await a.p2p.start()
        await b.p2p.start()
        try:
            await until()
        finally:
            await a.p2p.stop()
            await b.p2p.stop()
    asyncio.run(go())


def test_two_nodes_sync_headers_first_and_relay_a_new_block(pair):
    a, b = pair
    H.extend(a.chain, 4)

    async def steps():
        await _until(lambda: b.chain.tip.hash == a.chain.tip.hash)
        assert b.blocks_by_origin["peer"] == 4
        blk = H.next_block(a.chain)
        assert a.process_block(blk.raw, "rpc").status == "accepted"      # relayed to b by inv
        await _until(lambda: b.chain.tip.hash == blk.hash)
    _connected(a, b, steps)
    assert b.status()["tip"] == hash_hex(a.chain.tip.hash)


def test_a_peer_that_connects_later_gets_the_mempool(pair):
    """A transaction accepted while the miner was away (restarted, cut off) reaches it when it connects: without
    that it would wait in one node's mempool forever and never be mined."""
    from node.chain.keys import Key
    from node.chain.wallet import Wallet
    a, b = pair
    for blk in H.extend(a.chain, 4):                          # both on one chain, as after a restart
        b.process_block(blk.raw, "rpc")
    tx = Wallet(PARAMS, [H.MINER]).send(a.chain, Key.from_seed("alice").p2pkh_script, 1000, fee=500)
    a.accept_tx(tx, "rpc")                                    # no peer yet: announced to nobody

    async def steps():
        await _until(lambda: tx.txid in b.chain.mempool.entries)
    _connected(a, b, steps)


def test_malformed_frames_are_counted_and_the_sender_banned(tmp_path):
    node = ChainNode("n", PARAMS, tmp_path / "n")
    port = _free_port("127.0.0.1")
    node.p2p = P2P(node, PARAMS, listen=("127.0.0.1", port), peers=[])

    async def go():
        await node.p2p.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(M.frame(PARAMS.net_magic, "inv", b"\xff\xff"))           # before the handshake
            bad_sum = bytearray(M.frame(PARAMS.net_magic, "ping", b"12345678"))
            bad_sum[20] ^= 1
            w.write(bytes(bad_sum))
            await w.drain()
            await _until(lambda: node.p2p.rejections["before_handshake"] and node.p2p.rejections["bad_checksum"])
            w.write(b"\x00" * 24 + b"garbage")                                # a wrong magic: cut off at once
            await w.drain()
            assert await asyncio.wait_for(r.read(), 5) is not None
            await _until(lambda: node.p2p.rejections["bad_magic"] == 1 and not node.p2p.peers)
            assert node.p2p.is_banned("127.0.0.1")                           # bad magic scores 100
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(r2.read(), 5) == b""                # refused while banned
            assert node.p2p.rejections["banned_peer_refused"] == 1
            w.close()
            w2.close()
        finally:
            await node.p2p.stop()
    try:
        asyncio.run(go())
        assert node.status()["rejections"]["p2p"]["peer_banned"] == 1
    finally:
        node.close()


def test_a_silent_peer_is_disconnected_and_a_live_one_kept(tmp_path, monkeypatch):
    """A peer that completed the handshake and then sends nothing (a TCP connection stuck in retransmission
    back-off after a cut) is dropped after SILENT_S, so the dialling side connects again; one that answers the
    pings stays."""
    import node.chain.p2p as p2p_module
    monkeypatch.setattr(p2p_module, "PING_S", 0.2)
    monkeypatch.setattr(p2p_module, "SILENT_S", 2.0)
    node = ChainNode("n", PARAMS, tmp_path / "n")
    port = _free_port("127.0.0.1")
    node.p2p = P2P(node, PARAMS, listen=("127.0.0.1", port), peers=[])

    async def handshake():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(M.frame(PARAMS.net_magic, "version", M.Version(12345, 0, timestamp=2_000_000_000).encode()))
        w.write(M.frame(PARAMS.net_magic, "verack"))
        await w.drain()
        return r, w

    async def answer_pings(r, w):
        frames = M.FrameReader(PARAMS.net_magic)
        while data := await r.read(65536):
            frames.feed(data)
            while (msg := frames.next()) is not None:
                if msg[0] == "ping":
                    w.write(M.frame(PARAMS.net_magic, "pong", msg[1]))

    async def go():
        await node.p2p.start()
        try:
            silent = await handshake()
            await _until(lambda: len(node.p2p.peers) == 1 and all(p.handshake for p in node.p2p.peers.values()))
            live_r, live_w = await handshake()
            live = asyncio.create_task(answer_pings(live_r, live_w))
            await _until(lambda: node.p2p.rejections["silent_peer"] == 1)
            await asyncio.wait_for(silent[0].read(), 5)                      # what it was sent, then the end:
            assert silent[0].at_eof()                                        # the silent one was cut off
            await asyncio.sleep(3)                                           # more than SILENT_S: the live one stays
            assert node.p2p.rejections["silent_peer"] == 1 and len(node.p2p.peers) == 1
            live.cancel()
            for _, w in (silent, (live_r, live_w)):
                w.close()
        finally:
            await node.p2p.stop()
    try:
        asyncio.run(go())
    finally:
        node.close()


@pytest.mark.parametrize("method, path, body, status, code", [
    ("post", "/submitblock", "not json", 400, "bad_json"),
    ("post", "/submitblock", {"blk": "00"}, 400, "missing_field"),
    ("post", "/submitblock", {"block": "xyz"}, 400, "bad_hex"),
    ("post", "/submitblock", {"block": "00" * 90}, 400, "rejected"),
    ("post", "/sendtx", {"tx": "0100"}, 400, "rejected"),
    ("post", "/template", {"payouts": [["nobody", 1]]}, 400, "bad_address"),
    ("post", "/template", {"payouts": []}, 400, "bad_field"),
    ("get", "/coins?address=1234", None, 400, "bad_address"),
    ("get", "/hashes?from=-1", None, 400, "bad_field"),
    ("get", "/block/abcd", None, 400, "bad_hash"),
    ("get", "/block_at/99", None, 404, "not_found"),
])
def test_rpc_refuses_bad_bodies_by_reason(tmp_path, method, path, body, status, code):
    node = ChainNode("n", PARAMS, tmp_path / "n")

    async def go():
        async with TestClient(TestServer(make_app(node), host="127.0.0.1")) as client:
            kw = {} if body is None else ({"data": body} if isinstance(body, str) else {"json": body})
            r = await getattr(client, method)(path, **kw)
            return r.status, await r.json()
    try:
        got_status, answer = asyncio.run(go())
        assert (got_status, answer["error"]) == (status, code), answer
        counted = node.status()["rejections"]
        assert code == "rejected" or counted["rpc"].get(code) == 1
        assert node.chain.height == 0
    finally:
        node.close()
