"""Strict, bounded bencode (the encoding of cjdns subnode <-> snode messages, pkt-reference.md §4.2).

Values: ``int``, ``bytes`` (byte strings), ``list`` and ``dict`` with ``bytes`` keys. :func:`encode` also takes
``str`` (as UTF-8) and ``bytearray``/``memoryview``. :func:`decode` accepts only the canonical form:

* integers ``i<n>e`` without leading zeros, ``-0`` or empty digits;
* byte strings ``<len>:<bytes>`` without leading zeros in the length;
* dictionary keys byte strings in strictly ascending order (no duplicates);
* nothing after the top-level value;
* bounded: at most ``max_size`` input bytes, ``max_depth`` nesting and ``max_items`` values in total.

Every bad input raises :class:`BencodeError` and nothing else.
"""
from __future__ import annotations

MAX_SIZE = 64 * 1024
MAX_DEPTH = 16
MAX_ITEMS = 4096
MAX_INT_DIGITS = 40


class BencodeError(ValueError):
    """Malformed, non-canonical or oversized bencode."""


# -- encoding ----------------------------------------------------------------------------------------------

def encode(value) -> bytes:
    out = []
    _encode(value, out, 0)
    return b"".join(out)


def _bytes_of(value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise BencodeError(f"dictionary keys are byte strings, not {type(value).__name__}")


def _encode(value, out: list, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError("value nested too deeply")
    if isinstance(value, bool):
        raise BencodeError("booleans have no bencode form")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (bytes, bytearray, memoryview, str)):
        raw = _bytes_of(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, dict):
        items = sorted((_bytes_of(k), v) for k, v in value.items())
        for (a, _), (b, _) in zip(items, items[1:]):
            if a == b:
                raise BencodeError(f"duplicate key {a!r}")
        out.append(b"d")
        for key, item in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


# -- decoding ----------------------------------------------------------------------------------------------

class _Decoder:
    def __init__(self, data: bytes, max_depth: int, max_items: int):
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def fail(self, why: str):
        raise BencodeError(f"{why} at byte {self.pos}")

    def value(self, depth: int):
        if depth > self.max_depth:
            self.fail("nested too deeply")
        self.items_left -= 1
        if self.items_left < 0:
            self.fail("too many values")
        if self.pos >= len(self.data):
            self.fail("truncated")
        c = self.data[self.pos]
        if c == 0x69:                                 # i
            return self.integer()
        if 0x30 <= c <= 0x39:                         # 0-9
            return self.string()
        if c == 0x6C:                                 # l
            self.pos += 1
            out = []
            while self.peek() != 0x65:
                out.append(self.value(depth + 1))
            self.pos += 1
            return out
        if c == 0x64:                                 # d
            self.pos += 1
            out = {}
            last = None
            while self.peek() != 0x65:
                if not 0x30 <= self.peek() <= 0x39:
                    self.fail("dictionary key is not a byte string")
                key = self.string()
                if last is not None and key <= last:
                    self.fail("dictionary keys not strictly ascending")
                last = key
                out[key] = self.value(depth + 1)
            self.pos += 1
            return out
        self.fail(f"unexpected byte {c:#04x}")

    def peek(self) -> int:
        if self.pos >= len(self.data):
            self.fail("truncated")
        return self.data[self.pos]

    def integer(self) -> int:
        end = self.data.find(b"e", self.pos + 1, self.pos + 2 + MAX_INT_DIGITS)
        if end < 0:
            self.fail("unterminated or oversized integer")
        digits = self.data[self.pos + 1:end]
        body = digits[1:] if digits.startswith(b"-") else digits
        if not body or not body.isdigit() or (body[0] == 0x30 and (len(body) > 1 or digits.startswith(b"-"))):
            self.fail(f"bad integer {bytes(digits)!r}")
        self.pos = end + 1
        return int(digits)

    def string(self) -> bytes:
        colon = self.data.find(b":", self.pos, self.pos + 12)
        if colon < 0:
            self.fail("bad string length")
        digits = self.data[self.pos:colon]
        if not digits.isdigit() or (digits[0] == 0x30 and len(digits) > 1):
            self.fail(f"bad string length {bytes(digits)!r}")
        n = int(digits)
        start = colon + 1
        if start + n > len(self.data):
            self.fail("string runs past the end")
        self.pos = start + n
        return bytes(self.data[start:start + n])


def decode(data, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BencodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise BencodeError(f"{len(data)} bytes is over the {max_size}-byte limit")
    d = _Decoder(data, max_depth, max_items)
    value = d.value(0)
    if d.pos != len(data):
        raise BencodeError(f"{len(data) - d.pos} trailing bytes")
    return value
