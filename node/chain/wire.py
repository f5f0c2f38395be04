"""Bitcoin wire primitives shared by transactions and blocks (pktd is a btcd fork, so these are Bitcoin's).

A strict Reader for decoding untrusted bytes: every short read, non-canonical varint or absurd count raises
DecodeError (a ValueError) naming what was wrong, never another exception. Hashes are kept in internal byte
order; `hash_hex` gives the usual reversed display form.
"""
from __future__ import annotations

import hashlib
import struct

from .packetcrypt.block import write_varint as varint

__all__ = ["DecodeError", "Reader", "varint", "var_bytes", "sha256", "sha256d", "hash160", "hash_hex",
           "hash_from_hex"]


class DecodeError(ValueError):
    """Bytes that are not a well-formed transaction, block, header or script."""


class Reader:
    """Reads little-endian fields from a bytes object; raises DecodeError on anything malformed."""

    def __init__(self, data: bytes, what: str = "data"):
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise DecodeError(f"truncated {self.what}: wanted {n} bytes at offset {self.pos}, "
                              f"{self.remaining} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.read(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def i32(self) -> int:
        return struct.unpack("<i", self.read(4))[0]

    def i64(self) -> int:
        return struct.unpack("<q", self.read(8))[0]

    def varint(self) -> int:
        """btcd ReadVarInt: rejects encodings that are not the shortest (non-canonical varints)."""
        first = self.u8()
        if first < 0xFD:
            return first
        size, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
        n = int.from_bytes(self.read(size), "little")
        if n < minimum:
            raise DecodeError(f"non-canonical varint {n} in {self.what}")
        return n

    def count(self, min_item_size: int, what: str) -> int:
        """A varint element count, bounded by what the remaining bytes could hold (no absurd allocations)."""
        n = self.varint()
        if n * min_item_size > self.remaining:
            raise DecodeError(f"{what} count {n} exceeds the {self.remaining} bytes left in {self.what}")
        return n

    def var_bytes(self, limit: int | None = None) -> bytes:
        n = self.varint()
        if limit is not None and n > limit:
            raise DecodeError(f"{n}-byte field in {self.what} exceeds the limit of {limit}")
        return self.read(n)

    def end(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self.remaining} trailing bytes after {self.what}")


def var_bytes(data: bytes) -> bytes:
    return varint(len(data)) + bytes(data)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256: txids, block ids, merkle nodes, base58check checksums."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160(SHA-256(data)): pubkey and script hashes."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def hash_hex(h: bytes) -> str:
    """Display form of an internal-order hash (reversed, as Bitcoin prints txids and block ids)."""
    return bytes(h)[::-1].hex()


def hash_from_hex(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("a hash is 32 bytes (64 hex digits)")
    return raw[::-1]
