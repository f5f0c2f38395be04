"""HTLC-forwarding channels on the PKT chain (node/market/hub_chain.py) against a real chain node process: the
2-of-2 funding, the close of a hub_state with pending HTLCs (receiver paid, one HTLC output per pending HTLC, the
sender the rest), the HTLC outputs taken by the receiver with the preimage or by the sender after the expiry, the
refund after the timelock, and a close signature for another state refused."""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

from node.chain.interpreter import ScriptError, verify_input
from node.chain.keys import Key
from node.market import hub as hb
from node.market import hub_chain as hc
from node.market.chain_client import ChainClient, ChainClientError
from node.market.wire import WireError, sha256
from tests.unit import chain_helpers as H
from tests.unit.market_chain_node import ChainNodeProcess

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, RESELLER_SK, key  # noqa: E402

SENDER = H.MINER                        # the test miner's coinbases fund the channel
RECEIVER = Key.from_seed("hub channel receiver chain key")
OTHER_MINER = Key.from_seed("hub channel test other miner")
SENDER_SK, RECEIVER_SK = BUYER_SK, RESELLER_SK
CAPACITY, FEE, AMOUNT = 10_000_000, 10_000, 1_000_000


@pytest.fixture
def node(tmp_path):
    n = ChainNodeProcess(tmp_path / "c1")
    try:
        n.mine(4)
        yield n
    finally:
        n.stop()


def _open(node, refund_in: int = 40) -> hc.HubTerms:
    async def fund():
        client = ChainClient(node.url, node.params)
        try:
            refund_height = node.chain.height + refund_in
            tx = hc.funding_tx(node.params, SENDER, await client.coins(SENDER), RECEIVER.pubkey, CAPACITY,
                               refund_height, FEE)
            return tx, await client.send(tx), refund_height
        finally:
            await client.close()
    tx, txid, refund_height = asyncio.run(fund())
    _mine(node)
    terms = hc.HubTerms(hb.open_hub_channel(SENDER_SK, b"h" * 16, key(RECEIVER_SK), CAPACITY, refund_height,
                                            f"{txid}:0"), SENDER.pubkey, RECEIVER.pubkey, FEE)
    assert hc.funding_ok(terms, tx) and tx.outputs[0].value == CAPACITY + FEE
    return terms


def _mine(node, n: int = 1) -> None:
    node.mine(n, payout=OTHER_MINER.p2pkh_script)      # so that the sender's balance moves only by the channel


def _send(node, tx) -> dict:
    return node.rpc("/sendtx", {"tx": tx.raw.hex()})


def _refused(node, tx) -> str:
    answer = _send(node, tx)
    assert answer.get("error") == "rejected", answer
    return answer["reason"]


def _spend(node, how: str, outpoint: str, k: Key, preimage: bytes | None = None) -> str | None:
    """Claim (with the preimage) or refund an HTLC output as the market does (ChainClient over the node's index);
    None if the node took it, else its reason for refusing."""
    async def go():
        client = ChainClient(node.url, node.params)
        try:
            await client.sync()
            if how == "claim":
                await client.claim(outpoint, k, preimage, FEE)
            else:
                await client.refund(outpoint, k, FEE)
        except ChainClientError as e:
            return str(e)
        finally:
            await client.close()
    why = asyncio.run(go())
    return None if why is None else next(r for r in ("NON_FINAL", "SCRIPT_FAILED", why) if r in why)


def _balance(node, k: Key) -> int:
    b = node.rpc(f"/coins?address={k.address}")["balance"]
    return b["spendable"] + b["immature"]


class Ends:
    """hub.py's two ends of one channel, with every state carried as a hub_chain_state checked as the driver does."""

    def __init__(self, terms: hc.HubTerms):
        self.terms = terms
        self.sender = hb.HtlcSender(terms.open, SENDER_SK)
        self.receiver = hb.HtlcReceiver(terms.open, RECEIVER_SK)
        self.close_sig = None

    def deliver(self, state_data: bytes, height: int) -> None:
        data, sig = hc.check_chain_state(self.terms, hc.chain_state(self.terms, state_data, SENDER), RECEIVER)
        seq = self.receiver.seq
        self.receiver.receive(data, height)
        assert self.receiver.seq == seq + 1, self.receiver.rejected
        self.close_sig = sig

    def close(self):
        return hc.closed(self.terms, self.receiver.latest, self.close_sig,
                         hc.sign_close(self.terms, self.receiver.latest, RECEIVER))


