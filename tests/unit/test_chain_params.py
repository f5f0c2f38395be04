"""PKT economics against pkt-reference.md §6, the time scale, and the retarget/median-time rules."""
from __future__ import annotations

import pytest

from node.chain import params as P
from node.chain.packetcrypt.difficulty import big_to_compact, compact_to_big
from node.chain.retarget import HeaderInfo, compute_next_target, median_time_past, next_bits

M = P.MAINNET
UNIT = 1 << 30


def test_units_and_initial_subsidy():
    assert M.units_per_coin == 2 ** 30 == 1_073_741_824
    assert M.subsidy(0) == M.subsidy(143_999) == 4166 * UNIT
    assert M.max_money == 6_000_000_000 * UNIT


@pytest.mark.parametrize("period", [0, 1, 2, 3, 10, 100, 276])
def test_subsidy_at_period_boundaries(period):
    first = period * 144_000
    want = 9 ** period * 4166 * UNIT // 10 ** period
    assert M.subsidy(first) == want
    assert M.subsidy(first + 143_999) == want
    if first:
        assert M.subsidy(first - 1) == 9 ** (period - 1) * 4166 * UNIT // 10 ** (period - 1)


def test_decimation_is_ten_percent():
    assert M.subsidy(144_000) == 4_025_887_594_905        # floor(3749.4 PKT in units): the 0.6 unit is dropped
    assert M.subsidy(288_000) == 9 ** 2 * 4166 * UNIT // 100


def test_steward_payout_exact():
    assert M.steward_payout(0) * 256 == M.subsidy(0) * 51
    assert M.steward_payout(0) / UNIT == 829.9453125
    for h in (144_000, 1_000_000, 20_000_000):
        assert M.steward_payout(h) == M.subsidy(h) * 51 // 256


def test_total_money_and_supply():
    assert M.total_money(0) == 0
    assert M.total_money(1) == M.subsidy(0)
    assert M.total_money(144_001) == 144_000 * M.subsidy(0) + M.subsidy(144_000)
    # the subsidy reaches 0 at period 277 (block 39,888,000); the whole supply is 6,441,420,151,828,656,000 units
    assert M.subsidy_for_period(276) > 0 and M.subsidy_for_period(277) == 0
    assert M.total_money(277 * 144_000) == 6_441_420_151_828_656_000
    assert M.total_money(300 * 144_000) == 6_441_420_151_828_656_000


def test_mainnet_numbers():
    assert (M.target_block_time, M.retarget_interval, M.retarget_clamp) == (60, 2016, 4)
    assert M.target_timespan == 120_960
    assert (M.steward_burn_depth, M.coinbase_maturity) == (129_600, 100)
    assert M.pow_limit_bits == 0x1F0FFFFF and M.starting_bits == 0x1F0FFFFF
    assert (M.median_time_blocks, M.max_future_seconds) == (111, 720)
    assert M.net_magic == 0x082F00FC and M.default_port == 64764
    assert not M.pc_rules.allow_fast_anns


def test_time_scale_and_describe():
    fast = M.time_scaled(block_time=10, retarget_interval=20, burn_depth=30, maturity=5, lock_blocks=6)
    assert (fast.target_block_time, fast.retarget_interval, fast.steward_burn_depth, fast.coinbase_maturity,
            fast.lock_blocks) == (10, 20, 30, 5, 6)
    assert fast.subsidy(5) == M.subsidy(5) and fast.steward_payout(5) == M.steward_payout(5)
    text = fast.describe()
    assert "target_block_time = 10   (mainnet: 60)" in text
    assert "coinbase_maturity = 5   (mainnet: 100)" in text
    assert "subsidy_period = 144000\n" in text
    with pytest.raises(ValueError, match="coinbase_maturity"):
        M.time_scaled(maturity=0)
    assert P.regtest().pc_rules.allow_fast_anns is False
    assert P.regtest(fast_anns=True).pc_rules.allow_fast_anns is True


def test_steward_is_3_of_5_behind_p2sh():
    from node.chain.script import classify, p2sh
    assert classify(P.steward_redeem_script())[0] == "multisig"
    assert classify(P.steward_redeem_script())[1][0] == 3 and len(classify(P.steward_redeem_script())[1][1]) == 5
    assert M.initial_steward_script == p2sh(P.steward_redeem_script())


# --- retarget ---------------------------------------------------------------------------------------------------

SCALED = P.regtest(retarget_interval=10, target_block_time=60)   # timespan 600 s


def _chain(times, bits):
    return [HeaderInfo(h, t, bits) for h, t in enumerate(times)]


def _next(params, headers, new_time):
    return next_bits(params, headers[-1], new_time, lambda h: headers[h])


@pytest.mark.parametrize("spacing,clamped", [(60, 540), (30, 270), (1, 150), (1000, 2400)])
def test_retarget_with_clamp_4(spacing, clamped):
    """10-block windows of a 600 s timespan: the actual span (btcd: last minus the block 9 before it) is clamped to
    [150, 2400] (a factor 4 either way) and scales the target."""
    start = 0x1D00FFFF
    headers = _chain([i * spacing for i in range(10)], start)
    assert _next(SCALED, headers, 10 * spacing) == big_to_compact(compact_to_big(start) * clamped // 600)


def test_retarget_is_capped_at_the_pow_limit():
    headers = _chain([i * 10_000 for i in range(10)], SCALED.pow_limit_bits)
    assert _next(SCALED, headers, 100_000) == SCALED.pow_limit_bits


def test_no_retarget_between_windows():
    headers = _chain([i * 5 for i in range(5)], 0x1D00FFFF)
    assert _next(SCALED, headers, 25) == 0x1D00FFFF
    assert next_bits(SCALED, None, 0, lambda h: None) == SCALED.starting_bits


def test_compute_next_target_clamps_both_ways():
    assert compute_next_target(M, 1, 0x1D00FFFF) == compute_next_target(M, M.target_timespan // 4, 0x1D00FFFF)
    assert compute_next_target(M, 10 ** 9, 0x1C00FFFF) == compute_next_target(M, M.target_timespan * 4, 0x1C00FFFF)
    assert compute_next_target(M, M.target_timespan, 0x1C00FFFF) == 0x1C00FFFF


def test_min_difficulty_rule_below_50000():
    mainnet_like = P.MAINNET.time_scaled(retarget_interval=10)
    headers = _chain([0, 60, 120], 0x1E00FFFF)
    assert _next(mainnet_like, headers, 120 + 121) == mainnet_like.pow_limit_bits      # 2 block times passed
    assert _next(mainnet_like, headers, 180) == 0x1E00FFFF
    # after a min-difficulty block the bits go back to the last real ones
    headers.append(HeaderInfo(3, 400, mainnet_like.pow_limit_bits))
    assert _next(mainnet_like, headers, 460) == 0x1E00FFFF
    no_rule = P.MAINNET.time_scaled(retarget_interval=10, min_diff_reduction_until=0)
    assert _next(no_rule, headers[:3], 10_000) == 0x1E00FFFF


def test_median_time_past():
    headers = _chain([10, 50, 20, 40, 30], 0)
    assert median_time_past(M, headers[-1], lambda h: headers[h]) == 30
    many = _chain(list(range(200)), 0)
    assert median_time_past(M, many[-1], lambda h: many[h]) == sorted(range(89, 200))[55]
