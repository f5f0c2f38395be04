"""One-way payment channels, the accounting half (seeds-digest.md §3: BTT-T13, T14, T15).

A payer pays a payee per *unit* of service (a piece, or ``unit_bytes`` of lease traffic) at ``unit_price``
atomic PKT units. On chain (channel_chain.py): a 2-of-2 funding output of ``capacity``, a refund to the payer
from ``refund_height``, a close that pays the latest commitment.
Off chain (here)::

    channel_open  {"v":1,"type":"channel_open", "channel", "payer", "payee", "capacity", "unit_price",
                   "unit_bytes", "refund_height", "funding": <outpoint>, "sig" by payer}
    commitment    {"v":1,"type":"commitment", "channel", "payer", "seq", "paid", "sig" by payer}
                   the state a close presents: the payee may take ``paid``, the payer the rest
    channel_pay   {"v":1,"type":"channel_pay", "channel", "seq", "increment", "sig"}
                   what travels per unit: the increment and the signature of commitment (seq, paid + increment)
                   only (T13); the payee rebuilds the commitment and checks the signature

The exposure invariant (T15): the payee sends unit n+1 only once units 1..n are paid (``may_send``), so at every
instant delivered - paid <= one unit; the payer pays only for units it has verified (``unit_verified``), and the
payee refuses a payment beyond what it delivered. Commitments are numbered 1, 2, ... without gaps: a replayed or
skipped ``seq`` is refused. :func:`settle` is the close rule for the chain part: of every validly signed
commitment presented during the close window, the highest ``seq`` wins, so a payer that presents a stale one
loses to the payee's latest (T14).

Rejected input is counted in ``rejected`` by reason, never raised; misuse of the API (sending a unit the
invariant forbids, paying for more than the capacity) raises :class:`ChannelError`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from .wire import (
    BAD_SIGNATURE,
    ID16,
    KEY,
    OUTPOINT,
    SIG,
    Message,
    UInt,
    WireError,
    decode_as,
)

# rejection reasons
WRONG_CHANNEL = "wrong_channel"
REPLAYED = "replayed"
OUT_OF_ORDER = "out_of_order"
ZERO_INCREMENT = "zero_increment"
PAYS_UNDELIVERED = "pays_undelivered"
OVER_CAPACITY = "over_capacity"


class ChannelError(ValueError):
    """An action the channel's rules forbid."""


@dataclass(frozen=True)
class ChannelOpen(Message):
    TYPE: ClassVar[str] = "channel_open"
    SIGNER: ClassVar[str] = "payer"
    WIRE: ClassVar[dict] = {"channel": ID16, "payer": KEY, "payee": KEY, "capacity": UInt(), "unit_price": UInt(),
                            "unit_bytes": UInt(), "refund_height": UInt(), "funding": OUTPOINT, "sig": SIG}
    channel: bytes
    payer: bytes
    payee: bytes
    capacity: int
    unit_price: int
    unit_bytes: int
    refund_height: int
    funding: str
    sig: bytes = b""


@dataclass(frozen=True)
class Commitment(Message):
    TYPE: ClassVar[str] = "commitment"
    SIGNER: ClassVar[str] = "payer"
    WIRE: ClassVar[dict] = {"channel": ID16, "payer": KEY, "seq": UInt(), "paid": UInt(), "sig": SIG}
    channel: bytes
    payer: bytes
    seq: int
    paid: int
    sig: bytes = b""


@dataclass(frozen=True)
class ChannelPay(Message):
    TYPE: ClassVar[str] = "channel_pay"
    WIRE: ClassVar[dict] = {"channel": ID16, "seq": UInt(), "increment": UInt(), "sig": SIG}
    channel: bytes
    seq: int
    increment: int
    sig: bytes


def refund_height(height: int, expected_s: float, block_s: float = 60.0, k: float = 2.0,
                  extra_s: float = 2 * 3600.0) -> int:
    """T13: the refund timelock, k x the expected transfer time plus some hours, in blocks from ``height``."""
    if not (expected_s >= 0 and block_s > 0 and k >= 1 and extra_s >= 0):
        raise ValueError("refund_height needs expected_s >= 0, block_s > 0, k >= 1, extra_s >= 0")
    return height + math.ceil((k * expected_s + extra_s) / block_s)


def open_channel(private_key: bytes, channel: bytes, payee: bytes, capacity: int, unit_price: int, unit_bytes: int,
                 refund_height: int, funding: str) -> ChannelOpen:
    if unit_price < 1 or unit_bytes < 1 or capacity < unit_price:
        raise ChannelError("a channel needs unit_price >= 1, unit_bytes >= 1 and room for one unit")
    return ChannelOpen(channel, bytes(32), payee, capacity, unit_price, unit_bytes, refund_height,
                       funding).signed(private_key)


