"""CryptoCycle: the 2048-byte ChaCha20-Poly1305 state machine (pkt-reference.md §5.1; C `CryptoCycle.c`).

The state is a plain bytearray(2048):
  [0:12]   ChaCha20 nonce (the first 8 bytes double as the u64 nonce/item-number seed)
  [12:16]  u32 LE "data" word: bits 0-3 azc | 8-11 tzc | 12 decrypt | 13-15 addLen | 16 truncated
           | 17-23 len | 24 failed | 25-31 version  (lengths in 16-byte blocks, zc = trailing zero counts)
  [16:48]  key; after a cycle [16:32] holds the Poly1305 tag
  [48:]    additional data (addLen*16 bytes) then the message (len*16 bytes)
Laid out like this one cycle equals RFC 8439 ChaCha20-Poly1305, except for the length wrap-around quirk kept
from C and Go: with addLen == 0 and azc > 0 the AEAD length is (0 - azc) mod 2^64.
"""
from __future__ import annotations

import struct

import nacl.bindings
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

from .hashing import expand, h32

STATE_SIZE = 2048
ITEM_SIZE = 1024
_HDR = 48
_U64 = (1 << 64) - 1
_DATA = struct.Struct("<I")
_LENS = struct.Struct("<QQ")
_ZERO64 = bytes(64)


def _data(s: bytearray) -> int:
    return _DATA.unpack_from(s, 12)[0]


def _set_data(s: bytearray, d: int) -> None:
    _DATA.pack_into(s, 12, d & 0xFFFFFFFF)


def get_item_no(s: bytes) -> int:
    """The u64 the miners use to pick the next item: LE64(s[16:24])."""
    return struct.unpack_from("<Q", s, 16)[0]


def is_failed(s: bytes) -> bool:
    return bool((_data(s) >> 24) & 1)


def make_fuzzable(s: bytearray) -> None:
    """Take the data word from key/tag bytes, clear version and failed, force len >= 32 blocks."""
    s[12:16] = s[16:20]
    d = _data(s) & 0x00FFFFFF      # version (25-31) and failed (24) cleared
    d |= 32 << 17                  # len |= 32
    _set_data(s, d)


def crypt(s: bytearray) -> None:
    """One ChaCha20-Poly1305 cycle in place; the tag goes to s[16:32]."""
    d = _data(s)
    if (d >> 25) or (d >> 24) & 1:           # wrong version or already failed: mark failed, do nothing
        _set_data(s, d | (1 << 24))
        return
    azc = d & 0x0F
    tzc = (d >> 8) & 0x0F
    decrypt = (d >> 12) & 1
    add_len = (d >> 13) & 0x07
    length = (d >> 17) & 0x7F
    final_len = min(length, 125 - add_len)
    d &= ~((1 << 16) | (0x7F << 17))
    d |= (int(final_len != length) << 16) | (final_len << 17)
    _set_data(s, d)

    iv = b"\0\0\0\0" + bytes(s[0:12])       # cryptography's nonce: LE32 counter 0 || IETF nonce
    stream = Cipher(algorithms.ChaCha20(bytes(s[16:48]), iv), mode=None).encryptor()
    mac = Poly1305(stream.update(_ZERO64)[:32])  # block 0 keys the MAC; the message uses counter 1 onwards

    aead_len = add_len * 16
    msg_len = final_len * 16
    start = _HDR + aead_len
    end = start + msg_len
    view = memoryview(s)
    if decrypt:
        mac.update(view[_HDR:end])
        s[start:end] = stream.update(view[start:end])
    else:
        s[start:end] = stream.update(view[start:end])
        if tzc:
            s[end - tzc:end] = bytes(tzc)
        mac.update(view[_HDR:end])
    view.release()
    mac.update(_LENS.pack((aead_len - azc) & _U64, (msg_len - tzc) & _U64))
    s[16:32] = mac.finalize()


def init(seed32: bytes, nonce64: int) -> bytearray:
    """A fresh state: expand(2048, seed, 0) with the first 8 bytes set to LE64(nonce), made fuzzable."""
    s = bytearray(expand(STATE_SIZE, seed32, 0))
    struct.pack_into("<Q", s, 0, nonce64 & _U64)
    make_fuzzable(s)
    return s


def update(s: bytearray, item1024: bytes, content32: bytes | None = None) -> None:
    """Absorb one 1024-byte item (and, for PcP v1 blocks, 32 bytes of content proof), then crypt."""
    if len(item1024) != ITEM_SIZE:
        raise ValueError("cryptocycle.update: item must be 1024 bytes")
    s[32:32 + ITEM_SIZE] = item1024
    if content32 is not None:
        if len(content32) != 32:
            raise ValueError("cryptocycle.update: content block must be 32 bytes")
        s[1056:1088] = content32
    make_fuzzable(s)
    crypt(s)


def smul(s: bytearray) -> None:
    """s[64:96] = X25519(scalar=s[0:32], point=X25519_base(s[32:64])), the block-mining extra step."""
    pub = nacl.bindings.crypto_scalarmult_base(bytes(s[32:64]))
    s[64:96] = nacl.bindings.crypto_scalarmult(bytes(s[0:32]), pub)


def final(s: bytearray) -> None:
    """s[0:32] = H32(whole state); the work hash is s[0:32] read as a little-endian number."""
    s[0:32] = h32(bytes(s))


class SeededInit:
    """init(seed, nonce) for many nonces of one seed: the 2048-byte expand only depends on the seed."""

    def __init__(self, seed32: bytes):
        self._base = expand(STATE_SIZE, seed32, 0)

    def init(self, nonce64: int) -> bytearray:
        s = bytearray(self._base)
        struct.pack_into("<Q", s, 0, nonce64 & _U64)
        make_fuzzable(s)
        return s
