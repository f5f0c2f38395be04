"""cjdns CryptoAuth (legacy NaCl handshake, pkt-reference.md §3) as a pure state machine.

Packets (all big-endian on the wire)::

    handshake  nonce u32 (0 Hello, 1 RepeatHello, 2 Key, 3 RepeatKey) | auth challenge 12 | random nonce 24
               | sender's permanent key 32 | box(secret, nonce24, sender's temporary key 32 || content)
    data       nonce u32 (>= 4) | box(data secret, nonce24(n), content)       (box = 16-byte tag || ciphertext)

Secrets: Hello ``shared(A.perm, B.perm)``, Key ``shared(B.perm, A.temp)``, data ``beforenm(her.temp, my.temp)``,
where ``shared`` is NaCl ``crypto_box_beforenm`` or, with a password, ``SHA256(X25519 || SHA256(password))``.
The data nonce is 24 zero bytes with the u32 nonce little-endian at offset 4 (initiator sending, responder
receiving) or 0 (the other way).

State (``next_nonce`` doubles as the state, as in cjdns)::

    INIT --send Hello--> SENT_HELLO --recv Key--> RECEIVED_KEY --recv data--> ESTABLISHED
    INIT --recv Hello--> RECEIVED_HELLO --send Key--> SENT_KEY --recv data--> ESTABLISHED

Crossing Hellos (both sides sent a Hello): a node that receives a Hello from a numerically lower permanent
key resets and answers it; the other node ignores the Hello it receives (crypto_auth.rs). Sessions reset after 60 s
without authenticated traffic when established and 10 s during setup (never while only a Hello was sent).
Time is passed in (``now``, seconds); nothing here reads a clock or does I/O. Every rejected packet raises
:class:`CryptoAuthError` with a ``reason``; the session state is never changed by a rejected packet (beyond the
inactivity reset that is due at that time anyway): a packet is checked in full, every secret computed, before the
session takes anything from it.

A temporary key that is a low-order Curve25519 point makes every shared secret all zero. libsodium refuses it
(cjdns ignores the error and goes on with the zero secret); here such a Hello or Key is rejected as ``bad_key``.
"""
from __future__ import annotations

import hashlib
import os
import struct
from enum import IntEnum

from nacl import bindings as nacl
from nacl import exceptions as nacl_exceptions

HANDSHAKE_SIZE = 120
DATA_OVERHEAD = 20
HELLO, REPEAT_HELLO, KEY, REPEAT_KEY = 0, 1, 2, 3
FIRST_DATA_NONCE = 4
MAX_NONCE = 0xFFFFFFFF - 0xF
RESET_AFTER_INACTIVITY = 60.0
SETUP_RESET_AFTER_INACTIVITY = 10.0
AUTH_NONE, AUTH_PASSWORD, AUTH_LOGIN = 0, 1, 2


class State(IntEnum):
    INIT = 0
    SENT_HELLO = 1
    RECEIVED_HELLO = 2
    SENT_KEY = 3
    RECEIVED_KEY = 4
    ESTABLISHED = 100


