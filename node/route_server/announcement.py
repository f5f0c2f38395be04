"""Signed subnode announcements to the route server (pkt-reference.md §4.1, cjdns ``wire/Announce.h``).

Layout::

    0   signature 64        Ed25519 (cjdns-derived key, keys.sign) over bytes [64:] (everything after it)
    64  signing key 32      -> Curve25519 node key -> node ip6
    96  snode ip6 16        the route server this announcement is addressed to
    112 u64 BE              timestamp_ms << 4 | reset << 3 | header version (3 bits, 1 today)
    120 entities            [length u8][type u8][body]; length counts the two header bytes; 1 = pad byte

    type 0 ENCODING_SCHEME  serialized scheme (labels.EncodingScheme)   (preceded by 0x01 pads to end 4-aligned)
    type 1 PEER (32 B)      encodingForm u8 | flags u8 | mtu8 u16 | peerNum u16 | 0xffffffff | peer ip6 16
                            | label u32 (the peer's one-hop label to us; 0 withdraws the link)
    type 2 VERSION (4 B)    protocol version u16
    type 3 LINK_STATE       padCount u8 | padCount zero bytes | VarInt nodeId | VarInt startSlot
                            | (lag, drops, kbRecv) VarInt triples for slots start, start+1, ... mod 18

VarInt is Bitcoin-style with big-endian multi-byte values. Parsing raises only :class:`AnnouncementError`.

PKT entities (pktlab; cjdns uses types 0..3 and ignores unknown types, so these numbers are free)::

    type 80 LINK_QUALITY (18 B)  peerNum u16 | flags u16 (0) | rtt_us u32 | loss_ppm u32 | capacity_kbps u32
        What the announcing node measured on its link to the peer with that peerNum (link pings, counters,
        the configured or leased rate). Ephemeral like LINK_STATE. The route server turns it into a link-value
        sample ``capacity_kbps / (rtt_ms * (1 + loss_ppm / 10_000))`` (1 % loss halves the value), so it
        weighs paths the same way as cjdns link state.
    type 81 LEASE (59..122 B)  peerNum u16 | leaseNum u16 | guarantee_bps u64 | expires_s u32 | price u64
                               | holder 32 | lease id (1..64 bytes, the rest of the entity)
        One end of a bandwidth lease on the link with that peerNum, as the announcing device has it:
        * leaseNum: the lease's own switch interface at the announcing node, in peerNum's form (the low 16 bits
          of its one-hop label through the lease); 0xffff: it has none (an offer nobody configured yet);
        * guarantee_bps: the guaranteed bandwidth, bit/s;
        * expires_s: Unix time the lease ends; 0xffffffff: never;
        * price: atomic PKT units per GB asked for it (0: not for sale);
        * holder: the holder's cjdns (Curve25519) public key; 32 zero bytes: nobody holds it (on offer);
        * lease id: ASCII ``[A-Za-z0-9._:-]``, the same at both ends of the link (the market's Name rule).
        Both ends of a leased link announce it, each with its own leaseNum: with the two, the route server
        builds labels through the lease's interfaces, so a label chooses the lease as on a PKT device. The
        server keeps the newest entity per lease id until it expires or leaves the 20-minute window.
    type 81, 30 B (the first layout; still decoded, into the same entity, never written)
                               lease_id u64 | peerNum u16 | reserved u16 (0) | kbps u32 | expires_s u32 | price u64
        decodes as lease id = the decimal u64, guarantee_bps = kbps x 1000, no interface (0xffff), no holder.
    type 82 OFFER (60..254 B)  version u8 (1) | kbps u64 | start_s u32 | end_s u32 | price u64 | seller 32
                               | token_len u8 | token | lease_len u8 | lease | link_len u8 | link
        A lease token the announcing device's market sells (node/market): the token id, the lease and the link
        it is on (names: 1..64 of ``[A-Za-z0-9._:-]``, the market's Name rule; a link is ``a--b``), the guarantee
        in kbit/s, the term as Unix seconds [start_s, end_s), the price in atomic PKT units (1..2^63-1, as the
        market has it) and the seller's market key (Ed25519), which must be the key that signs the announcement:
        a device announces only its own offers. Ephemeral: a node's offers are those of its newest announcement
        (none there: it sells nothing now), until their end_s. A version other than 1 is refused (a newer
        layout), not guessed at. An OFFER entity that breaks a rule does not make the announcement malformed:
        it decodes as :class:`BadOfferEntity` naming why, and the route server counts and drops it (routing
        state is not lost to a bad market entry).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from node.cjdns import keys
from node.cjdns.labels import EncodingScheme, LabelError

HEADER_SIZE = 120
HEADER_VERSION = 1
ENCODING_SCHEME, PEER, VERSION, LINK_STATE = 0, 1, 2, 3
LINK_QUALITY, LEASE, OFFER = 80, 81, 82     # pktlab entities
LINK_QUALITY_SIZE = 18
LEASE_V1_SIZE = 30                     # the first LEASE layout (decoded only)
LEASE_FIXED = struct.Struct(">HHQIQ32s")   # the LEASE layout before its id
MAX_LEASE_ID = 64
LEASE_ID_RE = re.compile(rb"\A[A-Za-z0-9._:-]{1,64}\Z")
NEVER = 0xFFFFFFFF                     # LEASE expires_s: the lease does not end
OFFER_VERSION = 1
OFFER_FIXED = struct.Struct(">BQIIQ32s")  # the OFFER layout before its three names
MAX_UINT = (1 << 63) - 1               # an offer's kbps and price (the market's integer range)
PEER_SIZE = 32
LINK_STATE_SLOTS = 18
UNKNOWN_PEER_NUM = 0xFFFF
MAX_TIMESTAMP = (1 << 60) - 1


class AnnouncementError(ValueError):
    """The announcement is malformed, badly signed or from an invalid key."""


# -- VarInt (cjdns util/VarInt.h: Bitcoin-style, big-endian) -----------------------------------------------

def varint_encode(n: int) -> bytes:
    if n < 0 or n >= 1 << 64:
        raise AnnouncementError(f"VarInt out of range: {n}")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack(">H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack(">I", n)
    return b"\xff" + struct.pack(">Q", n)


def varint_decode(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); AnnouncementError if the data ends early."""
    if pos >= len(data):
        raise AnnouncementError("truncated VarInt")
    first = data[pos]
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first, 0)
    if size == 0:
        return first, pos + 1
    if pos + 1 + size > len(data):
        raise AnnouncementError("truncated VarInt")
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


