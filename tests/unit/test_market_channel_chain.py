"""One-way payment channels on the PKT chain (node/market/channel_chain.py, node/chain/script.py's channel template)
against a real chain node process: funded by a 2-of-2 output with a refund after a timelock, paid per unit with the
payer's signature on the close for each new total, closed by the payee with the latest, refunded to the payer only
after the timelock, and a payer that tries an old state or stops paying: the payee's exposure never exceeds one
unit, checked at every update and on the chain."""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

from node.chain import script as S
from node.chain.blocks import Block
from node.chain.interpreter import ScriptError, verify_input
from node.chain.keys import Key
from node.market import channel as ch
from node.market import channel_chain as cc
from node.market.chain_client import ChainClient
from tests.unit import chain_helpers as H
from tests.unit.market_chain_node import ChainNodeProcess

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, key  # noqa: E402

PAYER = H.MINER                         # the test miner's coinbases fund the channel
PAYEE = Key.from_seed("channel payee chain key")
OTHER_MINER = Key.from_seed("channel test other miner")
PRICE, CAPACITY, FEE = 1_000_000, 10_000_000, 10_000


@pytest.fixture
def node(tmp_path):
    n = ChainNodeProcess(tmp_path / "c1")
    try:
        n.mine(4)                       # mature coinbases for the payer
        yield n
    finally:
        n.stop()


def _open(node, refund_in: int = 12) -> cc.ChainTerms:
    """Fund a channel on the node (mined), the terms both sides hold."""
    async def fund():
        client = ChainClient(node.url, node.params)
        try:
            refund_height = node.chain.height + refund_in
            tx = cc.funding_tx(node.params, PAYER, await client.coins(PAYER), PAYEE.pubkey, CAPACITY, refund_height,
                               FEE)
            return tx, await client.send(tx), refund_height
        finally:
            await client.close()
    tx, txid, refund_height = asyncio.run(fund())
    node.mine(1)
    terms = ch.open_channel(BUYER_SK, b"c" * 16, key(ISSUER_SK), CAPACITY, PRICE, 16384, refund_height, f"{txid}:0")
    chain_terms = cc.ChainTerms(terms, PAYER.pubkey, PAYEE.pubkey, FEE)
    mined = Block.parse(bytes.fromhex(node.rpc(f"/block_at/{node.chain.height}")["hex"]))
    assert [t for t in mined.txs if cc.funding_ok(chain_terms, t)] == [tx]      # the payee checks the funding
    return chain_terms


def _send(node, tx) -> dict:
    return node.rpc("/sendtx", {"tx": tx.raw.hex()})


def _balance(node, k: Key) -> int:
    b = node.rpc(f"/coins?address={k.address}")["balance"]
    return b["spendable"] + b["immature"]


def _pay_units(payer: cc.ChainPayer, payee: cc.ChainPayee, n: int) -> None:
    """n units, the invariant checked at every update: delivered minus paid never above one unit."""
    for _ in range(n):
        assert payee.channel.may_send()
        payee.channel.sent()
        assert 0 < payee.channel.exposure <= PRICE
        assert payee.receive(payer.unit_verified()), payee.rejected
        assert payee.channel.exposure == 0


def _mine(node, n: int = 1) -> None:
    node.mine(n, payout=OTHER_MINER.p2pkh_script)      # so that the payer's balance moves only by the channel


def _tip_txids(node) -> list:
    return [t.txid for t in node.chain.get_block(node.chain.tip.hash).txs]


def _refused(node, tx) -> str:
    """The node's reason for refusing ``tx``."""
    answer = node.rpc("/sendtx", {"tx": tx.raw.hex()})
    assert answer.get("error") == "rejected", answer
    return answer["reason"]


def test_the_payee_closes_with_the_latest_commitment(node):
    terms = _open(node)
    payer, payee = cc.ChainPayer(terms, BUYER_SK, PAYER), cc.ChainPayee(terms, PAYEE)
    _pay_units(payer, payee, 5)
    assert payee.channel.paid == 5 * PRICE and payee.channel.latest.seq == 5
    payer_before = _balance(node, PAYER)
    close = payee.close()
    assert _send(node, close)["txid"] == close.txid_hex
    _mine(node)
    assert close.txid in _tip_txids(node)
    assert _balance(node, PAYEE) == 5 * PRICE                                   # exactly what was paid
    assert _balance(node, PAYER) - payer_before == CAPACITY - 5 * PRICE - FEE  # the rest, less the fee
    # the funding is spent: after the timelock, a refund has nothing to take
    _mine(node, terms.open.refund_height - node.chain.height + 1)
    assert _refused(node, cc.refund_tx(terms, PAYER)) == "MISSING_INPUT"


