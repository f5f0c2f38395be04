"""Paths longer than a label: waypoints (a pktlab extension of the cjdns switch).

A cjdns label holds 59 bits of directors (pkt-reference.md §2.4): ``LabelSplicer_splice`` returns UINT64_MAX when a
path does not fit, and cjdns' pathfinders then simply have no path (18 hops of a grid, 6 through 10-bit hubs).
pktlab cuts such a path into *segments* that each fit a label; the node at the end of a segment, a *waypoint*,
takes the packet off one label and puts it on the next. Each segment is an ordinary cjdns label, switched by
unmodified switches; only the waypoint's router does something new.

Frames, 12 bytes each, after the switch header where a session packet's handle would be (cjdns handles count up
from 4; 0xffffffff is a control frame)::

    0xfffffffe  label u64   WAYPOINT: the next segment's label, from the waypoint
    0xfffffffd  label u64   RETURN: the label from a waypoint back to where the packet came from

The source sends the first segment's switch header, one WAYPOINT frame per further segment, then the session packet.
A waypoint's router keeps the RETURN frames at the front, takes the first WAYPOINT frame off, puts a RETURN frame
with its own way back (the arriving label, bit-reversed) in front, and sends the rest on behind a new switch header
(the WAYPOINT's label, label shift 0, the arriving header's traffic class, version and suppress-errors bit). The
packet keeps its size, and it arrives with the RETURN frames of every waypoint, the last one first: with the
arriving label they are the whole way back (``relay``, ``returns``).

Switch errors: the cause of an error from a later segment starts with the RETURN frame of the waypoint that sent
the packet on; that waypoint takes it off and sends the error back by it (``error_back``), so each waypoint before
it does the same and the source gets a cause with its remaining WAYPOINT frames and the session handle. Fewer
WAYPOINT frames than it sent: the error came from a later segment (it cannot name the dead link in its own labels).

``split`` cuts a path into segments greedily: each segment is the longest run of hops whose label, with the return
path the segment's last switch stores above its self route, fits (the same bounds as a single label).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .labels import MAX_LABEL_BITS, LabelError, bit_reverse64, convert_label, log2, splice_path

WAYPOINT = b"\xff\xff\xff\xfe"
RETURN = b"\xff\xff\xff\xfd"
LOWEST_HANDLE = 0xFFFFFFFD         # frames and control messages: session handles stay below
FRAME_SIZE = 12
MAX_FRAMES = 64                    # frames read in one packet, at most
LABEL_BITS_WITH_RETURN = 60        # log2(label) + a wide incoming director at the segment's end must fit this
_label = struct.Struct(">Q")


class WaypointError(ValueError):
    """A malformed frame; ``reason`` names the counted drop."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def frames(via, kind: bytes = WAYPOINT) -> bytes:
    """Frames for the given labels, in order (WAYPOINT: the segments after the first)."""
    return b"".join(kind + _label.pack(label) for label in via)


def _take(data: bytes, kind: bytes) -> tuple[list[int], bytes]:
    """The labels of the leading frames of one kind, and what follows them."""
    out = []
    while data[:4] == kind and len(out) < MAX_FRAMES:
        if len(data) < FRAME_SIZE:
            raise WaypointError("waypoint_runt", "a frame is 12 bytes")
        out.append(_label.unpack_from(data, 4)[0])
        data = data[FRAME_SIZE:]
    return out, data


def relay(after_header: bytes, arrival_label: int) -> tuple[int, bytes]:
    """At a waypoint's router: (next segment's label, what to send behind its switch header)."""
    back, rest = _take(after_header, RETURN)
    if rest[:4] != WAYPOINT or len(rest) < FRAME_SIZE + 4:
        raise WaypointError("waypoint_runt", "no waypoint frame and something to send on")
    label = _label.unpack_from(rest, 4)[0]
    if label < 2:
        raise WaypointError("waypoint_bad_label", f"next label {label:#x} is not a path to another node")
    return label, frames([bit_reverse64(arrival_label)] + back, RETURN) + rest[FRAME_SIZE:]


def returns(after_header: bytes) -> tuple[tuple, bytes]:
    """At the destination: (the labels back from the last waypoint to the source, each from the one before it;
    empty when the packet came by one label) and the session packet after the frames."""
    back, rest = _take(after_header, RETURN)
    return tuple(back), rest


def error_back(cause: bytes) -> tuple[int, bytes] | None:
    """At a waypoint's router, an error about a packet it sent on: (its way back, the cause without its RETURN
    frame); None if the cause does not start with a RETURN frame."""
    after = cause[12:]
    if after[:4] != RETURN or len(after) < FRAME_SIZE:
        return None
    return _label.unpack_from(after, 4)[0], cause[:12] + after[FRAME_SIZE:]


def session_part(cause_after_header: bytes) -> tuple[int, bytes]:
    """At the source, an error's cause: (how many WAYPOINT frames it still has, the session packet after them)."""
    _, rest = _take(cause_after_header, RETURN)
    ahead, rest = _take(rest, WAYPOINT)
    return len(ahead), rest


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
