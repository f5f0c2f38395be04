"""Packet priority and the customer bit on a lease (PKT paper §2.1, §2.2, §7): the per-packet rules.

The fields live in the switch header's traffic class (switch_header.py: priority bits 15..12, customer bit 11,
0xffff = unclassed). Unclassed packets count as priority 0 without the customer bit and stay unclassed.

Ingress, per incoming lease (:class:`LeaseIngress`):
  1. clear-customer-bit: the customer bit is cleared (the lease comes from a peer or a provider);
  2. re-prioritisation against max-priority-bandwidth L (priority x kB/s). A :class:`PriorityMeter` (an IIR
     filter) measures M = priority x kB/s of the lease's traffic that flowed through the device (the caller
     charges a packet when it is accepted for forwarding, see lease_datapath.py). Every priority of the lease
     is multiplied by one scale s <= 1, which moves multiplicatively towards holding M at L (and back to 1 when
     the lease stays under its limit), so the relative priorities inside the lease survive. Priorities are
     4-bit integers on the wire: the scaled value is rounded by error diffusion (the fractional remainder is
     carried to the next packet), so the mean priority is exact; the unrounded value orders the packet at
     this device's egress.

  Why the meter counts forwarded rather than offered traffic: with offered traffic a flood that is 99 % dropped
  downstream would still be charged for all of it, and the outcome would depend on who floods harder. Charging
  what flows makes max-priority-bandwidth a share: under overload the egress drops lowest priority first, every
  saturated lease settles at the same effective priority p*, and lease i gets L_i / p* of the link, so equal
  L -> equal shares and L/10 -> a tenth (paper §2.1). Downstream devices see only forwarded traffic anyway.

Egress, per outgoing lease: :func:`deprioritize_non_customer` caps the priority of packets without the customer
bit at the lease's P.
"""
from __future__ import annotations

import math

from node.cjdns.switch_header import MAX_PRIORITY, UNCLASSED, is_classed, is_customer, make_traffic_class, priority_of

DEFAULT_TAU_S = 0.3


class PriorityMeter:
    """An exponentially weighted (first-order IIR) rate estimate of priority x kB per second.

    ``add(amount, now)`` adds an impulse; ``rate(now)`` is the filter output: for a steady input of r units/s
    it converges to r with time constant ``tau_s``.
    """

    def __init__(self, tau_s: float = DEFAULT_TAU_S):
        if not tau_s > 0:
            raise ValueError("tau_s must be > 0")
        self.tau_s = float(tau_s)
        self._value = 0.0
        self._at = None

    def _decay_to(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._value *= math.exp(-(now - self._at) / self.tau_s)
        if self._at is None or now > self._at:
            self._at = now

    def add(self, amount: float, now: float) -> None:
        self._decay_to(now)
        self._value += amount / self.tau_s

    def rate(self, now: float) -> float:
        self._decay_to(now)
        return self._value


class LeaseIngress:
    """Ingress state of one incoming lease: its meter, its priority scale and the error-diffusion remainder.

    The scale s (0 < s <= 1) multiplies every priority of the lease. It follows the meter multiplicatively:
    s <- s * (L / M) ** min(1, dt / tau) each time it is read, capped at 1, so the priority-bandwidth that flows
    converges to L without a jump per packet.
    """

    MIN_SCALE = 1e-4

    def __init__(self, lease, tau_s: float = DEFAULT_TAU_S):
        self.lease = lease
        self.meter = PriorityMeter(tau_s)
        self._scale = 1.0
        self._scaled_at = None
        self._carry = 0.0
        self.counters = {"packets": 0, "bytes": 0, "reprioritized": 0, "customer_bit_cleared": 0}

    def scale(self, now: float) -> float:
        """The factor priorities are multiplied by now (1 without a limit)."""
        limit = self.lease.max_priority_bandwidth
        if limit is None:
            self._scale = 1.0
            return 1.0
        if limit <= 0:                  # no priority-bandwidth at all: everything at priority 0
            self._scale = 0.0
            return 0.0
        if self._scaled_at is None or now < self._scaled_at:
            self._scaled_at = now
        dt = now - self._scaled_at
        if dt > 0:
            self._scaled_at = now
            measured = self.meter.rate(now)
            ratio = limit / measured if measured > 0 else float("inf")
            if ratio < 1 or self._scale < 1:
                step = min(1.0, dt / self.meter.tau_s)
                s = max(self._scale, self.MIN_SCALE) * ratio ** step
                self._scale = min(1.0, max(self.MIN_SCALE, s))
        return self._scale

    def apply(self, tc: int, size: int, now: float) -> tuple[int, float]:
        """(traffic class for the wire, exact scaled priority) of a packet of ``size`` bytes after this lease's
        ingress rules. The exact value (priority x scale, not rounded to 4 bits) orders the packet at egress."""
        self.counters["packets"] += 1
        self.counters["bytes"] += size
        s = self.scale(now)
        if not is_classed(tc):
            return tc, float(priority_of(tc))
        priority = priority_of(tc)
        customer = is_customer(tc)
        if customer and self.lease.clear_customer_bit:
            customer = False
            self.counters["customer_bit_cleared"] += 1
        exact = float(priority)
        if s < 1.0:
            exact = priority * s
            self._carry += exact
            new = min(priority, int(self._carry))
            self._carry = min(self._carry - new, 0.999)     # a clamped packet does not bank priority
            if new != priority:
                self.counters["reprioritized"] += 1
            priority = new
        return make_traffic_class(priority, customer), exact

    def charge(self, priority: float, size: int, now: float) -> None:
        """Count a forwarded packet of this lease: the priority it was forwarded with times its size, in kB
        (a negative priority takes back the charge of a packet dropped after all)."""
        self.meter.add(priority * size / 1000.0, now)

    def describe(self, now: float) -> dict:
        return dict(self.counters, meter_priority_kBps=round(self.meter.rate(now), 3),
                    scale=round(self.scale(now), 4))


def deprioritize_non_customer(tc: int, cap: int | None) -> int:
    """Egress rule: a packet without the customer bit carries priority at most ``cap`` (None = no cap)."""
    if cap is None or tc == UNCLASSED or not is_classed(tc) or is_customer(tc):
        return tc
    if priority_of(tc) <= cap:
        return tc
    return make_traffic_class(min(cap, MAX_PRIORITY), False)


def capped_priority(tc: int, exact: float, cap: int | None) -> float:
    """The exact priority under the same rule (``tc`` is the class *before* deprioritize_non_customer)."""
    if cap is None or not is_classed(tc) or is_customer(tc):
        return exact
    return min(exact, float(cap))
