"""The metering referee (node/market/referee.py): over- and under-payment per lease."""
import pytest
from hypothesis import given, strategies as st

from node.market.referee import GB, LeaseUsage, audit


def test_audit_per_lease():
    usages = [LeaseUsage("L1", 3 * GB, price_per_gb=100),                  # owes 300
              LeaseUsage("L2", GB // 2, price_per_gb=100, fixed_price=1000),  # owes 1050
              LeaseUsage("L3", 10, price_per_gb=100)]                       # owes 0 (rounded down)
    lines = {a.lease: a for a in audit(usages, {"L1": 300, "L2": 1000, "L3": 5, "L9": 42})}
    assert (lines["L1"].owed, lines["L1"].verdict) == (300, "ok")
    assert (lines["L2"].under, lines["L2"].over, lines["L2"].verdict) == (50, 0, "underpaid")
    assert (lines["L3"].over, lines["L3"].verdict) == (5, "overpaid")
    assert (lines["L9"].bytes_carried, lines["L9"].owed, lines["L9"].over) == (0, 0, 42)


def test_tolerance_allows_one_unit_of_exposure():
    (line,) = audit([LeaseUsage("L1", GB, price_per_gb=100)], {"L1": 93}, tolerance=7)
    assert line.verdict == "ok" and line.under == 7


@pytest.mark.parametrize("make", [
    lambda: LeaseUsage("", 1),
    lambda: LeaseUsage("L1", -1),
    lambda: LeaseUsage("L1", 1, price_per_gb=1.5),
    lambda: audit([LeaseUsage("L1", 1)], {"L1": -3}),
    lambda: audit([LeaseUsage("L1", 1), LeaseUsage("L1", 2)], {}),
    lambda: audit([], {}, tolerance=-1),
])
def test_bad_input_is_a_clear_error(make):
    with pytest.raises(ValueError):
        make()


@given(st.integers(0, 10 ** 13), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(0, 10 ** 9))
def test_over_minus_under_is_paid_minus_owed(carried, per_gb, fixed, paid):
    (line,) = audit([LeaseUsage("L", carried, per_gb, fixed)], {"L": paid})
    assert line.owed == fixed + carried * per_gb // GB
    assert line.over - line.under == paid - line.owed and min(line.over, line.under) == 0
