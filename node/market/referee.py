"""The metering referee, pure part: what each lease should have cost against what was paid for it.

The testbed owns the links, so it can count the bytes each lease really carried. A lease is priced as a fixed
part (what a term lease costs, bought by swap) plus a per-volume part in atomic PKT units per GB (10^9 bytes, as
in the route server's LEASE entity), rounded down::

    owed = fixed_price + bytes_carried * price_per_gb // 10**9

Given the bytes and the payments per lease, :func:`audit` reports for every lease ``over`` (paid - owed, if
positive), ``under`` (owed - paid, if positive) and a verdict: ``ok`` when the difference is within
``tolerance`` (for per-unit channel payments, one unit is the exposure the protocol allows), else ``overpaid``
or ``underpaid``. A payment for a lease that carried nothing we know of is all overpayment.
"""
from __future__ import annotations

from dataclasses import dataclass

GB = 10 ** 9
OK, OVERPAID, UNDERPAID = "ok", "overpaid", "underpaid"


@dataclass(frozen=True)
class LeaseUsage:
    lease: str
    bytes_carried: int
    price_per_gb: int = 0
    fixed_price: int = 0

    def __post_init__(self):
        if not isinstance(self.lease, str) or not self.lease:
            raise ValueError("lease must be a non-empty string")
        for name in ("bytes_carried", "price_per_gb", "fixed_price"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"lease {self.lease}: {name} must be an integer >= 0, got {v!r}")

    @property
    def owed(self) -> int:
        return self.fixed_price + self.bytes_carried * self.price_per_gb // GB


@dataclass(frozen=True)
class AuditLine:
    lease: str
    bytes_carried: int
    owed: int
    paid: int
    over: int
    under: int
    verdict: str


def audit(usages, payments: dict, tolerance: int = 0) -> list:
    """One AuditLine per lease (metered or paid), in lease order."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError("tolerance must be an integer >= 0")
    by_lease = {}
    for u in usages:
        if u.lease in by_lease:
            raise ValueError(f"lease {u.lease} metered twice")
        by_lease[u.lease] = u
    for lease, paid in payments.items():
        if isinstance(paid, bool) or not isinstance(paid, int) or paid < 0:
            raise ValueError(f"lease {lease}: payment must be an integer >= 0, got {paid!r}")
    lines = []
    for lease in sorted(set(by_lease) | set(payments)):
        u = by_lease.get(lease)
        owed = u.owed if u else 0
        paid = payments.get(lease, 0)
        diff = paid - owed
        verdict = OK if abs(diff) <= tolerance else OVERPAID if diff > 0 else UNDERPAID
        lines.append(AuditLine(lease, u.bytes_carried if u else 0, owed, paid, max(diff, 0), max(-diff, 0), verdict))
    return lines
