"""The cjdns label switch as a pure state machine (pkt-reference.md §2.3, cjdns ``switch/SwitchCore.c``).

Interfaces are numbered like cjdns: index 1 is always our own router, peers get the free indexes 0, 2, 3, ...
(V358, 257 slots). :meth:`Switch.receive` takes a packet (switch header first) from an interface and returns
the ``(dest_index, packet)`` pairs to send: the forwarded packet, or an ERROR control message back out of the
interface the packet came from. Forwarding pops the first director, pushes the bit-reversed director of the
source interface at the top (so the label at the destination, bit-reversed, is the return path) and adds the
director width to the label shift.

A hub switches with a wider scheme (labels.scheme_for_interfaces, a pktlab extension): the algorithm is cjdns',
with that scheme's director widths and numbering in place of NumberCompress.

Traffic class: cjdns writes 0xffff ("unclassed") on every forwarded packet. pktlab uses the traffic class for
PKT priorities (switch_header.py), so by default a switch keeps it; ``Switch(keep_traffic_class=False)``
behaves exactly like cjdns.
"""
from __future__ import annotations

import struct
from collections import Counter

from . import control
from .labels import UINT64_MAX, V358, LabelError, bit_reverse64, mask
from .switch_header import SIZE as HEADER_SIZE, UNCLASSED, SwitchHeader

ROUTER = 1

# counter names
FORWARDED = "forwarded"
DROP_RUNT = "drop_runt"
DROP_UNDELIVERABLE = "drop_undeliverable"          # label shift would exceed 63
DROP_BAD_SOURCE = "drop_bad_source_interface"
ERRORS_SENT = "errors_sent"


class SwitchError(ValueError):
    """Bad use of the switch API (not a bad packet: bad packets are counted drops or error replies)."""


class Switch:
    def __init__(self, keep_traffic_class: bool = True, scheme=V358):
        self.interfaces: set[int] = {ROUTER}
        self.keep_traffic_class = keep_traffic_class
        self.scheme = scheme
        self.num_interfaces = scheme.interfaces
        # bound once: receive() runs for every packet (for V358 these are the module's NumberCompress functions)
        self._bits_for_label, self._bits_for_number, self._compress, self._decompress = scheme.director_functions()
        self.counters: Counter = Counter()

    # -- interfaces ------------------------------------------------------------------------------------
    def add_interface(self, index: int | None = None) -> int:
        """Register an interface (lowest free index other than 1 if none given) and return its index."""
        if index is None:
            index = next((i for i in range(self.num_interfaces) if i != ROUTER and i not in self.interfaces), None)
            if index is None:
                raise SwitchError("no free interface slot")
        elif not isinstance(index, int) or not 0 <= index < self.num_interfaces or index == ROUTER:
            raise SwitchError(f"interface index {index!r} must be in 0..{self.num_interfaces - 1} and not 1")
        elif index in self.interfaces:
            raise SwitchError(f"interface {index} already exists")
        self.interfaces.add(index)
        return index

    def remove_interface(self, index: int) -> None:
        if index == ROUTER:
            raise SwitchError("the router interface cannot be removed")
        self.interfaces.discard(index)

    def label_for(self, index: int) -> int:
        """Our one-hop label to the peer on interface ``index``."""
        return self.scheme.one_hop_label(index)

    # -- forwarding ------------------------------------------------------------------------------------
    def receive(self, source_index: int, packet: bytes) -> list[tuple[int, bytes]]:
        if source_index not in self.interfaces:
            self.counters[DROP_BAD_SOURCE] += 1
            return []
        if len(packet) < HEADER_SIZE:
            self.counters[DROP_RUNT] += 1
            return []
        header = SwitchHeader.unpack(packet)
        label = header.label
        try:
            bits = self._bits_for_label(label)
        except LabelError:                          # a label no form of our scheme matches
            return self.error(source_index, packet, "MALFORMED_ADDRESS")
        dest = self._decompress(label, bits)
        source_bits = self._bits_for_number(source_index)

        if dest == ROUTER and (label & mask(bits)) != 1:        # V358: (label & 0xf) != 1
            return self.error(source_index, packet, "MALFORMED_ADDRESS")
        if source_bits > bits:
            if dest == ROUTER:
                # the return path must fit in the zeros left of our self route
                if (label ^ 1) & (UINT64_MAX >> (64 - source_bits - bits)):
                    return self.error(source_index, packet, "RETURN_PATH_INVALID")
                bits = source_bits
            elif source_index == ROUTER:
                if label >> (bits + 64 - source_bits):
                    return self.error(source_index, packet, "MALFORMED_ADDRESS")
            else:
                return self.error(source_index, packet, "MALFORMED_ADDRESS")
        if dest not in self.interfaces:
            return self.error(source_index, packet, "MALFORMED_ADDRESS")

        label_shift = header.label_shift + bits
        if label_shift > 63:
            self.counters[DROP_UNDELIVERABLE] += 1
            return []
        source_label = bit_reverse64(self._compress(source_index, bits))
        out = header.replace(
            label=(label >> bits) | source_label,
            label_shift=label_shift,
            traffic_class=header.traffic_class if self.keep_traffic_class else UNCLASSED)
        self.counters[FORWARDED] += 1
        self.counters[f"to_{dest}"] += 1
        return [(dest, out.pack() + bytes(packet[HEADER_SIZE:]))]

    @staticmethod
    def dead_hop_label(sent_label: int, cause: bytes) -> int | None:
        """From an UNDELIVERABLE error's cause (the packet's switch header as the erring switch got it) and the
        label we sent that packet with: the label from us to the far end of the link that switch could not
        use. The header's label shift says how many bits of our label the switches before it consumed, its
        label's low director the dead link (read with V358's widths: the erring switch's scheme is not known
        here; a hub's wide director gives a label the route server does not recognise, and ignores). None if
        the cause does not belong to that label."""
        if len(cause) < HEADER_SIZE:
            return None
        header = SwitchHeader.unpack(cause)
        shift, here = header.label_shift, header.label
        bits = V358.bits_for_label(here)
        end = shift + bits
        if end >= 64 or (sent_label >> shift) & ((1 << bits) - 1) != here & ((1 << bits) - 1):
            return None
        return (sent_label & ((1 << end) - 1)) | (1 << end)

    def error(self, source_index: int, cause: bytes, code: str) -> list[tuple[int, bytes]]:
        """Count the drop and build the ERROR message back towards the sender (SwitchCore sendError)."""
        self.counters[f"drop_{code.lower()}"] += 1
        header = SwitchHeader.unpack(cause)
        if header.suppress_errors or len(cause) < HEADER_SIZE + 4:
            return []
        after = cause[HEADER_SIZE:]
        if control.is_control(after) and len(after) >= 8 and struct.unpack_from(">H", after, 6)[0] == control.ERROR:
            return []   # errors never cause errors
        error_header = SwitchHeader(label=bit_reverse64(header.label), congestion=1, suppress_errors=True,
                                    version=1, label_shift=0, traffic_class=UNCLASSED)
        msg = control.Error(control.ERROR_CODES[code], bytes(cause[:control.ERROR_MAX_CAUSE]))
        self.counters[ERRORS_SENT] += 1
        return [(source_index, error_header.pack() + control.frame(msg))]
