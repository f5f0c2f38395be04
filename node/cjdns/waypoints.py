"""Paths longer than a label: waypoints (a pktlab extension of the cjdns switch).

A cjdns label holds 59 bits of directors (pkt-reference.md §2.4): ``LabelSplicer_splice`` returns UINT64_MAX when a
path does not fit, and cjdns' pathfinders then simply have no path (18 hops of a grid, 6 through 10-bit hubs).
pktlab cuts such a path into *segments* that each fit a label; the node at the end of a segment, a *waypoint*,
takes the packet off one label and puts it on the next. Each segment is an ordinary cjdns label, switched by
unmodified switches; only the waypoint's router does something new.

Wire format, at the waypoint's router, where a session packet's handle would be (after the 12-byte switch header)::

    0xfffffffe   u32   WAYPOINT (cjdns handles count up from 4; 0xffffffff is a control frame)
    label        u64   the next segment's label, from the waypoint
    rest               sent on from the waypoint's router behind a new switch header: that label, label shift 0,
                       the arriving header's traffic class, version and suppress-errors bit

``rest`` is another waypoint frame or, after the last one, the session packet, so a path of k segments is the first
segment's switch header followed by k - 1 frames: what the source prepends to every packet (12 bytes per waypoint).
The return path a destination learns from the arriving label leads back to the last waypoint; like every other
reply it takes the path its own route server (or static table) gives.

Switch errors: an error from a later segment reaches the waypoint that sent it on. The waypoint remembers the
packets it relayed lately (``Relays``) and sends the error back the way the packet came, its cause rebuilt as the
packet arrived (arrival header, waypoint frame, then the rest of the cause), so each waypoint before it and finally
the source recognise it. The source sees a cause whose header has used up its whole first label: the error came
from a later segment (it cannot name the dead link in its own labels, only the destination).

``split`` cuts a path into segments greedily: each segment is the longest run of hops whose label, with the return
path the segment's last switch stores above its self route, fits (the same bounds as a single label).
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from typing import NamedTuple

from .labels import MAX_LABEL_BITS, LabelError, convert_label, log2, splice_path

WAYPOINT = b"\xff\xff\xff\xfe"
WAYPOINT_HANDLE = 0xFFFFFFFE
FRAME_SIZE = 12
LABEL_BITS_WITH_RETURN = 60      # log2(label) + a wide incoming director at the segment's end must fit this
_label = struct.Struct(">Q")


class WaypointError(ValueError):
    """A malformed waypoint frame; ``reason`` names the counted drop."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def frames(via) -> bytes:
    """The waypoint frames for the segments after the first (``via``: their labels, in order)."""
    return b"".join(WAYPOINT + _label.pack(label) for label in via)


def unwrap(after_header: bytes) -> tuple[int, bytes]:
    """(next label, rest) of a waypoint frame (the bytes after the switch header, starting with WAYPOINT)."""
    if len(after_header) < FRAME_SIZE + 4:
        raise WaypointError("waypoint_runt", "a waypoint frame is 12 bytes and something to send on")
    label = _label.unpack_from(after_header, 4)[0]
    if label < 2:
        raise WaypointError("waypoint_bad_label", f"next label {label:#x} is not a path to another node")
    return label, after_header[FRAME_SIZE:]


def strip(after_header: bytes) -> tuple[int, bytes]:
    """(number of waypoint frames, what follows them): which segment an error's cause came from."""
    count = 0
    while after_header[:4] == WAYPOINT and len(after_header) >= FRAME_SIZE:
        after_header = after_header[FRAME_SIZE:]
        count += 1
    return count, after_header


class Segment(NamedTuple):
    end: int            # index of the node the segment ends at (a waypoint, or the destination)
    label: int
    hops: tuple         # the one-hop labels spliced into it, re-encoded where needed


def split(hops, schemes) -> list[Segment]:
    """Cut a path into segments that each fit a label.

    ``hops``: per node ``(label_p, label_n)`` as for labels.build_label (the label back to the previous node and
    the one to the next, None at the ends); ``schemes``: each node's encoding scheme. A next-hop label is re-encoded
    to the width of the reverse hop where that is wider, except at a segment's first node, where the packet comes
    from the router. One segment when the whole path fits."""
    hops = [tuple(h) for h in hops]
    if len(hops) < 2 or len(schemes) != len(hops):
        raise LabelError("split needs at least two nodes and a scheme per node")
    last = len(hops) - 1
    segments, start = [], 0
    while start < last:
        parts, bits, i = [], 0, start
        while i < last:
            label_n = hops[i][1]
            if i > start:
                label_p = hops[i][0]
                num_p = schemes[i].get_form_num(label_p)
                if num_p >= 0 and schemes[i][num_p].size > schemes[i].form_of(label_n).size:
                    label_n = convert_label(schemes[i], label_n, num_p)
            back = schemes[i + 1].form_of(hops[i + 1][0]).size
            need = bits + log2(label_n)
            if need > MAX_LABEL_BITS or (back > 4 and need + back > LABEL_BITS_WITH_RETURN):
                break
            parts.append(label_n)
            bits, i = need, i + 1
        if not parts:
            raise LabelError(f"hop {start} alone does not fit a label")
        segments.append(Segment(i, splice_path(parts), tuple(parts)))
        start = i
    return segments


class Relays:
    """What a waypoint remembers of the packets it sent on lately, keyed by the start of what follows their new switch
    header (the destination's session handle, or the next waypoint frame): the segment's label and the switch header
    the packet arrived with (its label, bit-reversed, leads back to the source or the previous waypoint). Bounded
    (the oldest go first); entries older than ``hold_s`` are not used.

    An error for a relayed packet goes back with ``relayed_cause``: the arrival header and our waypoint frame in
    front of what the error's cause holds after its header, so the waypoint before us finds its own entry in it,
    and the source finds all its frames and the session handle."""

    def __init__(self, size: int = 1024, hold_s: float = 10.0):
        self.size = size
        self.hold_s = hold_s
        self._sent: OrderedDict = OrderedDict()

    @staticmethod
    def key(rest: bytes) -> bytes:
        return bytes(rest[:FRAME_SIZE] if rest[:4] == WAYPOINT else rest[:4])

    def sent(self, rest: bytes, label: int, arrival_header: bytes, now: float) -> None:
        key = self.key(rest)
        self._sent.pop(key, None)
        self._sent[key] = (label, bytes(arrival_header), now)
        if len(self._sent) > self.size:
            self._sent.popitem(last=False)

    def relayed_cause(self, cause_after_header: bytes, now: float) -> tuple[bytes, bytes] | None:
        """(arrival header, cause to send back) for an error about a packet we relayed, or None."""
        found = self._sent.get(self.key(cause_after_header))
        if found is None or now - found[2] > self.hold_s:
            return None
        label, arrival, _ = found
        return arrival, arrival + WAYPOINT + _label.pack(label) + bytes(cause_after_header)
