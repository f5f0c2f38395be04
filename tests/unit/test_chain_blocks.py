"""A 30-block regtest chain mined in-process with faithful announcements and real PacketCrypt proofs: every block
passes the faithful validator on a fresh node, the coinbases pay the steward exactly, the retarget runs; then every
rejection reason a block can get, each from a block that is wrong in exactly that way."""
from __future__ import annotations

import os
import sys
from dataclasses import replace

import nacl.signing
import pytest

from node.chain import blocks, consensus, mining, params as P
from node.chain.chainstate import ACCEPTED, REJECTED, Chain
from node.chain.consensus import Reason
from node.chain.keys import Key
from node.chain.packetcrypt import announcement as A
from node.chain.packetcrypt import block as pc_block
from node.chain.packetcrypt.ann_tree import AnnTree, CoinbaseCommitment, sort_and_dedupe
from node.chain.packetcrypt.hashing import h32
from node.chain.script import op_return, p2pkh
from node.chain.tx import OutPoint, Transaction, TxIn, TxOut
from node.chain.wallet import Wallet, spend_tx

sys.path.insert(0, os.path.dirname(__file__))
from chain_helpers import ANN_BITS, MINER, anns_for, block_time, craft, extend, next_block, template  # noqa: E402

PARAMS = P.regtest(retarget_interval=10, coinbase_maturity=3)
ALICE = Key.from_seed("alice")


@pytest.fixture(scope="module")
def chain30(tmp_path_factory):
    """30 blocks; from height 5 on each block carries a payment from the miner to Alice out of the mempool."""
    chain = Chain(tmp_path_factory.mktemp("chain30"), PARAMS)
    wallet = Wallet(PARAMS, [MINER])
    mined = []
    for h in range(1, 31):
        if h >= 5:
            tx = wallet.send(chain, ALICE.p2pkh_script, 1000 * h, fee=500)
            assert chain.accept_tx(tx, block_time(chain, h)) == 500
        mined += extend(chain, 1)
    yield chain, mined
    chain.close()


def test_thirty_blocks_pass_the_faithful_validator_on_a_fresh_node(chain30, tmp_path):
    chain, mined = chain30
    assert chain.height == 30
    assert not PARAMS.pc_rules.allow_fast_anns
    fresh = Chain(tmp_path / "fresh", PARAMS)
    for b in mined:
        r = fresh.process_block(blocks.Block.parse(b.raw), b.header.time)
        assert r.status == ACCEPTED, (r.reason, r.detail)
    assert fresh.tip.hash == chain.tip.hash
    assert sum(fresh.rejections.values()) == 0
    fresh.close()


def test_every_block_proof_checks_with_faithful_announcements(chain30):
    chain, mined = chain30
    for h, b in enumerate(mined, start=1):
        assert b.proof.version == 2 and len(b.proof.anns) == 4
        for raw in b.proof.anns:
            ann = A.Announcement.parse(raw)
            assert ann.version == 1 and not ann.is_fast and ann.work_bits == ANN_BITS
            A.validate(raw, chain.block_hash_at(ann.parent_block_height), min_v1_parent_height=0)
        work_hash = consensus.check_proof(b, h, PARAMS, lambda x: chain.block_hash_at(x) if x < h else None)
        assert len(work_hash) == 32


