"""Chain state: a reorg to a longer fork with undo and mempool handling, persistence across reopen, orphans, a
fork whose middle block is invalid, a forged proof that must not ban the real block, and the mempool's rules."""
from __future__ import annotations

import os
import sys
from dataclasses import replace

import pytest

from node.chain import params as P
from node.chain.chainstate import ACCEPTED, DUPLICATE, ORPHAN, REJECTED, Chain
from node.chain.consensus import Reason, Rejected
from node.chain.keys import Key
from node.chain.store import INVALID
from node.chain.tx import TxOut
from node.chain.wallet import Wallet, spend_tx

sys.path.insert(0, os.path.dirname(__file__))
from chain_helpers import MINER, anns_for, craft, extend, next_block, template  # noqa: E402

PARAMS = P.regtest(coinbase_maturity=3)
ALICE, BOB = Key.from_seed("alice"), Key.from_seed("bob")


def _sync(dst: Chain, blocks_):
    for b in blocks_:
        r = dst.process_block(b, b.header.time)
        assert r.ok, (r.reason, r.detail)


def _coins(chain):
    return sorted(chain.iter_coins(), key=lambda oc: (oc[0].txid, oc[0].index))


def _mature(chain, wallet, height_at_most):
    return [(op, c) for op, c in wallet.coins(chain) if c.coinbase and c.height <= height_at_most]


@pytest.fixture(scope="module")
def fork(tmp_path_factory):
    """node1: prefix 1..6, then 7 (T1: coin a -> Alice) and 8 (T3: coin b -> Alice).
    node2: the same prefix, then 7' (T2: coin a -> Bob, conflicting with T1), 8', 9' paid to Bob."""
    base = tmp_path_factory.mktemp("fork")
    node1, node2 = Chain(base / "n1", PARAMS), Chain(base / "n2", PARAMS)
    prefix = extend(node1, 6)
    _sync(node2, prefix)
    w = Wallet(PARAMS, [MINER])
    (op_a, coin_a), (op_b, coin_b) = _mature(node1, w, 2)[:2]
    t1 = w.sign(spend_tx([op_a], [TxOut(coin_a.value - 1000, ALICE.p2pkh_script)]), [coin_a])
    t3 = w.sign(spend_tx([op_b], [TxOut(coin_b.value - 1000, ALICE.p2pkh_script)]), [coin_b])
    t2 = w.sign(spend_tx([op_a], [TxOut(coin_a.value - 2000, BOB.p2pkh_script)]), [coin_a])
    node1.accept_tx(t1, 0)
    b7 = extend(node1, 1)[0]
    node1.accept_tx(t3, 0)
    b8 = extend(node1, 1)[0]
    assert [t.txid for t in b7.txs[1:]] == [t1.txid] and [t.txid for t in b8.txs[1:]] == [t3.txid]
    node2.accept_tx(t2, 0)
    side = extend(node2, 3, payout=BOB.p2pkh_script)
    yield dict(node1=node1, node2=node2, prefix=prefix, main=[b7, b8], side=side, t1=t1, t2=t2, t3=t3, base=base)
    node1.close()
    node2.close()


def test_reorg_to_the_longer_fork_with_undo_and_mempool(fork):
    node1, node2 = fork["node1"], fork["node2"]
    b7s, b8s, b9s = fork["side"]
    old_tip = node1.tip.hash
    r = node1.process_block(b7s, b7s.header.time)
    assert r.status == ACCEPTED and not r.connected and node1.tip.hash == old_tip       # less work: side branch
    r = node1.process_block(b8s, b8s.header.time)
    assert r.status == ACCEPTED and node1.tip.hash == old_tip                           # equal work: first seen
    r = node1.process_block(b9s, b9s.header.time)
    assert r.status == ACCEPTED and node1.tip.hash == b9s.hash == node2.tip.hash
    assert r.disconnected == [b.hash for b in reversed(fork["main"])]
    assert r.connected == [b7s.hash, b8s.hash, b9s.hash]
    (reorg,) = r.reorgs
    assert (reorg.fork_height, reorg.depth, reorg.connected, reorg.old_tip) == (6, 2, 3, old_tip)
    assert node1.reorgs == [reorg]
    # the UTXO set is exactly the one of a node that never saw the other branch
    assert _coins(node1) == _coins(node2)
    assert node1.election == node2.election
    # mempool: T1 conflicts with T2 (now mined) and is gone; T3 went back to the mempool
    assert fork["t1"].txid not in node1.mempool
    assert fork["t3"].txid in node1.mempool
    assert fork["t2"].txid not in node1.mempool