class PayerChannel:
    def __init__(self, terms: ChannelOpen, private_key: bytes):
        self.terms, self._sk = terms, private_key
        self.verified = 0       # units received and verified
        self.paid = 0
        self.seq = 0

    def unit_verified(self, units: int = 1) -> bytes:
        """``units`` units arrived and checked out: pay for them (and only for them), in one payment."""
        t = self.terms
        if units < 1:
            raise ChannelError("a payment pays at least one unit")
        if self.paid + units * t.unit_price > t.capacity:
            raise ChannelError(f"paying {units} more units would exceed the capacity {t.capacity}")
        self.verified += units
        self.seq += 1
        self.paid += units * t.unit_price
        c = Commitment(t.channel, t.payer, self.seq, self.paid).signed(self._sk)
        return ChannelPay(t.channel, self.seq, units * t.unit_price, c.sig).encode()


class PayeeChannel:
    def __init__(self, terms: ChannelOpen):
        if not terms.signature_ok():
            raise ChannelError("channel_open is not signed by its payer")
        self.terms = terms
        self.delivered = 0
        self.paid = 0
        self.seq = 0
        self.latest: Commitment | None = None
        self.rejected: Counter = Counter()

    @property
    def exposure(self) -> int:
        """Delivered but not paid, in atomic units (never above one unit price)."""
        return self.delivered * self.terms.unit_price - self.paid

    def may_send(self) -> bool:
        t = self.terms
        return self.exposure <= 0 and (self.delivered + 1) * t.unit_price <= t.capacity

    def sent(self) -> None:
        if not self.may_send():
            raise ChannelError("the previous unit is not paid (or the channel is full): sending would exceed "
                               "the one-unit exposure")
        self.delivered += 1

    def bill(self, units: int) -> None:
        """``units`` delivered at once (an auction round's bill, bids.py: its exposure bound is the seller's rule,
        not one unit); never beyond the capacity."""
        if units < 0 or (self.delivered + units) * self.terms.unit_price > self.terms.capacity:
            raise ChannelError(f"a bill of {units} units does not fit the capacity {self.terms.capacity}")
        self.delivered += units

    def receive(self, data) -> bool:
        """A channel_pay from the payer; True if it was accepted."""
        try:
            commitment = self.check(data)
        except WireError as e:
            self.rejected[e.code] += 1
            return False
        self.take(commitment)
        return True

    def check(self, data) -> Commitment:
        """The commitment a channel_pay makes, if the channel's rules let it in (else WireError naming why)."""
        pay = decode_as({ChannelPay.TYPE: ChannelPay}, data)
        t = self.terms
        if pay.channel != t.channel:
            raise WireError(WRONG_CHANNEL, "payment for another channel")
        if pay.seq <= self.seq:
            raise WireError(REPLAYED, f"seq {pay.seq} already used (at {self.seq})")
        if pay.seq != self.seq + 1:
            raise WireError(OUT_OF_ORDER, f"seq {pay.seq} after {self.seq}")
        if pay.increment == 0:
            raise WireError(ZERO_INCREMENT, "a payment pays something")
        paid = self.paid + pay.increment
        if paid > t.capacity:
            raise WireError(OVER_CAPACITY, f"{paid} > capacity {t.capacity}")
        if paid > self.delivered * t.unit_price:
            raise WireError(PAYS_UNDELIVERED, f"{paid} pays for more than the {self.delivered} units sent")
        c = Commitment(t.channel, t.payer, pay.seq, paid, pay.sig)
        if not c.signature_ok():
            raise WireError(BAD_SIGNATURE, "the commitment signature does not verify")
        return c

    def take(self, commitment: Commitment) -> None:
        """Accept a commitment that :meth:`check` returned."""
        self.seq, self.paid, self.latest = commitment.seq, commitment.paid, commitment


def settle(terms: ChannelOpen, commitments) -> tuple[int, int]:
    """(to payee, to payer) when the channel closes with ``commitments`` presented: the highest validly signed
    seq wins; with none, everything returns to the payer."""
    best = None
    for c in commitments:
        if (c.channel == terms.channel and c.payer == terms.payer and c.paid <= terms.capacity
                and c.signature_ok() and (best is None or c.seq > best.seq)):
            best = c
    paid = best.paid if best else 0
    return paid, terms.capacity - paid
