"""PacketCrypt hash primitives (pkt-reference.md §5.1; C `Hash.c`).

H32 is BLAKE2b with a 32-byte digest (not a truncated H64); `expand` is a ChaCha20-IETF keystream used as a
deterministic byte generator for states, programs and the RandGen PRNG.
"""
from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

_EXPAND_TAG = b"PC_EXPND"


def h32(data: bytes) -> bytes:
    """BLAKE2b-256 (C Hash_compress32)."""
    return hashlib.blake2b(data, digest_size=32).digest()


def h64(data: bytes) -> bytes:
    """BLAKE2b-512 (C Hash_compress64)."""
    return hashlib.blake2b(data, digest_size=64).digest()


def chacha20_stream(length: int, key32: bytes, nonce12: bytes, counter: int = 0) -> bytes:
    """`length` bytes of ChaCha20-IETF keystream starting at block `counter`."""
    # cryptography takes a 16-byte nonce: the 32-bit LE block counter followed by the 96-bit IETF nonce
    iv = struct.pack("<I", counter) + bytes(nonce12)
    enc = Cipher(algorithms.ChaCha20(bytes(key32), iv), mode=None).encryptor()
    return enc.update(bytes(length))


def expand(length: int, seed32: bytes, num: int) -> bytes:
    """C Hash_expand: ChaCha20 keystream, key=seed32, nonce = LE32(num) || "PC_EXPND", counter 0."""
    if len(seed32) != 32:
        raise ValueError("expand: seed must be 32 bytes")
    return chacha20_stream(length, seed32, struct.pack("<I", num & 0xFFFFFFFF) + _EXPAND_TAG)


# Names as in the C sources, for readers coming from there.
H32 = h32
H64 = h64