def test_reorg_survives_reopen(fork):
    node1 = fork["node1"]
    again = Chain(fork["base"] / "n1", PARAMS)
    assert again.tip.hash == node1.tip.hash and again.height == node1.height
    assert _coins(again) == _coins(node1)
    assert again.main == node1.main
    again.close()


def test_orphans_wait_for_their_parent(fork, tmp_path):
    fresh = Chain(tmp_path / "orphans", PARAMS)
    _sync(fresh, fork["prefix"])
    b7s, b8s, b9s = fork["side"]
    assert fresh.process_block(b9s, b9s.header.time).status == ORPHAN
    assert fresh.process_block(b8s, b8s.header.time).status == ORPHAN
    assert fresh.process_block(b9s, b9s.header.time).status == DUPLICATE
    r = fresh.process_block(b7s, b7s.header.time)
    assert r.status == ACCEPTED and r.connected == [b7s.hash, b8s.hash, b9s.hash]
    assert fresh.tip.hash == b9s.hash and not fresh.orphans
    fresh.close()


def test_orphan_pool_is_bounded(tmp_path):
    chain = Chain(tmp_path / "bounded", PARAMS, max_orphans=2)
    blocks_ = extend(Chain(tmp_path / "src", PARAMS), 4)
    for b in blocks_[1:]:
        assert chain.process_block(b, b.header.time).status == ORPHAN
    assert list(chain.orphans) == [b.hash for b in blocks_[2:]]
    chain.close()


def test_a_fork_with_an_invalid_block_rolls_back(fork, tmp_path):
    """node3 on the original branch (tip 8) receives 7', a bad 8'' and 9'' on it: the reorg attempt fails at
    8'', everything rolls back, 8'' is invalid and 9'' invalid by descent."""
    node3 = Chain(tmp_path / "n3", PARAMS)
    _sync(node3, fork["prefix"] + fork["main"])
    b7s = fork["side"][0]
    side = Chain(tmp_path / "side", PARAMS)
    _sync(side, fork["prefix"] + [b7s])
    t8 = template(side, txs=[], payout=BOB.p2pkh_script)
    bad8 = craft(replace(t8, subsidy=t8.subsidy + 1), anns_for(side, t8.height))
    t9 = replace(t8, height=t8.height + 1, prev_hash=bad8.hash, time=t8.time + 20,
                 subsidy=PARAMS.subsidy(t8.height + 1))
    bad9 = craft(t9, anns_for(side, t9.height))
    before = (node3.tip.hash, _coins(node3))
    assert node3.process_block(b7s, b7s.header.time).status == ACCEPTED
    assert node3.process_block(bad8, bad8.header.time).status == ACCEPTED      # equal work: only stored
    r = node3.process_block(bad9, bad9.header.time)
    assert (r.status, r.reason) == (REJECTED, Reason.INVALID_PARENT)
    assert r.invalidated == [(bad8.hash, Reason.WRONG_SUBSIDY)]
    assert (node3.tip.hash, _coins(node3)) == before
    assert node3.index[bad8.hash].status == INVALID and node3.index[bad9.hash].status == INVALID
    assert node3.rejections[Reason.WRONG_SUBSIDY] == 1
    node3.close()
    side.close()


def test_a_forged_proof_does_not_ban_the_real_block(tmp_path):
    chain = Chain(tmp_path / "forged", PARAMS)
    extend(chain, 3)
    real = next_block(chain, txs=[])
    broken = bytearray(real.proof.ann_proof)
    broken[0] ^= 1
    forged = replace(real, proof=replace(real.proof, ann_proof=bytes(broken)))
    assert forged.hash == real.hash                    # the header hash does not cover the proof
    assert chain.process_block(forged, forged.header.time).reason is Reason.BAD_ANN_PROOF
    assert chain.process_block(real, real.header.time).status == ACCEPTED
    chain.close()