# -- entities --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodingSchemeEntity:
    scheme: EncodingScheme
    type = ENCODING_SCHEME

    def body(self) -> bytes:
        return self.scheme.serialize()


@dataclass(frozen=True)
class PeerEntity:
    ip6: bytes
    label: int                     # the peer's one-hop label to us (u32); 0 withdraws the link
    peer_num: int = UNKNOWN_PEER_NUM   # low 16 bits of our one-hop label to the peer
    mtu8: int = 0                  # MTU in 8-byte units, 0 = unknown
    encoding_form: int = 0         # form number of our label to the peer in our scheme
    flags: int = 0
    type = PEER

    def body(self) -> bytes:
        if len(self.ip6) != 16 or not 0 <= self.label <= 0xFFFFFFFF:
            raise AnnouncementError("peer needs a 16-byte ip6 and a 32-bit label")
        return struct.pack(">BBHHI", self.encoding_form, self.flags, self.mtu8, self.peer_num, 0xFFFFFFFF) \
            + bytes(self.ip6) + struct.pack(">I", self.label)


@dataclass(frozen=True)
class VersionEntity:
    version: int
    type = VERSION

    def body(self) -> bytes:
        return struct.pack(">H", self.version)


@dataclass(frozen=True)
class LinkStateEntity:
    node_id: int                   # the peerNum of the link
    start_slot: int
    slots: tuple = ()              # ((lag, drops, kb_recv), ...) for start_slot, start_slot+1, ... mod 18
    type = LINK_STATE

    def body(self) -> bytes:
        tail = varint_encode(self.node_id) + varint_encode(self.start_slot)
        for lag, drops, kb_recv in self.slots:
            tail += varint_encode(lag) + varint_encode(drops) + varint_encode(kb_recv)
        pad = (-(2 + 1 + len(tail))) % 8          # keep the entity 8-aligned like cjdns
        return bytes([pad]) + bytes(pad) + tail