def test_the_refund_path_opens_only_after_the_timelock(node):
    terms = _open(node, refund_in=6)
    payer, payee = cc.ChainPayer(terms, BUYER_SK, PAYER), cc.ChainPayee(terms, PAYEE)
    _pay_units(payer, payee, 2)                 # the payee then never closes
    payer_before = _balance(node, PAYER)
    refund = cc.refund_tx(terms, PAYER)
    while node.chain.height < terms.open.refund_height:
        assert _refused(node, refund) == "NON_FINAL"                   # not before the refund height
        _mine(node)
    assert _send(node, refund)["txid"] == refund.txid_hex    # final for the next block, above the refund height
    _mine(node)
    assert refund.txid in _tip_txids(node)
    assert _balance(node, PAYER) - payer_before == CAPACITY - FEE and _balance(node, PAYEE) == 0
    # too late for the payee: its close spends what the refund spent
    assert _refused(node, payee.close()) == "MISSING_INPUT"


def test_a_stale_state_cannot_be_closed_and_the_payee_risks_one_unit(node):
    terms = _open(node)
    payer, payee = cc.ChainPayer(terms, BUYER_SK, PAYER), cc.ChainPayee(terms, PAYEE)
    stale = payer.unit_verified()                   # seq 1, one unit, kept by a payer that wants to pay less later
    payee.channel.sent()
    assert payee.receive(stale)
    _pay_units(payer, payee, 2)
    # the old payment again (replayed), and one whose close signature is for another total: refused, counted
    payee.channel.sent()
    assert not payee.receive(stale) and payee.rejected[ch.REPLAYED] == 1
    honest = cc.ChainPay.decode(payer.unit_verified())
    wrong = cc.ChainPay(honest.channel, honest.seq, honest.increment, honest.sig,
                        cc.sign_close(terms, PRICE, PAYER))        # signs a close for one unit, claims four
    assert not payee.receive(wrong.encode()) and payee.rejected[cc.BAD_CLOSE_SIG] == 1
    assert payee.receive(honest.encode()) and payee.channel.paid == 4 * PRICE
    # the payer stops paying for the fifth unit it received: the payee sends no sixth
    payee.channel.sent()
    assert payee.channel.exposure == PRICE and not payee.channel.may_send()
    with pytest.raises(ch.ChannelError, match="exposure"):
        payee.channel.sent()
    # the payer tries to close with its old state (one unit) on its own: the chain wants the payee's signature too
    own = cc.sign_close(terms, PRICE, PAYER)
    assert _refused(node, cc.closed(terms, PRICE, own, own)) == "BAD_SIGNATURE"
    # the payee closes with the latest: paid for four of the five units it delivered, one unit lost, not more
    assert _send(node, payee.close())["txid"]
    _mine(node)
    assert _balance(node, PAYEE) == 4 * PRICE == 5 * PRICE - payee.channel.exposure


def test_the_scripts_run_in_the_chain_interpreter():
    terms = cc.ChainTerms(ch.open_channel(BUYER_SK, b"d" * 16, key(ISSUER_SK), CAPACITY, PRICE, 1, 50,
                                          "ab" * 32 + ":0"), PAYER.pubkey, PAYEE.pubkey, FEE)
    O = S.Op
    assert [p.data or p.op for p in S.parse(terms.script)] == [
        O.OP_IF, O.OP_1 + 1, PAYER.pubkey, PAYEE.pubkey, O.OP_1 + 1, O.OP_CHECKMULTISIG,
        O.OP_ELSE, bytes([50]), O.OP_CHECKLOCKTIMEVERIFY, O.OP_DROP, PAYER.pubkey, O.OP_CHECKSIG, O.OP_ENDIF]
    good = cc.closed(terms, 3 * PRICE, cc.sign_close(terms, 3 * PRICE, PAYER), cc.sign_close(terms, 3 * PRICE, PAYEE))
    verify_input(good, 0, terms.script)
    assert [o.value for o in good.outputs] == [3 * PRICE, CAPACITY - 3 * PRICE - FEE]
    swapped = cc.closed(terms, 3 * PRICE, cc.sign_close(terms, 3 * PRICE, PAYEE), cc.sign_close(terms, 3 * PRICE, PAYER))
    with pytest.raises(ScriptError):
        verify_input(swapped, 0, terms.script)
    other_total = cc.closed(terms, 3 * PRICE, cc.sign_close(terms, 2 * PRICE, PAYER),
                            cc.sign_close(terms, 3 * PRICE, PAYEE))
    with pytest.raises(ScriptError):
        verify_input(other_total, 0, terms.script)
    early = cc.refund_tx(terms, PAYER)
    verify_input(early, 0, terms.script)                # the script passes; the block height decides (finality)
    assert early.lock_time == 50 and early.inputs[0].sequence != 0xFFFFFFFF
    with pytest.raises(ch.ChannelError):
        cc.close_tx(terms, CAPACITY)                    # the fee must stay in the payer's part
    with pytest.raises(ch.ChannelError):
        cc.ChainPayee(terms, PAYER)                     # not the payee's key
    assert cc.close_by(terms) == 50 - cc.CLOSE_MARGIN