def test_coinbases_pay_subsidy_and_exactly_the_steward_share(chain30):
    chain, mined = chain30
    for h, b in enumerate(mined, start=1):
        cb = b.txs[0]
        subsidy = PARAMS.subsidy(h)
        steward = [o for o in cb.outputs if o.script_pubkey == PARAMS.initial_steward_script]
        assert [o.value for o in steward] == [subsidy * 51 // 256]
        fees = 500 if h >= 5 else 0
        assert sum(o.value for o in cb.outputs) == subsidy + fees
        assert blocks.coinbase_height(cb) == h
        assert b.commitment().ann_count >= 1


def test_transactions_were_mined_and_alice_holds_them(chain30):
    chain, mined = chain30
    assert all(len(b.txs) == 2 for b in mined[4:])
    assert Wallet(PARAMS, [ALICE]).balance(chain).spendable == sum(1000 * h for h in range(5, 31))
    assert len(chain.mempool) == 0


def test_retarget_ran_with_the_real_algorithm(chain30):
    chain, mined = chain30
    # blocks 20 s apart against a 60 s target: each window of 10 makes the target 180/600 of the previous one
    bits = [b.header.bits for b in mined]
    assert bits[:9] == [PARAMS.pow_limit_bits] * 9
    from node.chain.retarget import compute_next_target
    assert bits[9] == compute_next_target(PARAMS, 9 * 20, PARAMS.pow_limit_bits)
    assert bits[19] == compute_next_target(PARAMS, 9 * 20, bits[9])
    assert bits[9] != bits[8] and bits[19] != bits[18]


def test_locator_from_the_tip_back_to_genesis(chain30):
    chain, _ = chain30
    heights = [chain.index[h].height for h in chain.locator()]
    assert heights == [30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 19, 15, 7, 0]


def test_persisted_chain_reopens(chain30, tmp_path):
    chain, _ = chain30
    reopened = Chain(chain.store.directory, PARAMS)
    assert reopened.tip.hash == chain.tip.hash and reopened.height == 30
    assert reopened.store.coin_count() == chain.store.coin_count()
    assert reopened.election == chain.election
    reopened.close()


# --- rejections: each block is wrong in one way -----------------------------------------------------------------

def _submit(chain, block, now=None):
    before = chain.tip.hash
    r = chain.process_block(block, block.header.time if now is None else now)
    assert chain.tip.hash == before
    return r


SEEN: set[Reason] = set()


def _expect(chain, block, reason, now=None):
    SEEN.add(reason)
    n = chain.rejections[reason]
    r = _submit(chain, block, now)
    assert (r.status, r.reason) == (REJECTED, reason), (r.status, r.reason, r.detail)
    assert chain.rejections[reason] == n + 1
    return r


def _good(chain):
    return next_block(chain, txs=[])


def _rehash(block, txs):
    """Same proof, other transactions, a correct merkle root (for checks that come before the proof)."""
    header = replace(block.header, merkle_root=blocks.merkle_root([x.txid for x in txs]))
    return blocks.Block(header, txs, block.proof)


def test_malformed_bytes(chain30):
    chain, _ = chain30
    r = chain.process_block(b"\x01" * 100, 0)
    assert r.reason is Reason.MALFORMED and r.status == REJECTED


def test_bad_bits_issue13_no_exception(chain30):
    chain, _ = chain30
    good = _good(chain)
    for bits in (0x01810000, 0, 0x2100FFFF):     # negative, zero, easier than the pow limit
        _expect(chain, replace(good, header=replace(good.header, bits=bits)), Reason.BAD_BITS)


def test_time_too_new_and_too_old(chain30):
    chain, _ = chain30
    good = _good(chain)
    _expect(chain, good, Reason.TIME_TOO_NEW, now=good.header.time - PARAMS.max_future_seconds - 1)
    t = template(chain, txs=[], now=chain.median_time_past())
    t = replace(t, time=chain.median_time_past())
    _expect(chain, craft(t, anns_for(chain, t.height)), Reason.TIME_TOO_OLD)


def test_missing_proof_and_structure(chain30):
    chain, _ = chain30
    good = _good(chain)
    _expect(chain, replace(good, proof=None), Reason.MISSING_PROOF)
    _expect(chain, replace(good, txs=()), Reason.NO_TRANSACTIONS)
    _expect(chain, replace(good, header=replace(good.header, merkle_root=bytes(32))), Reason.BAD_MERKLE_ROOT)
    cb = good.txs[0]
    other_cb = blocks.coinbase_tx(chain.height + 1, [TxOut(1, p2pkh(bytes(20)))], b"second")
    _expect(chain, _rehash(good, (cb, other_cb)), Reason.BAD_COINBASE)
    spend = Wallet(PARAMS, [MINER]).send(chain, ALICE.p2pkh_script, 5, fee=0)
    _expect(chain, _rehash(good, (spend, cb)), Reason.BAD_COINBASE)
    _expect(chain, _rehash(good, (cb, spend, spend)), Reason.DUPLICATE_TX)
    neg = spend_tx([OutPoint(b"\x01" * 32, 0)], [TxOut(-1, b"\x51")])
    _expect(chain, _rehash(good, (cb, neg)), Reason.BAD_AMOUNT)
    empty = Transaction((TxIn(OutPoint(b"\x01" * 32, 0)),), ())
    _expect(chain, _rehash(good, (cb, empty)), Reason.BAD_TX)
    twice = spend_tx([OutPoint(b"\x01" * 32, 0)] * 2, [TxOut(1, b"\x51")])
    _expect(chain, _rehash(good, (cb, twice)), Reason.DOUBLE_SPEND)
    big = [spend_tx([OutPoint(bytes([i + 1]) * 32, 0)], [TxOut(0, op_return(b"x" * 520))] * 1200) for i in range(2)]
    _expect(chain, _rehash(good, (cb, *big)), Reason.BLOCK_TOO_BIG)


def test_bad_difficulty_and_height(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    wrong_bits = replace(t, bits=PARAMS.pow_limit_bits if t.bits != PARAMS.pow_limit_bits else 0x2000FFFF)
    _expect(chain, craft(wrong_bits, anns_for(chain, t.height)), Reason.BAD_DIFFICULTY)
    wrong_height = replace(t, height=t.height + 1)          # the coinbase commits to another height
    block = craft(wrong_height, anns_for(chain, t.height))
    _expect(chain, block, Reason.BAD_HEIGHT)


def test_non_final_transaction(chain30):
    chain, _ = chain30
    w = Wallet(PARAMS, [MINER])
    op, coin = next((op, c) for op, c in w.coins(chain) if chain.height + 1 - c.height >= PARAMS.coinbase_maturity)
    locked = w.sign(spend_tx([op], [TxOut(coin.value, ALICE.p2pkh_script)], lock_time=chain.height + 5), [coin])
    t = template(chain, txs=[locked])
    _expect(chain, craft(t, anns_for(chain, t.height)), Reason.NON_FINAL)


def test_pcp_version_and_content_proof(chain30):
    chain, _ = chain30
    good = _good(chain)
    _expect(chain, replace(good, proof=replace(good.proof, version=1)), Reason.BAD_PCP_VERSION)
    t = template(chain, txs=[])
    _expect(chain, craft(t, anns_for(chain, t.height), content_proof=bytes(32)), Reason.BAD_CONTENT_PROOF)


def test_announcement_parent_unknown(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    # mined on a parent the chain does not have at that height (a height above the tip)
    ann = A.mine(b"\x07" * 32, t.height + 10, ANN_BITS, hard_nonce=3).pack()
    _expect(chain, craft(t, [ann]), Reason.ANN_PARENT_UNKNOWN)


def test_immature_announcement(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    young = mining.mine_announcements(chain, chain.height - 1, 1, ANN_BITS, hard_nonce=11)   # age 2 at t.height
    _expect(chain, craft(t, young), Reason.ANN_IMMATURE)


def test_announcement_target_above_commitment(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    anns = anns_for(chain, t.height)
    tree = AnnTree(sort_and_dedupe(h32(a) for a in anns))
    claim = CoinbaseCommitment(0x1F0FFFFF, tree.commitment, tree.ann_count)    # claims more work than they have
    _expect(chain, craft(t, anns, commitment=claim), Reason.ANN_TARGET_ABOVE_COMMITMENT)


def test_announcement_signature(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    signer, other = nacl.signing.SigningKey(b"\x01" * 32), nacl.signing.SigningKey(b"\x02" * 32)
    pk = signer.verify_key.encode()
    signed = mining.mine_announcements(chain, chain.height - 4, 1, ANN_BITS, hard_nonce=21, signing_key=pk)
    ok = craft(t, signed, signing_keys={pk: signer})
    bad = craft(t, signed, signing_keys={pk: other})
    _expect(chain, bad, Reason.BAD_ANN_SIGNATURE)
    consensus.check_proof(ok, t.height, PARAMS, lambda x: chain.block_hash_at(x) if x < t.height else None)


def test_bad_commitment(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    anns = anns_for(chain, t.height)
    no_commit = blocks.coinbase_tx(t.height, [TxOut(t.subsidy - t.steward_payout, MINER.p2pkh_script),
                                              TxOut(t.steward_payout, t.steward_script)])
    _expect(chain, craft(t, anns, coinbase=no_commit), Reason.BAD_COMMITMENT)
    tree = AnnTree(sort_and_dedupe(h32(a) for a in anns))
    zero_target = CoinbaseCommitment(0, tree.commitment, tree.ann_count)
    _expect(chain, craft(t, anns, commitment=zero_target), Reason.BAD_COMMITMENT)


def test_bad_pow(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    good = craft(t, anns_for(chain, t.height))
    header80 = good.header.serialize()
    commit = good.commitment()
    target = pc_block.difficulty.effective_target(good.header.bits, commit.ann_least_work_target, commit.ann_count)
    anns = anns_for(chain, t.height)
    hashes = sort_and_dedupe(h32(a) for a in anns)
    by = {h32(a): a for a in anns}
    ann_set = pc_block.BlockAnnSet([by[h] for h in hashes], AnnTree(hashes), commit)
    for nonce2 in range(1000):               # a nonce2 whose hash misses the effective target
        work, items = pc_block.pc_hash(header80, nonce2, ann_set.anns)
        if not pc_block.difficulty.hash_meets_target(work, target):
            break
    proof = pc_block.make_proof(ann_set, pc_block.BlockSolution(nonce2, items, work))
    _expect(chain, replace(good, proof=proof), Reason.BAD_POW)


def test_bad_announcement_and_fast_mode_rejected_by_the_faithful_validator(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    ann = bytearray(anns_for(chain, t.height)[0])
    ann[100] ^= 1                               # inside the encrypted merkle branch
    _expect(chain, craft(t, [bytes(ann)]), Reason.BAD_ANN)
    p = chain.height - 4
    fast = A.mine(chain.block_hash_at(p), p, ANN_BITS, hard_nonce=5, fast_depth=3).pack()
    r = _expect(chain, craft(t, [fast]), Reason.BAD_ANN)
    assert "FAST_MODE_NOT_ALLOWED" in r.detail


def test_bad_announcement_proof(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    good = craft(t, anns_for(chain, t.height))
    tampered = bytearray(good.proof.ann_proof)
    tampered[-1] ^= 0xFF
    _expect(chain, replace(good, proof=replace(good.proof, ann_proof=bytes(tampered))), Reason.BAD_ANN_PROOF)


def _mature_coin(chain):
    w = Wallet(PARAMS, [MINER])
    return next((op, c) for op, c in w.coins(chain) if c.coinbase and not c.steward
                and chain.height + 1 - c.height >= PARAMS.coinbase_maturity)


def _tx_block(chain, txs, fees=0):
    t = template(chain, txs=txs, fees=fees)
    return craft(t, anns_for(chain, t.height))


def test_connect_time_rejections(chain30):
    chain, _ = chain30
    w = Wallet(PARAMS, [MINER])
    op, coin = _mature_coin(chain)
    pay = lambda value, script=ALICE.p2pkh_script, ops=(op,), coins=(coin,): w.sign(   # noqa: E731
        spend_tx(list(ops), [TxOut(value, script)]), list(coins))
    _expect(chain, _tx_block(chain, [pay(10), pay(11)]), Reason.DOUBLE_SPEND)
    ghost = Transaction((TxIn(OutPoint(b"\x09" * 32, 0), b"\x51"),), (TxOut(1, b"\x51"),))
    _expect(chain, _tx_block(chain, [ghost]), Reason.MISSING_INPUT)
    _expect(chain, _tx_block(chain, [pay(coin.value + 1)]), Reason.SPEND_TOO_HIGH)
    young_op, young = next((o, c) for o, c in w.coins(chain) if c.coinbase and chain.height + 1 - c.height <
                           PARAMS.coinbase_maturity)
    _expect(chain, _tx_block(chain, [w.sign(spend_tx([young_op], [TxOut(1, b"\x51")]), [young])]),
            Reason.IMMATURE_SPEND)
    signed = pay(1)
    altered = replace(signed, outputs=(TxOut(2, ALICE.p2pkh_script),))      # the signature covers value 1
    _expect(chain, _tx_block(chain, [altered]), Reason.BAD_SIGNATURE)
    no_sig = spend_tx([op], [TxOut(1, b"\x51")])
    _expect(chain, _tx_block(chain, [no_sig]), Reason.SCRIPT_FAILED)


def test_wrong_subsidy_and_steward_output(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    anns = anns_for(chain, t.height)
    greedy = replace(t, subsidy=t.subsidy + 1)
    _expect(chain, craft(greedy, anns), Reason.WRONG_SUBSIDY)
    stingy = replace(t, steward_payout=t.steward_payout - 1)
    _expect(chain, craft(stingy, anns), Reason.WRONG_STEWARD_OUTPUT)
    elsewhere = replace(t, steward_script=MINER.p2pkh_script)
    _expect(chain, craft(elsewhere, anns), Reason.WRONG_STEWARD_OUTPUT)


def test_invalid_parent(chain30):
    chain, _ = chain30
    t = template(chain, txs=[])
    bad = craft(replace(t, subsidy=t.subsidy + 1), anns_for(chain, t.height))
    _expect(chain, bad, Reason.WRONG_SUBSIDY)
    child_t = replace(t, height=t.height + 1, prev_hash=bad.hash, time=t.time + 20,
                      subsidy=PARAMS.subsidy(t.height + 1))
    child = craft(child_t, anns_for(chain, t.height))
    _expect(chain, child, Reason.INVALID_PARENT)
    assert _submit(chain, bad).reason is Reason.WRONG_SUBSIDY      # a known-invalid block stays rejected


def test_every_block_reason_was_produced():
    """The tests above produced every Reason a block can get (run as a whole module)."""
    if len(SEEN) < 10:
        pytest.skip("only meaningful when the whole module ran")
    elsewhere = {Reason.MALFORMED,            # test_malformed_bytes (a decode error, not a crafted block)
                 Reason.STEWARD_BURNED,       # test_chain_election.py: needs a chain past the burn depth
                 Reason.ALREADY_KNOWN, Reason.FEE_TOO_LOW}       # mempool only: test_chain_state.py
    assert set(Reason) - SEEN - elsewhere == set()