@dataclass(frozen=True)
class LinkQualityEntity:
    peer_num: int
    rtt_us: int = 0
    loss_ppm: int = 0
    capacity_kbps: int = 0
    type = LINK_QUALITY

    def body(self) -> bytes:
        try:
            return struct.pack(">HHIII", self.peer_num, 0, self.rtt_us, self.loss_ppm, self.capacity_kbps)
        except struct.error as e:
            raise AnnouncementError(f"link quality field out of range: {e}") from None

    @property
    def value(self) -> float:
        """Link-value sample (higher is better), comparable with cjdns link-state values."""
        if self.rtt_us == 0:
            return 0.0
        return self.capacity_kbps / (self.rtt_us / 1000 * (1 + self.loss_ppm / 10_000))


@dataclass(frozen=True)
class LeaseEntity:
    """One end of a bandwidth lease (type 81, layout above)."""
    lease_id: str
    peer_num: int                          # the link: the announcing node's peerNum for the peer
    lease_num: int = UNKNOWN_PEER_NUM      # the lease's own interface at the announcing node, in peerNum's form
    guarantee_bps: int = 0
    expires_s: int = NEVER                 # Unix time
    price: int = 0                         # atomic PKT units per GB, 0 = not for sale
    holder: bytes | None = None            # cjdns public key; None = nobody holds it
    type = LEASE

    def body(self) -> bytes:
        lease_id = self.lease_id.encode("ascii", "replace") if isinstance(self.lease_id, str) else b""
        if not LEASE_ID_RE.match(lease_id):
            raise AnnouncementError(f"lease id {self.lease_id!r}: 1..{MAX_LEASE_ID} of A-Z a-z 0-9 . _ : -")
        if self.holder is not None and (len(self.holder) != 32 or not any(self.holder)):
            raise AnnouncementError("lease holder: a 32-byte public key (not all zero), or None")
        try:
            return LEASE_FIXED.pack(self.peer_num, self.lease_num, self.guarantee_bps, self.expires_s, self.price,
                                    bytes(self.holder or bytes(32))) + lease_id
        except struct.error as e:
            raise AnnouncementError(f"lease field out of range: {e}") from None

    def expired(self, now_ms: int) -> bool:
        return self.expires_s != NEVER and self.expires_s * 1000 <= now_ms


def _parse_lease(body: bytes) -> LeaseEntity:
    if len(body) == LEASE_V1_SIZE - 2:
        lease_id, peer_num, _reserved, kbps, expires, price = struct.unpack(">QHHIIQ", body)
        return LeaseEntity(str(lease_id), peer_num, UNKNOWN_PEER_NUM, kbps * 1000, expires, price)
    if len(body) <= LEASE_FIXED.size:
        raise AnnouncementError(f"lease entity of {len(body) + 2} bytes")
    peer_num, lease_num, guarantee, expires, price, holder = LEASE_FIXED.unpack_from(body)
    lease_id = body[LEASE_FIXED.size:]
    if not LEASE_ID_RE.match(lease_id):
        raise AnnouncementError(f"lease id {lease_id[:16]!r}: 1..{MAX_LEASE_ID} of A-Z a-z 0-9 . _ : -")
    return LeaseEntity(lease_id.decode("ascii"), peer_num, lease_num, guarantee, expires, price,
                       holder if any(holder) else None)


@dataclass(frozen=True)
class OfferEntity:
    """A lease token for sale (type 82, layout above)."""
    token: str
    lease: str
    link: str
    kbps: int
    start_s: int
    end_s: int
    price: int
    seller: bytes                          # the seller's market key (Ed25519): the announcement's signing key
    type = OFFER

    def body(self) -> bytes:
        names = b""
        for what in ("token", "lease", "link"):
            value = getattr(self, what)
            raw = value.encode("ascii", "replace") if isinstance(value, str) else b""
            if not LEASE_ID_RE.match(raw):
                raise AnnouncementError(f"offer {what} {value!r}: 1..{MAX_LEASE_ID} of A-Z a-z 0-9 . _ : -")
            names += bytes([len(raw)]) + raw
        problem = _offer_problem(self.kbps, self.start_s, self.end_s, self.price)
        if problem:
            raise AnnouncementError(f"offer {self.token}: {problem}")
        if not isinstance(self.seller, bytes) or len(self.seller) != 32:
            raise AnnouncementError("offer seller: a 32-byte Ed25519 key")
        return OFFER_FIXED.pack(OFFER_VERSION, self.kbps, self.start_s, self.end_s, self.price, self.seller) + names

    def expired(self, now_ms: int) -> bool:
        return self.end_s * 1000 <= now_ms


