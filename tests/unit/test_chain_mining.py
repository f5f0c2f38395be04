"""The block miner's announcement choice (§5.10), the starting difficulty for a hash rate, announcement filtering,
and the mining driver's edges."""
from __future__ import annotations

import pytest

from node.chain import mining, params as P
from node.chain.chainstate import ACCEPTED, Chain
from node.chain.packetcrypt import announcement as A
from node.chain.packetcrypt import difficulty as D

STRONG, WEAK = 0x1F0FFFFF, 0x20020000       # work 4096 and 127


def _ann(bits, parent, nonce):
    return A.Announcement(version=1, hard_nonce=nonce, work_bits=bits, parent_block_height=parent).pack()


def _best_prefix_by_hand(anns, height, block_bits):
    """Independent reading of reload_classes: for each prefix of classes by aged target, its effective target."""
    aged = sorted({mining.aged_target(a, height) for a in anns}, key=D.compact_to_big)
    options = []
    for k in range(1, len(aged) + 1):
        members = [a for a in anns if D.compact_to_big(mining.aged_target(a, height)) <= D.compact_to_big(aged[k - 1])]
        options.append((D.compact_to_big(D.effective_target(block_bits, aged[k - 1], len(members))), members))
    return max(options, key=lambda o: o[0])[1]


def test_weak_announcements_are_left_out_when_they_cost_more_than_they_add():
    height = 110
    anns = [_ann(STRONG, 107, i) for i in range(20)] + [_ann(WEAK, 103, 100 + i) for i in range(2)]
    chosen = mining.choose_announcements(anns, height, 0x1C160000)
    assert sorted(chosen) == sorted(anns[:20])
    assert sorted(chosen) == sorted(_best_prefix_by_hand(anns, height, 0x1C160000))


def test_many_weak_announcements_are_worth_taking():
    height = 110
    anns = [_ann(STRONG, 107, i) for i in range(2)] + [_ann(WEAK, 103, 100 + i) for i in range(50)]
    chosen = mining.choose_announcements(anns, height, 0x1C160000)
    assert sorted(chosen) == sorted(anns)
    assert sorted(chosen) == sorted(_best_prefix_by_hand(anns, height, 0x1C160000))


def test_unusable_announcements_are_never_chosen():
    height = 110
    young = _ann(STRONG, 109, 1)              # age 1
    old = _ann(WEAK, 50, 2)                   # aged past 255 bits
    good = _ann(STRONG, 105, 3)
    assert mining.choose_announcements([young, old, good], height, 0x1C160000) == [good]
    assert mining.choose_announcements([young, old], height, 0x1C160000) == []


@pytest.mark.parametrize("rate,seconds,count", [(1000, 10, 16), (3500, 60, 100), (200, 5, 8), (50_000, 600, 1000)])
def test_starting_bits_meet_the_block_time(rate, seconds, count):
    bits = mining.starting_bits(rate, seconds, WEAK, count, pow_limit_bits=P.MAINNET.pow_limit_bits)
    want = rate * seconds
    got = mining.expected_hashes(bits, WEAK, count)
    if bits == P.MAINNET.pow_limit_bits:
        assert got >= want / 2                 # the pow limit is the easiest allowed: a slow miner takes longer
    else:
        assert want / 2 <= got <= want * 2, (hex(bits), got, want)


def test_starting_bits_never_below_the_pow_limit():
    bits = mining.starting_bits(1, 1, WEAK, 1, pow_limit_bits=P.MAINNET.pow_limit_bits)
    assert bits == P.MAINNET.pow_limit_bits
    # on mainnet numbers a slow miner with few announcements cannot reach a 5 s block: regtest's limit can
    assert mining.expected_hashes(P.MAINNET.pow_limit_bits, WEAK, 8) > 200 * 5
    easy = mining.starting_bits(200, 5, WEAK, 8, pow_limit_bits=P.REGTEST_POW_LIMIT)
    assert 500 <= mining.expected_hashes(easy, WEAK, 8) <= 2000


def test_measure_hashrate_with_a_given_clock():
    ticks = iter([0.0, 0.0, 0.25, 0.5, 0.5])
    assert mining.measure_hashrate(lambda: next(ticks), seconds=0.5, ann_count=4) == 4.0


@pytest.fixture(scope="module")
def fast_chain(tmp_path_factory):
    params = P.regtest(fast_anns=True, coinbase_maturity=2)
    chain = Chain(tmp_path_factory.mktemp("fast"), params)
    yield chain
    chain.close()


def test_fast_announcements_only_where_the_params_allow(fast_chain, tmp_path):
    anns = mining.mine_announcements(fast_chain, 0, 3, WEAK, hard_nonce=1, fast_depth=3)
    assert all(A.Announcement.parse(a).is_fast for a in anns)
    assert mining.usable_announcements(fast_chain, anns, 1) == anns
    faithful = Chain(tmp_path / "faithful", P.regtest(coinbase_maturity=2))
    assert mining.usable_announcements(faithful, anns, 1) == []           # same genesis, fast mode refused
    faithful.close()
    # the fast chain mines and accepts blocks with them
    block = mining.mine_block(fast_chain, b"\x51", anns, fast_chain.params.genesis_time + 10)
    assert fast_chain.process_block(block, block.header.time).status == ACCEPTED


def test_usable_announcements_drop_wrong_parents_and_immature(fast_chain):
    anns = mining.mine_announcements(fast_chain, fast_chain.height, 2, WEAK, hard_nonce=9, fast_depth=3)
    assert mining.usable_announcements(fast_chain, anns, fast_chain.height + 1) == anns   # height < 3: raw target
    foreign = A.mine(b"\x42" * 32, 0, WEAK, hard_nonce=4, fast_depth=3).pack()        # another chain's block 0
    assert mining.usable_announcements(fast_chain, [foreign], fast_chain.height + 1) == []
    assert mining.usable_announcements(fast_chain, [b"\x00" * 10], 1) == []


def test_solve_gives_up_after_its_tries(fast_chain):
    anns = mining.mine_announcements(fast_chain, 0, 2, WEAK, hard_nonce=20, fast_depth=3)
    t = mining.make_template(fast_chain, b"\x51", fast_chain.params.genesis_time + 100)
    easy = mining.solve(t, anns)
    assert easy.hashes >= 1 and easy.ann_count == 2
    assert easy.effective_target == D.effective_target(t.bits, easy.block.commitment().ann_least_work_target, 2)
    hard = mining.BlockTemplate(**{**t.__dict__, "bits": 0x1A00FFFF})
    assert mining.solve(hard, anns, max_tries=3) is None
    stop = mining.solve(hard, anns, should_stop=lambda: True, max_tries=10_000)
    assert stop is None
    with pytest.raises(ValueError, match="no announcement"):
        mining.solve(t, [], max_tries=1)