# --- mempool ---------------------------------------------------------------------------------------------------------

@pytest.fixture()
def funded(tmp_path):
    chain = Chain(tmp_path / "mempool", PARAMS, min_fee_per_kb=1000)
    extend(chain, 6)
    yield chain
    chain.close()


def test_mempool_conflicts_duplicates_and_fees(funded):
    chain = funded
    w = Wallet(PARAMS, [MINER])
    (op, coin), = _mature(chain, w, 1)
    pay = lambda fee, to=ALICE: w.sign(spend_tx([op], [TxOut(coin.value - fee, to.p2pkh_script)]), [coin])  # noqa
    tx = pay(1000)
    assert chain.accept_tx(tx, 0) == 1000
    with pytest.raises(Rejected) as e:
        chain.accept_tx(tx, 0)
    assert e.value.reason is Reason.ALREADY_KNOWN
    with pytest.raises(Rejected) as e:
        chain.accept_tx(pay(2000, BOB), 0)
    assert e.value.reason is Reason.DOUBLE_SPEND
    (op2, coin2), = [(o, c) for o, c in _mature(chain, w, 2) if o != op]
    cheap = w.sign(spend_tx([op2], [TxOut(coin2.value - 10, ALICE.p2pkh_script)]), [coin2])
    with pytest.raises(Rejected) as e:
        chain.accept_tx(cheap, 0)
    assert e.value.reason is Reason.FEE_TOO_LOW
    with pytest.raises(Rejected) as e:
        chain.accept_tx(b"\x00\x01", 0)
    assert e.value.reason is Reason.MALFORMED
    assert chain.tx_rejections == {Reason.ALREADY_KNOWN: 1, Reason.DOUBLE_SPEND: 1, Reason.FEE_TOO_LOW: 1,
                                   Reason.MALFORMED: 1}


def test_mempool_chains_go_into_blocks_parents_first(funded):
    chain = funded
    w = Wallet(PARAMS, [MINER])
    (op, coin), = _mature(chain, w, 1)
    parent = w.sign(spend_tx([op], [TxOut(coin.value - 1000, MINER.p2pkh_script)]), [coin])
    chain.accept_tx(parent, 0)
    from node.chain.tx import OutPoint
    from node.chain.coins import Coin
    child_coin = Coin(parent.outputs[0].value, MINER.p2pkh_script, 0)
    child = w.sign(spend_tx([OutPoint(parent.txid, 0)], [TxOut(child_coin.value - 50_000, ALICE.p2pkh_script)]),
                   [child_coin])                         # pays the higher fee rate
    chain.accept_tx(child, 0)
    assert [e.tx.txid for e in chain.mempool.select(100_000)] == [parent.txid, child.txid]
    block = extend(chain, 1)[0]
    assert [t.txid for t in block.txs[1:]] == [parent.txid, child.txid]
    assert len(chain.mempool) == 0
    assert Wallet(PARAMS, [ALICE]).balance(chain).spendable == child.outputs[0].value
    fees = 1000 + 50_000
    assert sum(o.value for o in block.txs[0].outputs) == PARAMS.subsidy(chain.height) + fees


def test_a_block_evicts_conflicting_mempool_transactions(funded):
    chain = funded
    w = Wallet(PARAMS, [MINER])
    (op, coin), = _mature(chain, w, 1)
    mine = w.sign(spend_tx([op], [TxOut(coin.value - 1000, ALICE.p2pkh_script)]), [coin])
    theirs = w.sign(spend_tx([op], [TxOut(coin.value - 3000, BOB.p2pkh_script)]), [coin])
    chain.accept_tx(mine, 0)
    t = template(chain, txs=[theirs], fees=3000)
    block = craft(t, anns_for(chain, t.height))
    assert chain.process_block(block, block.header.time).status == ACCEPTED
    assert mine.txid not in chain.mempool and len(chain.mempool) == 0
