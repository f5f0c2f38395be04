"""The market's view of the real PKT chain (node/market/htlc_index.py, chain_client.py) against a real chain node
process: an HTLC funded, claimed with its preimage, another refunded only after its height, a reorg that takes a
claim back, and bad answers and spends refused with the node's reason."""
from __future__ import annotations

import asyncio

import pytest

from node.chain.keys import Key
from node.market.chain_client import ChainClient, ChainClientError
from node.market.chain_view import CLAIMED, OPEN, REFUNDED
from node.market.htlc_index import HtlcIndex, read_spend
from node.market.wire import sha256
from tests.unit import chain_helpers as H
from tests.unit.market_chain_node import ChainNodeProcess

BUYER = H.MINER                 # the test miner's coinbases pay the buyer
SELLER = Key.from_seed("market seller")


@pytest.fixture
def node(tmp_path):
    n = ChainNodeProcess(tmp_path / "c1")
    try:
        yield n
    finally:
        n.stop()


def test_fund_claim_refund_and_a_reorg_against_a_chain_node_process(node):
    async def go():
        client = ChainClient(node.url, node.params)
        try:
            node.mine(4)
            assert await client.sync() == 4
            assert client.index.block_hash(4) == node.chain.tip.hash
            x1, x2 = b"\x01" * 32, b"\x02" * 32
            refund_at = 12
            op1 = await client.fund(BUYER, 5_000_000, sha256(x1), SELLER.pubkey, BUYER.pubkey, refund_at)
            op2 = await client.fund(BUYER, 3_000_000, sha256(x2), SELLER.pubkey, BUYER.pubkey, 8)
            assert client.index.htlc(op1) is None                     # not in a block yet
            node.mine(1)
            await client.sync()
            h1 = client.index.htlc(op1)
            assert (h1.state, h1.amount, h1.hash, h1.pay_to, h1.refund_to, h1.refund_height, h1.funded_height) == \
                (OPEN, 5_000_000, sha256(x1), SELLER.pubkey, BUYER.pubkey, refund_at, 5)
            assert [h.outpoint for h in client.index.htlcs_for(sha256(x2))] == [op2]
            # a claim with the wrong preimage, and a refund before the refund height: the node refuses both
            with pytest.raises(ChainClientError, match="rejected"):
                await client.claim(op1, SELLER, b"\x03" * 32)
            with pytest.raises(ChainClientError, match="NON_FINAL|LOCKTIME"):
                await client.refund(op2, BUYER)
            await client.claim(op1, SELLER, x1)
            claim_blocks = node.mine(1)
            await client.sync()
            h1 = client.index.htlc(op1)
            assert (h1.state, h1.preimage, h1.spent_height) == (CLAIMED, x1, 6)
            balance = await client.balance(SELLER)
            assert balance["spendable"] + balance["immature"] == 5_000_000 - 10_000
            # a longer branch from height 5 without the claim: the index follows the reorg, the claim is gone
            fork = node.branch("fork", [node.chain.get_block(node.chain.block_hash_at(h)) for h in range(1, 6)])
            node.mine(2, take_mempool=False, chain=fork)
            assert await client.sync() == 7
            assert client.index.block_hash(6) != claim_blocks[0].hash
            assert client.index.htlc(op1).state == OPEN
            # the node put the claim back into its mempool: mined on the new branch, the claim is back
            node.replicas[0], node.replicas[-1] = node.replicas[-1], node.replicas[0]
            while client.index.height() < 8:
                node.mine(1)
                await client.sync()
            assert client.index.htlc(op1).state == CLAIMED
            # the refund path opens in block refund_height + 1 (Bitcoin finality: lock time below the height)
            await client.refund(op2, BUYER)
            node.mine(1)
            await client.sync()
            h2 = client.index.htlc(op2)
            assert (h2.state, h2.preimage, h2.spent_height) == (REFUNDED, None, 9)
        finally:
            await client.close()
    asyncio.run(go())


def test_chain_client_names_a_node_that_does_not_answer(tmp_path):
    async def go():
        client = ChainClient(f"unix:{tmp_path}/none.sock", None, timeout=2)
        try:
            with pytest.raises(ChainClientError, match="chain /tip: .*"):
                await client.sync()
            with pytest.raises(ChainClientError, match="no HTLC"):
                await client.claim("00" * 32 + ":0", SELLER, b"x")
        finally:
            await client.close()
    asyncio.run(go())


def test_htlc_spends_are_read_by_shape_and_the_index_takes_blocks_in_order():
    assert read_spend(bytes.fromhex("0201ff") + bytes([0x20]) + b"\x05" * 32 + b"\x51") == ("claim", b"\x05" * 32)
    assert read_spend(bytes.fromhex("0201ff00")) == ("refund", None)
    assert read_spend(b"\x4c") is None and read_spend(bytes.fromhex("0201ff0101")) is None
    index = HtlcIndex()
    with pytest.raises(ValueError, match="height 3, the index expects 0"):
        index.add_block(3, None)
    assert index.height() == -1 and index.block_hash(0) is None and index.htlcs_for(b"\x00" * 32) == []
