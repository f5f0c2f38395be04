"""End-to-end CryptoAuth sessions keyed by peer, with cjdns handles and data headers (pkt-reference.md §3.3).

What follows the switch header for a session packet::

    handshake (CA nonce 0..3)    [CA handshake packet; encrypted content = sender's receive handle u32 | payload]
    data                         [receiver's handle u32][CA data packet; content = payload]

The payload starts with a 4-byte DataHeader: ``version << 4 | 0 | contentType u16`` (version 1).
Pure: no I/O, time passed in. Rejections raise CryptoAuthError (SessionManagerError for unknown handles).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .cryptoauth import FIRST_DATA_NONCE, HANDSHAKE_SIZE, CryptoAuthError, Session
from .waypoints import LOWEST_HANDLE

DATA_HEADER_SIZE = 4
DATA_HEADER_VERSION = 1
CONTENT_TCP, CONTENT_UDP, CONTENT_ICMP6 = 6, 17, 58
CONTENT_CJDHT = 256       # bencoded router messages
CONTENT_IPTUN = 257
CONTROL_HANDLE = 0xFFFFFFFF


class SessionManagerError(CryptoAuthError):
    """A session packet cannot be attributed: unknown handle, control frame, runt, table full."""


def pack_data_header(content_type: int, version: int = DATA_HEADER_VERSION) -> bytes:
    return struct.pack(">BBH", (version & 0xF) << 4, 0, content_type)


def parse_data_header(data: bytes) -> tuple[int, int, bytes]:
    """(version, content_type, payload) of decrypted session content."""
    if len(data) < DATA_HEADER_SIZE:
        raise SessionManagerError("runt", "no data header")
    b0, _, content_type = struct.unpack_from(">BBH", data)
    return b0 >> 4, content_type, bytes(data[DATA_HEADER_SIZE:])


@dataclass
class Peer:
    session: Session
    my_handle: int
    her_handle: int | None = None


class SessionManager:
    def __init__(self, identity, rng=None, max_sessions: int = 4096, **session_options):
        self.identity = identity
        self._rng = rng or os.urandom
        self.max_sessions = max_sessions
        self.session_options = session_options      # e.g. password=..., require_auth=...
        self.peers: dict[bytes, Peer] = {}
        self.by_handle: dict[int, Peer] = {}
        self._her_handles: dict[int, bytes] = {}     # her handle -> her key (a switch error names the former)

    def _new_handle(self) -> int:
        while True:
            h = struct.unpack(">I", self._rng(4))[0]
            if FIRST_DATA_NONCE <= h < LOWEST_HANDLE and h not in self.by_handle:    # not a control or waypoint frame
                return h

    def _new_peer(self, her_key: bytes | None, now: float, initiator: bool) -> Peer:
        if len(self.peers) >= self.max_sessions:
            raise SessionManagerError("table_full", "too many sessions")
        session = Session(self.identity, her_key, initiator=initiator, now=now, rng=self._rng,
                          **self.session_options)
        return Peer(session, self._new_handle())

    def _add(self, key: bytes, peer: Peer) -> Peer:
        self.peers[key] = peer
        self.by_handle[peer.my_handle] = peer
        return peer

    def peer(self, her_key: bytes, now: float = 0.0) -> Peer:
        """The session with ``her_key``, created (as initiator) if needed."""
        p = self.peers.get(her_key)
        return p if p is not None else self._add(her_key, self._new_peer(her_key, now, True))

    def wrap(self, her_key: bytes, content: bytes, now: float = 0.0) -> bytes:
        """Encrypt ``content`` (DataHeader + payload) for ``her_key``: the bytes after the switch header."""
        p = self.peer(her_key, now)
        s = p.session
        s.check_timeout(now)
        if s.next_packet_is_handshake:
            return s.encrypt(struct.pack(">I", p.my_handle) + content, now)
        return struct.pack(">I", p.her_handle) + s.encrypt(content, now)

    def unwrap(self, data: bytes, now: float = 0.0) -> tuple[bytes, bytes]:
        """(sender's permanent key, content) of a session packet, or CryptoAuthError."""
        data = bytes(data)
        if len(data) < 4:
            raise SessionManagerError("runt")
        first = struct.unpack_from(">I", data)[0]
        if first == CONTROL_HANDLE:
            raise SessionManagerError("control", "a switch control frame, not a session packet")
        if first >= FIRST_DATA_NONCE:
            p = self.by_handle.get(first)
            if p is None:
                raise SessionManagerError("unknown_handle", f"{first:#x}")
            return p.session.her_public_key, p.session.decrypt(data[4:], now)
        if len(data) < HANDSHAKE_SIZE:
            raise SessionManagerError("runt", "short handshake")
        her_key = data[40:72]
        p = self.peers.get(her_key)
        fresh = p is None
        if fresh:
            p = self._new_peer(her_key, now, False)
        content = p.session.decrypt(data, now, min_content=4)    # the sender's handle, checked before it counts
        if self._her_handles.get(p.her_handle) == her_key:
            del self._her_handles[p.her_handle]
        p.her_handle = struct.unpack_from(">I", content)[0]
        self._her_handles[p.her_handle] = her_key
        if fresh:
            self._add(her_key, p)
        return her_key, content[4:]

    def key_for_her_handle(self, handle: int) -> bytes | None:
        """Whose session a data packet we sent with this handle belongs to (a switch error quotes the packet)."""
        return self._her_handles.get(handle)

    def forget(self, her_key: bytes) -> None:
        p = self.peers.pop(her_key, None)
        if p is not None:
            self.by_handle.pop(p.my_handle, None)
            if self._her_handles.get(p.her_handle) == her_key:
                del self._her_handles[p.her_handle]