def test_a_close_with_pending_htlcs_pays_each_side_what_settle_says(node):
    terms = _open(node)
    e, h = Ends(terms), node.chain.height
    x_paid, x_claim, x_late = b"a" * 32, b"b" * 32, b"c" * 32
    to = key(RECEIVER_SK)
    e.deliver(e.sender.add(sha256(x_paid), AMOUNT, h + 10, to, h), h)
    e.deliver(e.sender.receive(e.receiver.fulfill(x_paid, h), h)[0], h)             # settled off chain
    e.deliver(e.sender.add(sha256(x_claim), 2 * AMOUNT, h + 10, to, h), h)            # pending: the receiver claims
    e.deliver(e.sender.add(sha256(x_late), 3 * AMOUNT, h + 8, to, h), h)              # pending: it expires
    e.receiver.preimages[sha256(x_claim)] = x_claim
    sender_before = _balance(node, SENDER)
    close = e.close()
    assert [o.value for o in close.outputs] == [AMOUNT, 2 * AMOUNT, 3 * AMOUNT, CAPACITY - 6 * AMOUNT]
    assert _send(node, close)["txid"] == close.txid_hex
    _mine(node)
    assert _balance(node, RECEIVER) == AMOUNT
    assert _balance(node, SENDER) - sender_before == CAPACITY - 6 * AMOUNT
    ops = hc.htlc_outpoints(terms, e.receiver.latest, close.txid_hex)
    # the sender cannot take an HTLC output before its expiry; the receiver cannot take one without the preimage
    assert _spend(node, "refund", ops[sha256(x_claim)], SENDER) == "NON_FINAL"
    assert _spend(node, "claim", ops[sha256(x_late)], RECEIVER, x_claim) == "SCRIPT_FAILED"
    assert _spend(node, "claim", ops[sha256(x_claim)], RECEIVER, x_claim) is None
    _mine(node)
    assert _balance(node, RECEIVER) == AMOUNT + 2 * AMOUNT - FEE
    while node.chain.height < h + 8:
        assert _spend(node, "refund", ops[sha256(x_late)], SENDER) == "NON_FINAL"
        _mine(node)
    assert _spend(node, "refund", ops[sha256(x_late)], SENDER) is None
    _mine(node)
    # all told: the receiver has paid + the HTLC it showed the preimage of, the sender the rest, less the fees
    assert _balance(node, SENDER) - sender_before == CAPACITY - 3 * AMOUNT - FEE
    assert hb.settle(terms.open, [e.receiver.latest], e.receiver.preimages, h + 1) == (3 * AMOUNT,
                                                                                       CAPACITY - 3 * AMOUNT)


def test_the_refund_path_opens_only_after_the_timelock(node):
    terms = _open(node, refund_in=20)
    e, h = Ends(terms), node.chain.height
    e.deliver(e.sender.add(sha256(b"d" * 32), AMOUNT, h + 8, key(RECEIVER_SK), h), h)   # the receiver never closes
    before = _balance(node, SENDER)
    refund = hc.refund_tx(terms, SENDER)
    assert _refused(node, refund) == "NON_FINAL"
    _mine(node, terms.open.refund_height - node.chain.height)
    assert _send(node, refund)["txid"] == refund.txid_hex
    _mine(node)
    assert _balance(node, SENDER) - before == CAPACITY and _balance(node, RECEIVER) == 0
    assert _refused(node, e.close()) == "MISSING_INPUT"


def test_a_close_signature_for_another_state_is_refused_and_the_sender_cannot_close_alone():
    terms = hc.HubTerms(hb.open_hub_channel(SENDER_SK, b"h" * 16, key(RECEIVER_SK), CAPACITY, 100, "ab" * 32 + ":0"),
                        SENDER.pubkey, RECEIVER.pubkey, FEE)
    sender = hb.HtlcSender(terms.open, SENDER_SK)
    first = sender.add(sha256(b"e" * 32), AMOUNT, 60, key(RECEIVER_SK), 50)
    second = sender.add(sha256(b"f" * 32), AMOUNT, 60, key(RECEIVER_SK), 50)
    s1, s2 = hb.HubState.decode(first), hb.HubState.decode(second)
    forged = hc.HubChainState.of(s2, hc.sign_close(terms, s1, SENDER)).encode()   # signs the close of seq 1
    with pytest.raises(WireError) as e:
        hc.check_chain_state(terms, forged, RECEIVER)
    assert e.value.code == hc.BAD_CLOSE_SIG
    data, sig = hc.check_chain_state(terms, hc.chain_state(terms, second, SENDER), RECEIVER)
    assert hb.HubState.decode(data) == s2
    own = hc.sign_close(terms, s2, SENDER)
    with pytest.raises(ScriptError):
        verify_input(hc.closed(terms, s2, own, own), 0, terms.script)       # the receiver's signature is needed
    assert hc.close_by(terms) == 100 - hc.CLOSE_MARGIN
