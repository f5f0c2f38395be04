"""Announcement tree: public vectors (root, R, the C reference's compressed proofs), proof round trips,
tamper detection, commitment encoding."""
from testbed.paths import VECTORS
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from node.chain.packetcrypt import ann_tree as t
from node.chain.packetcrypt.hashing import h32
from node.chain.packetcrypt.vectors import check_ann_tree

VECTORS = [v for v in json.loads(VECTORS.read_text())["vectors"]
           if v["kind"] == "packetcrypt.ann_tree"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_public_vectors(vector):
    check_ann_tree(vector)
    tree = t.AnnTree.from_hashes([bytes.fromhex(h) for h in vector["inputs"]["ann_hashes"]])
    assert tree.entry_count == vector["outputs"]["table_entry_count"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_compressed_proof_matches_the_c_prover(vector):
    out = vector["outputs"]
    proof = out["optional_proof"]
    tree = t.AnnTree.from_hashes([bytes.fromhex(h) for h in vector["inputs"]["ann_hashes"]])
    items = [int(x, 16) for x in proof["item_nos_u64_hex"]]
    assert [tree.index_for_item(i) for i in items] == proof["ann_indexes"]
    assert tree.make_proof(items).hex() == proof["compressed_ann_proof_hex"]
    hashes = [tree.ann_hashes[i] for i in proof["ann_indexes"]]
    r = t.pcp_hash(hashes, tree.ann_count, items, bytes.fromhex(proof["compressed_ann_proof_hex"]))
    assert r.hex() == out["commitment_R"]


def _hashes(n, rnd):
    # hypothesis' random may be degenerate (all zero); hashing a seed and index gives distinct keys
    seed = rnd.getrandbits(64).to_bytes(8, "little")
    return [h32(seed + i.to_bytes(4, "little")) for i in range(n)]


def _tree(n, rnd):
    return t.AnnTree.from_hashes(_hashes(n, rnd))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4), st.randoms())
def test_every_proof_verifies(n, items, rnd):
    tree = _tree(n, rnd)
    proof = tree.make_proof(items)
    hashes = [tree.ann_hashes[tree.index_for_item(i)] for i in items]
    assert t.pcp_hash(hashes, tree.ann_count, items, proof) == tree.commitment


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 200), st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4), st.randoms())
def test_tampered_proofs_fail(n, items, rnd):
    tree = _tree(n, rnd)
    proof = bytearray(tree.make_proof(items))
    hashes = [tree.ann_hashes[tree.index_for_item(i)] for i in items]
    if proof:
        pos = rnd.randrange(len(proof))
        proof[pos] ^= 1 << rnd.randrange(8)
        try:
            assert t.pcp_hash(hashes, tree.ann_count, items, bytes(proof)) != tree.commitment
        except t.AnnProofError:
            pass
    with pytest.raises(t.AnnProofError):
        t.pcp_hash(hashes, tree.ann_count, items, bytes(tree.make_proof(items)) + b"\0")
    good = tree.make_proof(items)
    if good:
        with pytest.raises(t.AnnProofError):
            t.pcp_hash(hashes, tree.ann_count, items, good[:-1])
    other = hashes[:]
    other[0] = bytes([other[0][0] ^ 1]) + other[0][1:]
    try:
        assert t.pcp_hash(other, tree.ann_count, items, good) != tree.commitment
    except t.AnnProofError:
        pass


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 100), st.randoms())
def test_commitment_changes_with_any_input(n, rnd):
    hashes = _hashes(n, rnd)
    base = t.AnnTree.from_hashes(hashes).commitment
    changed = list(hashes)
    k = rnd.randrange(n)
    changed[k] = changed[k][:31] + bytes([changed[k][31] ^ 1])       # a byte outside the sort key
    assert t.AnnTree.from_hashes(changed).commitment != base
    assert t.AnnTree.from_hashes(hashes + [h32(b"extra" + hashes[0])]).commitment != base
    if n > 1:
        assert t.AnnTree.from_hashes(hashes[1:]).commitment != base


def test_sort_and_dedupe_drops_duplicates_and_reserved_keys():
    a = (5).to_bytes(8, "little") + b"a" * 24
    a2 = (5).to_bytes(8, "little") + b"b" * 24
    b = (7).to_bytes(8, "little") + os.urandom(24)
    zero = bytes(8) + os.urandom(24)
    full = b"\xff" * 8 + os.urandom(24)
    assert t.sort_and_dedupe([b, a2, zero, a, full]) == [a, b]


def test_tree_rejects_unsorted_input():
    a = (5).to_bytes(8, "little") + bytes(24)
    b = (7).to_bytes(8, "little") + bytes(24)
    with pytest.raises(ValueError):
        t.AnnTree([b, a])
    with pytest.raises(ValueError):
        t.AnnTree([])


def test_pcp_hash_rejects_bad_arguments():
    with pytest.raises(t.AnnProofError):
        t.pcp_hash([bytes(32)] * 4, 0, [0] * 4, b"")
    with pytest.raises(t.AnnProofError):
        t.pcp_hash([bytes(32)] * 3, 5, [0] * 4, b"")


def test_coinbase_commitment_vector():
    # pktd packetcrypt_test.go
    raw = bytes.fromhex("09f91102ffff0320e531a06a3c672d3d6f3d31cd9e8c77b2c0afe03d0a1b9546e8c20af5f17700d7"
                        "ba00000000000000")
    c = t.CoinbaseCommitment.parse(raw)
    assert c.ann_least_work_target == 0x2003FFFF and c.ann_count == 186
    assert c.pack() == raw
    assert c.script() == b"\x6a\x30" + raw


def test_commitment_insert_and_extract():
    c = t.CoinbaseCommitment(0x2003FFFF, bytes(range(32)), 42)
    coinbase = b"\x01\x00\x00\x00prefix" + t.COMMIT_PATTERN + b"suffix"
    patched = t.insert_commitment(coinbase, c)
    assert t.COMMIT_PATTERN not in patched and len(patched) == len(coinbase)
    assert t.extract_commitment(patched) == c
    with pytest.raises(t.CommitmentError):
        t.insert_commitment(b"no pattern", c)
    with pytest.raises(t.CommitmentError):
        t.extract_commitment(b"nothing here")
    with pytest.raises(t.CommitmentError):
        t.CoinbaseCommitment.parse(b"\0" * 48)


def test_commitment_from_output_scripts():
    c = t.CoinbaseCommitment(0x2003FFFF, bytes(range(32)), 7)
    assert t.commitment_from_scripts([b"\x76\xa9" + bytes(23), c.script(), b"\x6a\x30" + bytes(48)]) == c
    with pytest.raises(t.CommitmentError):
        t.commitment_from_scripts([b"\x6a\x30\x09\xf9\x11\x02"])     # the prefix alone is not enough
