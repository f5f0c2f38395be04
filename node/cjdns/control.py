"""Switch control messages (pkt-reference.md §2.5, cjdns ``wire/Control.h``, ``net/ControlHandler.c``).

On the wire, after the switch header::

    [handle 0xffffffff][checksum u16][type u16][body]

The checksum is the one's-complement Internet checksum over ``checksum|type|body`` with the checksum field 0.
:func:`encode` / :func:`parse` work on the part starting at the checksum; :func:`frame` / :func:`unframe` add
and remove the 0xffffffff handle. Bodies (all big-endian):

* ERROR 2       errorType u32 | cause (the start of the causing packet, its switch header first, <= 256 B)
* PING 3/PONG 4 magic u32 | version u32 | 0..256 bytes echoed
* KEYPING 5/KEYPONG 6   magic | version | public key 32 | 0..64 bytes echoed
* GETSNODE_QUERY 7/REPLY 8   magic | version | snodeVersion u32 | kbps u32 | snodeKey 32 | pathToSnode u64
* RPATH_QUERY 9/REPLY 10     magic | version | rpath u64 (the reply carries the label the query arrived with)
* LLADDR_QUERY 11/REPLY 12   magic | version | addrType u8 | addrLen u8 | port u16 | address (4 or 16 B)

The RPATH magics and the LLADDR address type numbers were not in the reference material; the values below
are pktlab's (marked). Parsers raise only :class:`ControlError`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

HANDLE = 0xFFFFFFFF
HEADER_SIZE = 4
ERROR_MAX_CAUSE = 256                     # Control_Error_MAX_SIZE: the cause is truncated to 256 bytes
PING_MAX_DATA = 256
KEYPING_MAX_DATA = 64

ERROR, PING, PONG, KEYPING, KEYPONG = 2, 3, 4, 5, 6
GETSNODE_QUERY, GETSNODE_REPLY, RPATH_QUERY, RPATH_REPLY, LLADDR_QUERY, LLADDR_REPLY = 7, 8, 9, 10, 11, 12

MAGIC = {
    PING: 0x09F91102, PONG: 0x9D74E35B, KEYPING: 0x01234567, KEYPONG: 0x89ABCDEF,
    GETSNODE_QUERY: 0x736E6F71, GETSNODE_REPLY: 0x736E6F72,          # "snoq" / "snor"
    RPATH_QUERY: 0x72706171, RPATH_REPLY: 0x72706172,                # "rpaq" / "rpar" (pktlab values)
    LLADDR_QUERY: 0x6C6C6171, LLADDR_REPLY: 0x6C6C6172,              # "llaq" / "llar"
}

# wire/Error.h
ERROR_CODES = {
    "NONE": 0, "MALFORMED_ADDRESS": 1, "FLOOD": 2, "LINK_LIMIT_EXCEEDED": 3, "OVERSIZE_MESSAGE": 4,
    "RUNT": 5, "AUTHENTICATION": 6, "INVALID": 7, "UNDELIVERABLE": 8, "LOOP_ROUTE": 9,
    "RETURN_PATH_INVALID": 10, "UNHANDLED": 11, "OVERFLOW": 12, "INTERNAL": 13,
}
ERROR_NAMES = {v: k for k, v in ERROR_CODES.items()}

LLADDR_NONE, LLADDR_UDP4, LLADDR_UDP6 = 0, 4, 6   # pktlab values


class ControlError(ValueError):
    """Malformed control message: runt, bad checksum, unknown type, wrong magic or bad length."""


def checksum(data: bytes) -> int:
    """One's-complement Internet checksum (RFC 1071) of ``data``, big-endian 16-bit words."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- messages ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Error:
    error_type: int
    cause: bytes = b""
    type = ERROR

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.error_type, f"UNKNOWN({self.error_type})")

    def body(self) -> bytes:
        return struct.pack(">I", self.error_type) + bytes(self.cause[:ERROR_MAX_CAUSE])

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "Error":
        if len(body) < 4:
            raise ControlError("runt ERROR")
        return cls(struct.unpack_from(">I", body)[0], bytes(body[4:]))


@dataclass(frozen=True)
class Ping:
    """PING, or PONG when ``pong`` is set (same layout, different type and magic)."""
    version: int
    data: bytes = b""
    pong: bool = False

    @property
    def type(self) -> int:
        return PONG if self.pong else PING

    def body(self) -> bytes:
        if len(self.data) > PING_MAX_DATA:
            raise ControlError("ping data is at most 256 bytes")
        return struct.pack(">II", MAGIC[self.type], self.version) + bytes(self.data)

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "Ping":
        magic, version = _magic_version(t, body, 8)
        if len(body) - 8 > PING_MAX_DATA:
            raise ControlError("ping data longer than 256 bytes")
        return cls(version, bytes(body[8:]), pong=(t == PONG))

    def reply(self, my_version: int) -> "Ping":
        return Ping(my_version, self.data, pong=True)


@dataclass(frozen=True)
class KeyPing:
    """KEYPING, or KEYPONG when ``pong`` is set; carries the sender's permanent public key."""
    version: int
    key: bytes
    data: bytes = b""
    pong: bool = False

    @property
    def type(self) -> int:
        return KEYPONG if self.pong else KEYPING

    def body(self) -> bytes:
        if len(self.key) != 32 or len(self.data) > KEYPING_MAX_DATA:
            raise ControlError("key ping needs a 32-byte key and at most 64 bytes of data")
        return struct.pack(">II", MAGIC[self.type], self.version) + bytes(self.key) + bytes(self.data)

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "KeyPing":
        magic, version = _magic_version(t, body, 40)
        if len(body) - 40 > KEYPING_MAX_DATA:
            raise ControlError("key ping data longer than 64 bytes")
        return cls(version, bytes(body[8:40]), bytes(body[40:]), pong=(t == KEYPONG))

    def reply(self, my_version: int, my_key: bytes) -> "KeyPing":
        return KeyPing(my_version, my_key, self.data, pong=True)


