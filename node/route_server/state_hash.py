"""The announcement-list state hash both a subnode and its route server compute (pkt-reference.md §4.2).

``h = 0^64; for ann in accepted announcements, oldest first: h = SHA512(h || ann_bytes)``
(cjdns ``ReachabilityAnnouncer.c`` hashMsgList, ``cjdns-snode/src/server/hash.rs``). A mismatch makes the
subnode send a reset announcement.
"""
from __future__ import annotations

import hashlib

EMPTY = bytes(64)


def state_hash(announcements) -> bytes:
    """Hash of raw announcement byte strings, oldest first."""
    h = EMPTY
    for raw in announcements:
        h = hashlib.sha512(h + bytes(raw)).digest()
    return h