@dataclass(frozen=True)
class BadOfferEntity:
    """An OFFER entity that breaks a rule: ``reason`` (counted by the route server) and ``detail``."""
    reason: str                            # malformed | unknown_version | bad_term | bad_value
    detail: str
    raw: bytes
    type = OFFER

    def body(self) -> bytes:
        return self.raw


def _offer_problem(kbps, start_s, end_s, price) -> str:
    for name, v in (("kbps", kbps), ("price", price)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_UINT:
            return f"{name} {v!r}: a whole number 1..2^63-1"
    for name, v in (("start_s", start_s), ("end_s", end_s)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
            return f"{name} {v!r}: Unix seconds 0..2^32-1"
    if end_s <= start_s:
        return f"the term ends ({end_s}) before it starts ({start_s})"
    return ""


def _parse_offer(body: bytes):
    def bad(reason, detail):
        return BadOfferEntity(reason, detail, bytes(body))
    if not body:
        return bad("malformed", "empty offer entity")
    if body[0] != OFFER_VERSION:
        return bad("unknown_version", f"offer version {body[0]} (this server reads {OFFER_VERSION})")
    if len(body) < OFFER_FIXED.size:
        return bad("malformed", f"offer entity of {len(body) + 2} bytes")
    _version, kbps, start, end, price, seller = OFFER_FIXED.unpack_from(body)
    names, pos = [], OFFER_FIXED.size
    for what in ("token", "lease", "link"):
        size = body[pos] if pos < len(body) else 0
        raw = body[pos + 1:pos + 1 + size]
        if size == 0 or len(raw) != size or not LEASE_ID_RE.match(raw):
            return bad("malformed", f"offer {what}: 1..{MAX_LEASE_ID} of A-Z a-z 0-9 . _ : -")
        names.append(raw.decode("ascii"))
        pos += 1 + size
    if pos != len(body):
        return bad("malformed", f"{len(body) - pos} bytes after the offer's link")
    problem = _offer_problem(kbps, start, end, price)
    if problem:
        return bad("bad_term" if "term" in problem else "bad_value", f"offer {names[0]}: {problem}")
    return OfferEntity(*names, kbps, start, end, price, seller)


@dataclass(frozen=True)
class UnknownEntity:
    type: int
    raw: bytes

    def body(self) -> bytes:
        return self.raw


def _parse_entity(t: int, body: bytes):
    if t == ENCODING_SCHEME:
        try:
            return EncodingSchemeEntity(EncodingScheme.parse(body))
        except LabelError as e:
            raise AnnouncementError(f"bad encoding scheme entity: {e}") from None
    if t == PEER:
        if len(body) != PEER_SIZE - 2:
            raise AnnouncementError(f"peer entity of {len(body) + 2} bytes")
        form, flags, mtu8, peer_num, _unused = struct.unpack_from(">BBHHI", body)
        return PeerEntity(bytes(body[10:26]), struct.unpack_from(">I", body, 26)[0], peer_num, mtu8, form, flags)
    if t == VERSION:
        if len(body) != 2:
            raise AnnouncementError(f"version entity of {len(body) + 2} bytes")
        return VersionEntity(struct.unpack(">H", body)[0])
    if t == LINK_STATE:
        if not body:
            raise AnnouncementError("empty link state")
        pad = body[0]
        pos = 1 + pad
        if pos > len(body):
            raise AnnouncementError("link state padding overruns the entity")
        node_id, pos = varint_decode(body, pos)
        start_slot, pos = varint_decode(body, pos)
        if start_slot >= LINK_STATE_SLOTS:
            raise AnnouncementError(f"link state start slot {start_slot}")
        slots = []
        while pos < len(body):
            triple = []
            for _ in range(3):
                v, pos = varint_decode(body, pos)
                triple.append(v)
            slots.append(tuple(triple))
        if len(slots) > LINK_STATE_SLOTS:
            raise AnnouncementError("link state with more than 18 slots")
        return LinkStateEntity(node_id, start_slot, tuple(slots))
    if t == LINK_QUALITY:
        if len(body) != LINK_QUALITY_SIZE - 2:
            raise AnnouncementError(f"link quality entity of {len(body) + 2} bytes")
        peer_num, _flags, rtt, loss, kbps = struct.unpack(">HHIII", body)
        return LinkQualityEntity(peer_num, rtt, loss, kbps)
    if t == LEASE:
        return _parse_lease(body)
    if t == OFFER:
        return _parse_offer(body)
    return UnknownEntity(t, bytes(body))


def encode_entities(entities) -> bytes:
    out = bytearray()
    for e in entities:
        body = e.body()
        if len(body) + 2 > 255:
            raise AnnouncementError("entity longer than 255 bytes")
        if e.type == ENCODING_SCHEME:
            while (HEADER_SIZE + len(out) + len(body) + 2) % 4:
                out.append(1)
        out += bytes([len(body) + 2, e.type]) + body
    return bytes(out)


def parse_entities(data: bytes) -> list:
    entities = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:
            raise AnnouncementError(f"zero-length entity at {HEADER_SIZE + pos}")
        if length == 1:
            pos += 1
            continue
        if pos + length > len(data):
            raise AnnouncementError("entity runs past the end of the announcement")
        entities.append(_parse_entity(data[pos + 1], data[pos + 2:pos + length]))
        pos += length
    return entities


# -- announcement ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Announcement:
    signing_key: bytes
    snode_ip: bytes
    timestamp_ms: int
    reset: bool
    entities: tuple
    header_version: int = HEADER_VERSION
    signature: bytes = b""
    raw: bytes = field(default=b"", repr=False)
    public_key: bytes = field(default=b"", repr=False)
    ip6: bytes = field(default=b"", repr=False)

    @classmethod
    def build(cls, identity, snode_ip: bytes, timestamp_ms: int, entities, reset: bool = False,
              random32: bytes | None = None) -> "Announcement":
        """Serialize and sign (cjdns ReachabilityAnnouncer: the signature covers everything after it)."""
        if len(snode_ip) != 16 or not 0 <= timestamp_ms <= MAX_TIMESTAMP:
            raise AnnouncementError("snode ip must be 16 bytes and the timestamp fit 60 bits")
        signing_key = keys.signing_public_key(identity.private_key)
        stamp = (timestamp_ms << 4) | (int(bool(reset)) << 3) | HEADER_VERSION
        signed = signing_key + bytes(snode_ip) + struct.pack(">Q", stamp) + encode_entities(entities)
        signature = keys.sign(identity.private_key, signed, random32)
        return cls.parse(signature + signed)

    @classmethod
    def parse(cls, data: bytes, verify: bool = True) -> "Announcement":
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise AnnouncementError(f"runt announcement: {len(data)} bytes")
        signature, signing_key, snode_ip = data[:64], data[64:96], data[96:112]
        if verify and not keys.verify(signing_key, data[64:], signature):
            raise AnnouncementError("bad signature")
        try:
            public_key = keys.curve25519_from_signing_key(signing_key)
        except keys.KeyFormatError as e:
            raise AnnouncementError(f"bad signing key: {e}") from None
        ip6 = keys.address_for_key(public_key)
        if not keys.is_valid_address(ip6):
            raise AnnouncementError("the key's address is not in fc00::/8")
        stamp = struct.unpack_from(">Q", data, 112)[0]
        return cls(signing_key, snode_ip, stamp >> 4, bool(stamp & 8), tuple(parse_entities(data[HEADER_SIZE:])),
                   stamp & 7, signature, data, public_key, ip6)

    # -- views -------------------------------------------------------------------------------------------
    @property
    def pubkey_text(self) -> str:
        return keys.pubkey_text(self.public_key)

    @property
    def ip6_text(self) -> str:
        return keys.ip6_text(self.ip6)

    @property
    def peers(self) -> list[PeerEntity]:
        return [e for e in self.entities if isinstance(e, PeerEntity)]

    @property
    def link_states(self) -> list[LinkStateEntity]:
        return [e for e in self.entities if isinstance(e, LinkStateEntity)]

    @property
    def link_qualities(self) -> list[LinkQualityEntity]:
        return [e for e in self.entities if isinstance(e, LinkQualityEntity)]

    @property
    def leases(self) -> list[LeaseEntity]:
        return [e for e in self.entities if isinstance(e, LeaseEntity)]

    @property
    def offers(self) -> list:
        """The OFFER entities: OfferEntity, or BadOfferEntity for one that breaks a rule."""
        return [e for e in self.entities if isinstance(e, (OfferEntity, BadOfferEntity))]

    @property
    def encoding_scheme(self) -> EncodingScheme | None:
        found = [e.scheme for e in self.entities if isinstance(e, EncodingSchemeEntity)]
        return found[-1] if found else None

    @property
    def protocol_version(self) -> int | None:
        found = [e.version for e in self.entities if isinstance(e, VersionEntity)]
        return found[-1] if found else None