@dataclass(frozen=True)
class GetSnode:
    """GETSNODE query (``reply=False``) or reply: the supernode a node uses and the path to it."""
    version: int
    snode_version: int = 0
    kbps: int = 0
    snode_key: bytes = bytes(32)
    path_to_snode: int = 0
    reply: bool = False

    @property
    def type(self) -> int:
        return GETSNODE_REPLY if self.reply else GETSNODE_QUERY

    def body(self) -> bytes:
        if len(self.snode_key) != 32:
            raise ControlError("snode key is 32 bytes")
        return (struct.pack(">IIII", MAGIC[self.type], self.version, self.snode_version, self.kbps)
                + bytes(self.snode_key) + struct.pack(">Q", self.path_to_snode))

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "GetSnode":
        _magic_version(t, body, 56)
        _, version, snode_version, kbps = struct.unpack_from(">IIII", body)
        path = struct.unpack_from(">Q", body, 48)[0]
        return cls(version, snode_version, kbps, bytes(body[16:48]), path, reply=(t == GETSNODE_REPLY))


@dataclass(frozen=True)
class RPath:
    """RPATH query/reply: the replier writes the label (return path) the query reached it with."""
    version: int
    rpath: int = 0
    reply: bool = False

    @property
    def type(self) -> int:
        return RPATH_REPLY if self.reply else RPATH_QUERY

    def body(self) -> bytes:
        return struct.pack(">IIQ", MAGIC[self.type], self.version, self.rpath)

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "RPath":
        _magic_version(t, body, 16)
        _, version, rpath = struct.unpack_from(">IIQ", body)
        return cls(version, rpath, reply=(t == RPATH_REPLY))


@dataclass(frozen=True)
class LlAddr:
    """LLADDR query/reply: the link-layer (UDP) address a peer sees us at. ``host`` is 0, 4 or 16 bytes."""
    version: int
    host: bytes = b""
    port: int = 0
    reply: bool = False

    @property
    def type(self) -> int:
        return LLADDR_REPLY if self.reply else LLADDR_QUERY

    def body(self) -> bytes:
        kind = {0: LLADDR_NONE, 4: LLADDR_UDP4, 16: LLADDR_UDP6}.get(len(self.host))
        if kind is None or not 0 <= self.port <= 0xFFFF:
            raise ControlError("lladdr host must be 0, 4 or 16 bytes and port 0..65535")
        return (struct.pack(">IIBBH", MAGIC[self.type], self.version, kind, 4 + len(self.host), self.port)
                + bytes(self.host))

    @classmethod
    def from_body(cls, t: int, body: bytes) -> "LlAddr":
        _magic_version(t, body, 12)
        _, version, kind, length, port = struct.unpack_from(">IIBBH", body)
        size = {LLADDR_NONE: 0, LLADDR_UDP4: 4, LLADDR_UDP6: 16}.get(kind)
        if size is None or length != 4 + size or len(body) < 12 + size:
            raise ControlError("bad lladdr address")
        return cls(version, bytes(body[12:12 + size]), port, reply=(t == LLADDR_REPLY))


_CLASSES = {ERROR: Error, PING: Ping, PONG: Ping, KEYPING: KeyPing, KEYPONG: KeyPing,
            GETSNODE_QUERY: GetSnode, GETSNODE_REPLY: GetSnode, RPATH_QUERY: RPath, RPATH_REPLY: RPath,
            LLADDR_QUERY: LlAddr, LLADDR_REPLY: LlAddr}


def _magic_version(t: int, body: bytes, min_size: int) -> tuple[int, int]:
    if len(body) < min_size:
        raise ControlError(f"runt control message type {t}: {len(body)} < {min_size} bytes")
    magic, version = struct.unpack_from(">II", body)
    if magic != MAGIC[t]:
        raise ControlError(f"bad magic {magic:#010x} for control type {t}")
    return magic, version


# -- encoding --------------------------------------------------------------------------------------------

def encode(msg) -> bytes:
    """``checksum|type|body`` with the checksum filled in."""
    raw = struct.pack(">HH", 0, msg.type) + msg.body()
    return struct.pack(">H", checksum(raw)) + raw[2:]


def parse(data: bytes, verify_checksum: bool = True):
    """Parse ``checksum|type|body`` into a message object."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise ControlError("runt control message")
    if verify_checksum and checksum(data) != 0:
        raise ControlError("bad control checksum")
    t = struct.unpack_from(">H", data, 2)[0]
    cls = _CLASSES.get(t)
    if cls is None:
        raise ControlError(f"unknown control type {t}")
    return cls.from_body(t, data[HEADER_SIZE:])


def frame(msg) -> bytes:
    """The bytes that follow the switch header: the 0xffffffff handle then the control message."""
    return struct.pack(">I", HANDLE) + encode(msg)


def is_control(after_switch_header: bytes) -> bool:
    return len(after_switch_header) >= 4 and after_switch_header[:4] == b"\xff\xff\xff\xff"


def unframe(after_switch_header: bytes, verify_checksum: bool = True):
    if not is_control(after_switch_header):
        raise ControlError("not a control frame (handle is not 0xffffffff)")
    return parse(after_switch_header[4:], verify_checksum)