class CryptoAuthError(Exception):
    """A packet was rejected (bad, replayed, unauthenticated or unexpected). ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def hash_password(password: bytes, auth_type: int = AUTH_PASSWORD, login: bytes | None = None):
    """(password hash 32, lookup 7) for auth types 1 (password) and 2 (login), as cjdns hash_password."""
    if isinstance(password, str):
        password = password.encode()
    if isinstance(login, str):
        login = login.encode()
    pw_hash = hashlib.sha256(password).digest()
    if auth_type == AUTH_PASSWORD:
        lookup = hashlib.sha256(pw_hash).digest()[1:8]
    elif auth_type == AUTH_LOGIN:
        if login is None:
            raise ValueError("auth type 2 needs a login")
        lookup = hashlib.sha256(login).digest()[1:8]
    else:
        raise ValueError(f"unsupported auth type {auth_type}")
    return pw_hash, lookup


def _shared(my_sk: bytes, her_pk: bytes, pw_hash: bytes | None) -> bytes:
    try:
        if pw_hash is None:
            return nacl.crypto_box_beforenm(her_pk, my_sk)
        return hashlib.sha256(nacl.crypto_scalarmult(my_sk, her_pk) + pw_hash).digest()
    except (nacl_exceptions.CryptoError, RuntimeError, ValueError, TypeError) as e:
        raise CryptoAuthError("bad_key", str(e)) from None


def _box(key: bytes, nonce24: bytes, plaintext: bytes) -> bytes:
    return nacl.crypto_box_afternm(plaintext, nonce24, key)


def _unbox(key: bytes, nonce24: bytes, boxed: bytes) -> bytes:
    try:
        return nacl.crypto_box_open_afternm(boxed, nonce24, key)
    except (nacl_exceptions.CryptoError, RuntimeError, ValueError, TypeError):
        raise CryptoAuthError("decrypt_failed") from None


def data_nonce(n: int, initiator: bool, sending: bool) -> bytes:
    nonce = bytearray(24)
    idx = (1 if initiator else 0) if sending else (0 if initiator else 1)
    struct.pack_into("<I", nonce, 4 * idx, n)
    return bytes(nonce)


class ReplayProtector:
    """64-nonce sliding window (cjdns replay_protector.rs)."""

    def __init__(self):
        self.base = 0
        self.bits = 0

    def _advance(self, nonce: int):
        base, bits = self.base, self.bits
        if nonce < base:
            return None
        offset = nonce - base
        while offset > 63:
            if bits & 0xFFFFFFFF == 0xFFFFFFFF:
                shift = 32
            else:
                shift = offset - 47
            base += shift
            bits = bits >> shift if shift < 64 else 0
            offset -= shift
        if (bits >> offset) & 1:
            return None
        return base, bits | (1 << offset)

    def check(self, nonce: int) -> bool:
        """True if ``nonce`` would be accepted (nothing is recorded)."""
        return self._advance(nonce) is not None

    def accept(self, nonce: int) -> bool:
        """Record ``nonce``; False (and nothing recorded) if it is old or a replay."""
        result = self._advance(nonce)
        if result is None:
            return False
        self.base, self.bits = result
        return True


class Session:
    """One CryptoAuth session with one peer.

    ``her_public_key`` may be None for a responder that learns the key from the first Hello.
    ``password`` (with ``login`` for auth type 2) authenticates the Hello; a responder built with
    ``require_auth=True`` rejects Hellos without the matching password.
    ``rng`` is a callable ``n -> bytes`` (default os.urandom) used for temporary keys and handshake nonces.
    """

    def __init__(self, my_identity, her_public_key: bytes | None = None, initiator: bool = True,
                 now: float = 0.0, password: bytes | str | None = None, login: bytes | str | None = None,
                 require_auth: bool = False, rng=None):
        self.my_private_key = my_identity.private_key
        self.my_public_key = my_identity.public_key
        if her_public_key is not None and len(her_public_key) != 32:
            raise ValueError("her public key must be 32 bytes")
        self.her_public_key = her_public_key
        self.initiator = initiator          # our current role; a crossing Hello may change it
        self.require_auth = require_auth
        self.auth_type = AUTH_NONE
        self.pw_hash = self.lookup = None
        if password is not None:
            self.auth_type = AUTH_LOGIN if login is not None else AUTH_PASSWORD
            self.pw_hash, self.lookup = hash_password(password, self.auth_type, login)
        self._rng = rng or os.urandom
        self.last_activity = now
        self.counters = {"resets": 0, "rejected": 0}
        self._clear()

    # -- state ---------------------------------------------------------------------------------------------
    def _clear(self):
        self.next_nonce = 0
        self.is_established = False
        self.my_temp_sk = self.my_temp_pk = None
        self.her_temp_pk = None
        self.data_secret = None
        self.replay = ReplayProtector()

    def reset(self):
        """Forget the handshake (keys, nonces); keep the peer's permanent key and password."""
        self._clear()
        self.counters["resets"] += 1

    @property
    def state(self) -> State:
        if self.is_established:
            return State.ESTABLISHED
        return State(min(self.next_nonce, State.RECEIVED_KEY))

    @property
    def established(self) -> bool:
        return self.is_established

    @property
    def next_packet_is_handshake(self) -> bool:
        return self.next_nonce < FIRST_DATA_NONCE

    def check_timeout(self, now: float) -> bool:
        """Reset the session if it has been idle too long; True if it was reset."""
        if self.next_nonce in (0, 1) and not self.is_established:
            return False    # nothing to lose in INIT, and never reset while SENT_HELLO
        limit = RESET_AFTER_INACTIVITY if self.is_established else SETUP_RESET_AFTER_INACTIVITY
        if now - self.last_activity > limit:
            self.reset()
            self.last_activity = now
            return True
        return False

    def _new_temp_key(self):
        self.my_temp_sk = self._rng(32)
        self.my_temp_pk = nacl.crypto_scalarmult_base(self.my_temp_sk)

    def _challenge(self) -> bytes:
        if self.auth_type == AUTH_NONE or self.next_nonce >= KEY:
            rnd = bytearray(self._rng(12))
            rnd[0] = AUTH_NONE
            return bytes(rnd)
        return bytes([self.auth_type]) + self.lookup + bytes(4)

    # -- sending -------------------------------------------------------------------------------------------
    def encrypt(self, plaintext: bytes, now: float | None = None) -> bytes:
        """Wrap ``plaintext`` in the packet the current state calls for (Hello, Key or data)."""
        if now is not None:
            self.check_timeout(now)
        if self.next_nonce >= MAX_NONCE:
            self.reset()
        if self.next_nonce < KEY:
            return self._hello(plaintext)
        if self.next_nonce < FIRST_DATA_NONCE:
            return self._key(plaintext)
        n = self.next_nonce
        self.next_nonce += 1
        return struct.pack(">I", n) + _box(self.data_secret, data_nonce(n, self.initiator, True), plaintext)

    def _handshake(self, kind: int, secret: bytes, plaintext: bytes) -> bytes:
        nonce24 = self._rng(24)
        boxed = _box(secret, nonce24, self.my_temp_pk + plaintext)
        return struct.pack(">I", kind) + self._challenge() + nonce24 + self.my_public_key + boxed

    def _hello(self, plaintext: bytes) -> bytes:
        if self.her_public_key is None:
            raise CryptoAuthError("unknown_key", "cannot send a Hello without the peer's public key")
        kind = REPEAT_HELLO if self.next_nonce == State.SENT_HELLO else HELLO
        if kind == HELLO:
            self._new_temp_key()       # a fresh temporary key only from INIT
            self.initiator = True
        packet = self._handshake(kind, _shared(self.my_private_key, self.her_public_key, self.pw_hash), plaintext)
        self.next_nonce = State.SENT_HELLO
        return packet

    def _key(self, plaintext: bytes) -> bytes:
        kind = REPEAT_KEY if self.next_nonce == REPEAT_KEY else KEY
        packet = self._handshake(kind, _shared(self.my_private_key, self.her_temp_pk, self.pw_hash), plaintext)
        self.next_nonce = REPEAT_KEY
        return packet

    # -- receiving -----------------------------------------------------------------------------------------
    def decrypt(self, packet: bytes, now: float | None = None, min_content: int = 0) -> bytes:
        """Authenticate and decrypt ``packet``; returns the content or raises CryptoAuthError. A handshake whose
        content is shorter than ``min_content`` bytes is rejected (``runt``) like any other bad packet."""
        try:
            if now is not None:
                self.check_timeout(now)
            packet = bytes(packet)
            if len(packet) < DATA_OVERHEAD:
                raise CryptoAuthError("runt", f"{len(packet)} bytes")
            nonce = struct.unpack_from(">I", packet)[0]
            if nonce < FIRST_DATA_NONCE:
                content = self._decrypt_handshake(nonce, packet, min_content)
            else:
                content = self._decrypt_data(nonce, packet)
        except CryptoAuthError:
            self.counters["rejected"] += 1
            raise
        if now is not None:
            self.last_activity = now
        return content

    def _decrypt_data(self, nonce: int, packet: bytes) -> bytes:
        if self.data_secret is None or self.next_nonce < State.SENT_KEY:
            raise CryptoAuthError("no_session", "data packet before the handshake")
        if not self.replay.check(nonce):
            raise CryptoAuthError("replay", f"nonce {nonce}")
        content = _unbox(self.data_secret, data_nonce(nonce, self.initiator, False), packet[4:])
        self.replay.accept(nonce)
        if not self.is_established:
            self.is_established = True
            if self.next_nonce < FIRST_DATA_NONCE:
                self.next_nonce = FIRST_DATA_NONCE   # the responder may now send data
        return content

    def _decrypt_handshake(self, kind: int, packet: bytes, min_content: int) -> bytes:
        if len(packet) < HANDSHAKE_SIZE:
            raise CryptoAuthError("runt", f"handshake of {len(packet)} bytes")
        challenge = packet[4:16]
        nonce24 = packet[16:40]
        her_perm = packet[40:72]
        if self.her_public_key is not None and her_perm != self.her_public_key:
            raise CryptoAuthError("wrong_key", "handshake from another node")
        if her_perm == self.my_public_key:
            raise CryptoAuthError("wrong_key", "handshake from ourselves")
        if kind in (HELLO, REPEAT_HELLO):
            return self._on_hello(challenge, nonce24, her_perm, packet[72:], min_content)
        return self._on_key(nonce24, her_perm, packet[72:], min_content)

    def _hello_password(self, challenge: bytes) -> bytes | None:
        auth_type = challenge[0]
        if auth_type == AUTH_NONE:
            if self.require_auth:
                raise CryptoAuthError("auth_required")
            return None
        if self.pw_hash is None or auth_type != self.auth_type or challenge[1:8] != self.lookup:
            raise CryptoAuthError("unknown_auth", f"auth type {auth_type}")
        return self.pw_hash

    @staticmethod
    def _open_handshake(secret: bytes, nonce24: bytes, boxed: bytes, min_content: int) -> tuple[bytes, bytes]:
        plain = _unbox(secret, nonce24, boxed)
        her_temp, content = plain[:32], plain[32:]
        if her_temp == bytes(32):
            raise CryptoAuthError("wiseguy", "zero temporary key")
        if len(content) < min_content:
            raise CryptoAuthError("runt", f"handshake content of {len(content)} bytes")
        return her_temp, content

    def _on_hello(self, challenge: bytes, nonce24: bytes, her_perm: bytes, boxed: bytes, min_content: int) -> bytes:
        pw_hash = self._hello_password(challenge)
        her_temp, content = self._open_handshake(_shared(self.my_private_key, her_perm, pw_hash), nonce24, boxed,
                                                 min_content)
        if her_temp == self.her_temp_pk:
            # a repeat of the Hello we answer: cjdns keeps the session and delivers the content while it has
            # not seen data yet (RECEIVED_HELLO / SENT_KEY); past that it is a stale duplicate
            if self.next_nonce in (State.RECEIVED_HELLO, State.SENT_KEY) and not self.is_established:
                return content
            raise CryptoAuthError("duplicate_hello")
        if self.next_nonce == State.SENT_HELLO and not self.is_established:
            # crossing Hellos: the lower permanent key gives in
            if not her_perm < self.my_public_key:
                raise CryptoAuthError("crossing_hello", "we keep our own Hello")
        my_temp_sk = self._rng(32)
        data_secret = _shared(my_temp_sk, her_temp, None)      # bad_key for a low-order temporary key
        # accepted: from here on the session changes
        if self.next_nonce != 0 or self.is_established:
            self.reset()        # a new Hello from the peer restarts the session
        self.her_public_key = her_perm
        self.her_temp_pk = her_temp
        self.pw_hash = pw_hash
        self.initiator = False
        self.my_temp_sk, self.my_temp_pk = my_temp_sk, nacl.crypto_scalarmult_base(my_temp_sk)
        self.data_secret = data_secret
        self.next_nonce = KEY
        return content

    def _on_key(self, nonce24: bytes, her_perm: bytes, boxed: bytes, min_content: int) -> bytes:
        if self.my_temp_sk is None or not self.initiator or self.next_nonce < State.SENT_HELLO:
            raise CryptoAuthError("unexpected_key", "Key packet without our Hello")
        her_temp, content = self._open_handshake(_shared(self.my_temp_sk, her_perm, self.pw_hash), nonce24, boxed,
                                                 min_content)
        if her_temp != self.her_temp_pk:
            # first Key, or the responder restarted with a new temporary key
            data_secret = _shared(self.my_temp_sk, her_temp, None)     # bad_key for a low-order temporary key
            self.her_temp_pk = her_temp
            self.data_secret = data_secret
            self.replay = ReplayProtector()
            self.is_established = False
            self.next_nonce = FIRST_DATA_NONCE
        return content

