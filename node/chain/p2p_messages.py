"""The PKT peer-to-peer wire format (pktd is a btcd fork, so this is Bitcoin's `wire` package): framing and the
payloads a pktlab chain node speaks. Pure code: bytes in, objects or a `MessageError` out.

Frame (24-byte header, little-endian):
    magic u32 (ChainParams.net_magic, 0x082f00fc) | command char[12] (ASCII, NUL-padded) | length u32 |
    checksum = first 4 bytes of double SHA-256(payload) | payload

Payloads (btcd `wire/msg*.go`, protocol version PROTOCOL_VERSION):
    version     version i32 | services u64 | timestamp i64 | addr_recv | addr_from | nonce u64 |
                user_agent var_str | start_height i32 | relay u8        (addr = services u64 | ip[16] | port u16 BE)
    verack, sendheaders, getaddr, mempool    empty
    ping, pong  nonce u64
    getheaders  version u32 | varint n | n block locator hashes | hash_stop
    headers     varint n | n x (80-byte header | varint tx count = 0)
    inv, getdata, notfound   varint n | n x (type u32 | hash[32])        (MSG_TX = 1, MSG_BLOCK = 2)
    block       a block as node/chain/blocks.py encodes it (header, PacketCryptProof, transactions)
    tx          a transaction
Limits: a payload of at most MAX_PAYLOAD bytes, 2000 headers, 500 locator hashes, 50000 inventory entries.

A `FrameReader` is fed the bytes of a TCP stream. A bad magic or an oversized length leave the stream out of step,
so they are fatal (`fatal=True`: the connection must close); a bad checksum costs that message only.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .blocks import HEADER_SIZE, MAX_BLOCK_BYTES, BlockHeader
from .wire import DecodeError, Reader, sha256d, varint

PROTOCOL_VERSION = 70002
HEADER_LEN = 24
MAX_PAYLOAD = MAX_BLOCK_BYTES + 1024
MAX_HEADERS = 2000
MAX_LOCATOR = 500
MAX_INV = 50000
MAX_USER_AGENT = 256
MSG_TX, MSG_BLOCK = 1, 2
NODE_NETWORK = 1
_HDR = struct.Struct("<I12sI4s")


class MessageError(ValueError):
    """A frame or payload that breaks the wire format. `reason` names it for the counters; `fatal` when the
    stream cannot be read on (the connection must close)."""

    def __init__(self, reason: str, detail: str = "", fatal: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.fatal = fatal


def checksum(payload: bytes) -> bytes:
    return sha256d(payload)[:4]


def frame(magic: int, command: str, payload: bytes = b"") -> bytes:
    name = command.encode("ascii")
    if len(name) > 12:
        raise ValueError(f"command {command!r} is longer than 12 bytes")
    return _HDR.pack(magic, name.ljust(12, b"\0"), len(payload), checksum(payload)) + payload


class FrameReader:
    """Splits a byte stream into (command, payload) messages."""

    def __init__(self, magic: int):
        self.magic = magic
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> tuple[str, bytes] | None:
        """The next complete message, None when more bytes are needed, or MessageError."""
        if len(self.buf) < HEADER_LEN:
            return None
        magic, raw_cmd, length, check = _HDR.unpack_from(self.buf)
        if magic != self.magic:
            raise MessageError("bad_magic", f"0x{magic:08x}, this network is 0x{self.magic:08x}", fatal=True)
        if length > MAX_PAYLOAD:
            raise MessageError("oversized", f"payload of {length} bytes (at most {MAX_PAYLOAD})", fatal=True)
        if len(self.buf) < HEADER_LEN + length:
            return None
        payload = bytes(self.buf[HEADER_LEN:HEADER_LEN + length])
        del self.buf[:HEADER_LEN + length]
        name = raw_cmd.rstrip(b"\0")
        if b"\0" in name or not name or not all(0x20 < c < 0x7F for c in name):
            raise MessageError("bad_command", raw_cmd.hex())
        if checksum(payload) != check:
            raise MessageError("bad_checksum", name.decode())
        return name.decode(), payload


# --- payloads -----------------------------------------------------------------------------------------------------

def _addr(ip: bytes, port: int, services: int = NODE_NETWORK) -> bytes:
    return struct.pack("<Q", services) + bytes(ip).rjust(16, b"\0")[:16] + struct.pack(">H", port)


@dataclass(frozen=True)
class Version:
    nonce: int
    start_height: int
    user_agent: str = "/pktlab:0.1/"
    version: int = PROTOCOL_VERSION
    services: int = NODE_NETWORK
    timestamp: int = 0
    recv_ip: bytes = bytes(16)
    recv_port: int = 0
    from_ip: bytes = bytes(16)
    from_port: int = 0
    relay: bool = True

    def encode(self) -> bytes:
        agent = self.user_agent.encode()[:MAX_USER_AGENT]
        return (struct.pack("<iQq", self.version, self.services, self.timestamp)
                + _addr(self.recv_ip, self.recv_port) + _addr(self.from_ip, self.from_port)
                + struct.pack("<Q", self.nonce) + varint(len(agent)) + agent
                + struct.pack("<iB", self.start_height, 1 if self.relay else 0))

    @classmethod
    def decode(cls, payload: bytes) -> "Version":
        r = Reader(payload, "version")
        version, services, timestamp = struct.unpack("<iQq", r.read(20))
        _, recv_ip, recv_port = r.read(8), r.read(16), struct.unpack(">H", r.read(2))[0]
        _, from_ip, from_port = r.read(8), r.read(16), struct.unpack(">H", r.read(2))[0]
        nonce = struct.unpack("<Q", r.read(8))[0]
        agent = r.var_bytes(MAX_USER_AGENT)
        start_height = r.i32()
        relay = r.u8() != 0 if r.remaining else True        # BIP37: absent means relay
        r.end()
        try:
            text = agent.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("version: user agent is not UTF-8") from None
        return cls(nonce, start_height, text, version, services, timestamp, recv_ip, recv_port, from_ip,
                   from_port, relay)


def encode_nonce(nonce: int) -> bytes:
    return struct.pack("<Q", nonce)


def decode_nonce(payload: bytes, what: str) -> int:
    r = Reader(payload, what)
    n = struct.unpack("<Q", r.read(8))[0]
    r.end()
    return n


@dataclass(frozen=True)
class GetHeaders:
    locator: list[bytes]
    stop: bytes = bytes(32)
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return struct.pack("<I", self.version) + varint(len(self.locator)) + b"".join(self.locator) + self.stop

    @classmethod
    def decode(cls, payload: bytes) -> "GetHeaders":
        r = Reader(payload, "getheaders")
        version = r.u32()
        n = r.count(32, "locator hash")
        if n > MAX_LOCATOR:
            raise DecodeError(f"getheaders: {n} locator hashes, at most {MAX_LOCATOR}")
        locator = [r.read(32) for _ in range(n)]
        stop = r.read(32)
        r.end()
        return cls(locator, stop, version)


def encode_headers(headers: list[BlockHeader]) -> bytes:
    return varint(len(headers)) + b"".join(h.serialize() + b"\0" for h in headers)


def decode_headers(payload: bytes) -> list[BlockHeader]:
    r = Reader(payload, "headers")
    n = r.count(HEADER_SIZE + 1, "header")
    if n > MAX_HEADERS:
        raise DecodeError(f"headers: {n} headers, at most {MAX_HEADERS}")
    out = []
    for _ in range(n):
        out.append(BlockHeader.parse(r.read(HEADER_SIZE)))
        if r.varint() != 0:
            raise DecodeError("headers: a header's transaction count must be 0")
    r.end()
    return out


@dataclass(frozen=True)
class Inventory:
    items: list[tuple[int, bytes]] = field(default_factory=list)     # (MSG_TX | MSG_BLOCK, hash)

    def encode(self) -> bytes:
        return varint(len(self.items)) + b"".join(struct.pack("<I", t) + h for t, h in self.items)

    @classmethod
    def decode(cls, payload: bytes, what: str = "inv") -> "Inventory":
        r = Reader(payload, what)
        n = r.count(36, "inventory entry")
        if n > MAX_INV:
            raise DecodeError(f"{what}: {n} entries, at most {MAX_INV}")
        items = []
        for _ in range(n):
            kind = r.u32()
            items.append((kind, r.read(32)))
        r.end()
        return cls(items)
