"""Difficulty arithmetic: public vectors, the reference's worked examples, compact encoding properties."""
from testbed.paths import VECTORS
import json

import pytest
from hypothesis import given, strategies as st

from node.chain.packetcrypt import difficulty as d
from node.chain.packetcrypt.vectors import check_difficulty

VECTORS = [v for v in json.loads(VECTORS.read_text())["vectors"]
           if v["kind"] == "packetcrypt.difficulty"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_public_vectors(vector):
    check_difficulty(vector)


@pytest.mark.parametrize("age,want", [(2, d.INVALID_TARGET), (3, 0x1F0FFFFF), (4, 0x1F1FFFFE), (5, 0x1F3FFFFC),
                                      (10, 0x2007FFFF), (259, d.INVALID_TARGET), (2**32 - 1, d.INVALID_TARGET)])
def test_aged_target_v2_examples(age, want):
    assert d.aged_ann_target(0x1F0FFFFF, age, 2) == want


def test_reference_examples():
    assert d.work_for_compact(0x20020000) == 127
    assert d.soft_nonce_max(0x20020000) == 32767
    assert d.work_for_compact(0x207FFFFF) == 2
    assert d.effective_target(0x1C160000, 0x2003FFFF, 47831, 2) == 0x191627E1
    # tarForWork(work(T)) of the vectors' definition; (the pool's JS annWorkToTarget rounds in doubles instead)
    assert d.big_to_compact(d.target_for_work(d.work_for_compact(0x2003FFFF))) == 0x2003FFFF


def test_compact_bitcoin_examples():
    assert d.compact_to_big(0x1D00FFFF) == 0xFFFF << 208
    assert d.big_to_compact(0xFFFF << 208) == 0x1D00FFFF
    assert d.compact_to_big(0x01003456) == 0
    assert d.compact_to_big(0x02123456) == 0x1234
    assert d.big_to_compact(0x80) == 0x02008000            # the mantissa sign bit moves a byte up
    assert d.compact_to_big(0x04923456) == -0x12345600


@given(st.integers(1, 2**256 - 1))
def test_compact_keeps_the_top_bytes(n):
    c = d.big_to_compact(n)
    back = d.compact_to_big(c)
    assert 0 < back <= n
    shift = max(0, n.bit_length() - 24)
    assert back >> shift == n >> shift or back >> (shift + 8) == n >> (shift + 8)


def test_no_announcements_means_impossible():
    assert d.effective_target(0x1D00FFFF, 0x2003FFFF, 0) == 0
    assert d.effective_target(0x1D00FFFF, 0x2003FFFF, 1) > 0


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_more_announcements_never_make_the_block_harder(n1, n2):
    lo, hi = sorted((n1, n2))
    for v in (1, 2):
        assert d.compact_to_big(d.effective_target(0x1C160000, 0x2003FFFF, hi, v)) >= \
            d.compact_to_big(d.effective_target(0x1C160000, 0x2003FFFF, lo, v))


def test_ann_min_diff_bounds():
    assert d.is_ann_min_diff_ok(0x207FFFFF, 2)
    assert not d.is_ann_min_diff_ok(0x20800000, 2)
    assert not d.is_ann_min_diff_ok(0, 2)
    assert d.is_ann_min_diff_ok(0x207FFFFF, 1)
    assert not d.is_ann_min_diff_ok(0x20FFFFFF, 1)         # sign bit: a negative target has no work
    assert not d.is_ann_min_diff_ok(0x21000000, 1)


def test_work_check_is_less_or_equal():
    target = 0x1F0FFFFF
    limit = d.compact_to_big(target)
    assert d.hash_meets_target(limit.to_bytes(32, "little"), target)
    assert not d.hash_meets_target((limit + 1).to_bytes(32, "little"), target)


def test_soft_nonce_max_saturates():
    assert d.soft_nonce_max(0x207FFFFF) == 1023
    assert d.soft_nonce_max(0x1E00FFFF) == 0xFFFFFF


def test_negative_bits_do_not_divide_by_zero():
    # issue 13 item 4: 0x01810000 is -1 in compact form; work(-1) used to divide by zero
    assert d.compact_to_big(0x01810000) == -1
    assert d.work_for_compact(0x01810000) == 0
    assert d.effective_target(0x01810000, 0x20020000, 100) == 0        # a negative block target is unsatisfiable
    assert not d.hash_meets_target(bytes(32), 0x01810000)
    assert not d.is_ann_min_diff_ok(0x01810000, 1) and not d.is_ann_min_diff_ok(0x01810000, 2)


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 20), st.integers(1, 2))
def test_any_bits_any_function_no_exception(block_bits, ann_bits, count, version):
    d.work_for_compact(block_bits)
    d.effective_target(block_bits, ann_bits, count, version)
    d.aged_ann_target(ann_bits, count % 300, version)
    d.is_ann_min_diff_ok(ann_bits, version)
    d.soft_nonce_max(ann_bits)
