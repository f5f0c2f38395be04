"""The 12-byte cjdns switch header (pkt-reference.md §2.1, cjdns ``wire/SwitchHeader.h``), big-endian::

    bytes 0..7   label (u64)
    byte  8      congestion(7 bits) << 1 | suppress_errors(1 bit)
    byte  9      version(2 bits) << 6 | label_shift(6 bits)        (version 1 today)
    bytes 10..11 traffic class (u16)

PKT traffic class (pktlab's use of the 16-bit traffic class; cjdns itself only writes 0xffff, "unclassed")::

    bit 15..12  priority   0 (lowest) .. 15 (highest)
    bit 11      customer   1 = traffic of a paying customer of the bandwidth market
    bit 10..0   reserved, 0 in every classed value

    0xffff      unclassed (cjdns default): priority_of() gives DEFAULT_PRIORITY, is_customer() False

Because the reserved bits are zero in every classed value, 0xffff can never be mistaken for a class.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SIZE = 12
CURRENT_VERSION = 1
UNCLASSED = 0xFFFF
MAX_PRIORITY = 15
DEFAULT_PRIORITY = 0
_PRIORITY_SHIFT = 12
_CUSTOMER_BIT = 1 << 11
_RESERVED_MASK = (1 << 11) - 1


class SwitchHeaderError(ValueError):
    """The bytes are not a switch header, or a field is out of range."""


@dataclass(frozen=True)
class SwitchHeader:
    label: int
    congestion: int = 0
    suppress_errors: bool = False
    version: int = CURRENT_VERSION
    label_shift: int = 0
    traffic_class: int = UNCLASSED

    def pack(self) -> bytes:
        if not 0 <= self.label < 1 << 64:
            raise SwitchHeaderError(f"label {self.label!r} is not a u64")
        if not 0 <= self.congestion < 128:
            raise SwitchHeaderError("congestion is 7 bits")
        if not 0 <= self.version < 4:
            raise SwitchHeaderError("version is 2 bits")
        if not 0 <= self.label_shift < 64:
            raise SwitchHeaderError("label shift is 6 bits")
        if not 0 <= self.traffic_class <= 0xFFFF:
            raise SwitchHeaderError("traffic class is 16 bits")
        return struct.pack(">QBBH", self.label, (self.congestion << 1) | bool(self.suppress_errors),
                           (self.version << 6) | self.label_shift, self.traffic_class)

    @classmethod
    def unpack(cls, data: bytes) -> "SwitchHeader":
        """Parse the first 12 bytes of ``data`` (anything after them is ignored)."""
        if len(data) < SIZE:
            raise SwitchHeaderError(f"runt: {len(data)} bytes, a switch header is {SIZE}")
        label, b8, b9, tc = struct.unpack_from(">QBBH", data)
        return cls(label, b8 >> 1, bool(b8 & 1), b9 >> 6, b9 & 63, tc)

    def replace(self, **changes) -> "SwitchHeader":
        from dataclasses import replace
        return replace(self, **changes)

    @property
    def priority(self) -> int:
        return priority_of(self.traffic_class)

    @property
    def customer(self) -> bool:
        return is_customer(self.traffic_class)


def split(packet: bytes) -> tuple[SwitchHeader, bytes]:
    """(header, payload) of a switched packet."""
    return SwitchHeader.unpack(packet), bytes(packet[SIZE:])


_TC = struct.Struct(">H")
_TC_AT = 10


def traffic_class_of(packet: bytes) -> int:
    """The traffic class of a switched packet (at least SIZE bytes), without unpacking the whole header."""
    return _TC.unpack_from(packet, _TC_AT)[0]


def with_traffic_class(packet: bytes, tc: int) -> bytes:
    """The packet with its traffic class replaced (the same bytes when it is unchanged)."""
    if traffic_class_of(packet) == tc:
        return packet
    return packet[:_TC_AT] + _TC.pack(tc) + packet[_TC_AT + 2:]


def make_traffic_class(priority: int = DEFAULT_PRIORITY, customer: bool = False) -> int:
    if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise SwitchHeaderError(f"priority must be 0..{MAX_PRIORITY}")
    return (priority << _PRIORITY_SHIFT) | (_CUSTOMER_BIT if customer else 0)


def is_classed(tc: int) -> bool:
    return tc != UNCLASSED and (tc & _RESERVED_MASK) == 0


def priority_of(tc: int) -> int:
    """Priority carried in a traffic class; DEFAULT_PRIORITY for unclassed or foreign values."""
    return tc >> _PRIORITY_SHIFT if is_classed(tc) else DEFAULT_PRIORITY


def is_customer(tc: int) -> bool:
    return is_classed(tc) and bool(tc & _CUSTOMER_BIT)
