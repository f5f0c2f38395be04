"""Signed subnode announcements (pkt-reference.md §4.1)."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from node.route_server import announcement as A
from node.route_server.announcement import Announcement, AnnouncementError
from node.cjdns.keys import Identity, ip6_text
from node.cjdns.labels import V358

# cjdns-ann serialized_ann.rs test_parse
VECTOR = bytes.fromhex(
    "3a2349bd342608df20d999ff2384e99f1e179dbdf4aaa61692c2477c011cfe635b42d3cdb8556d94f365cdfa338dc38f40c1fabf"
    "69500830af915f41bed71b09f2e1d148ed18b09d16b5766e4250df7b4e83a5ccedd4cfde15f1f474db1a5bc2fc928136dc1fe6e0"
    "4ef6a6dd7187b85f00001576462f6f69040200120107006114458100200100000000fffffffffffffc928136dc1fe6e04ef6a6dd"
    "7187b85f00000015")


def test_reference_vector():
    ann = Announcement.parse(VECTOR)
    assert ann.pubkey_text == "z15pzyd9wgzs2g5np7d3swrqc1533yb7xx9dq0pvrqrqs42uwgq0.k"
    assert ann.ip6_text == "fc49:11cb:38c2:8d42:9865:7b8e:0d67:11b3"
    assert ip6_text(ann.snode_ip) == "fc92:8136:dc1f:e6e0:4ef6:a6dd:7187:b85f"
    assert ann.timestamp_ms == 1474857989878 and ann.reset and ann.header_version == 1
    assert ann.protocol_version == 18
    assert ann.encoding_scheme == V358
    [peer] = ann.peers
    assert (peer.ip6, peer.label, peer.peer_num, peer.mtu8, peer.encoding_form) == (ann.snode_ip, 0x15, 0xFFFF, 0, 0)
    # our serializer reproduces the entity bytes, pad byte included
    assert A.encode_entities(ann.entities) == VECTOR[120:]


@pytest.mark.parametrize("offset", [0, 63, 64, 95, 100, 112, 119, 125, len(VECTOR) - 1])
def test_tampering_breaks_the_signature(offset):
    bad = bytearray(VECTOR)
    bad[offset] ^= 0x10
    with pytest.raises(AnnouncementError):
        Announcement.parse(bytes(bad))


def test_build_parse_round_trip_all_entities():
    me = Identity.from_seed(b"ann", 0)
    snode = Identity.from_seed(b"snode", 0)
    entities = (A.VersionEntity(22), A.EncodingSchemeEntity(V358),
                A.PeerEntity(snode.ip6, 0x13, peer_num=0x15, mtu8=1280 // 8, encoding_form=0),
                A.PeerEntity(Identity.from_seed(b"p", 1).ip6, 0x9e, peer_num=0xa2, encoding_form=1, flags=1),
                A.LinkStateEntity(0x15, 3, ((10, 0, 300), (2**20, 1, 70000), (0, 0, 0))))
    ann = Announcement.build(me, snode.ip6, 1_700_000_000_123, entities, reset=True)
    again = Announcement.parse(ann.raw)
    assert again == ann
    assert again.public_key == me.public_key and again.ip6 == me.ip6
    assert again.entities == entities
    assert again.timestamp_ms == 1_700_000_000_123 and again.reset
    assert again.signing_key == me.signing_public_key
    for e in A.parse_entities(ann.raw[120:]):
        if isinstance(e, A.LinkStateEntity):
            assert (len(e.body()) + 2) % 8 == 0
    # the scheme entity ends 4-aligned in the message, as cjdns pads it
    pos = 120
    while pos < len(ann.raw):
        if ann.raw[pos] == 1:
            pos += 1
            continue
        if ann.raw[pos + 1] == A.ENCODING_SCHEME:
            assert (pos + ann.raw[pos]) % 4 == 0
        pos += ann.raw[pos]


def test_signature_is_over_everything_after_it():
    me = Identity.from_seed(b"ann", 1)
    ann = Announcement.build(me, bytes(16), 5, (A.VersionEntity(22),))
    for i in range(64, len(ann.raw)):
        bad = bytearray(ann.raw)
        bad[i] ^= 1
        with pytest.raises(AnnouncementError):
            Announcement.parse(bytes(bad))


def test_malformed_entities():
    for body in [b"\x00", b"\x05\x02\x00", b"\x04\x02\x00\x12\x00", b"\x03\x01\x00", b"\x04\x00\xff\xff",
                 b"\x05\x03\x09\x00\x00"]:
        with pytest.raises(AnnouncementError):
            A.parse_entities(body)
    assert A.parse_entities(b"\x01\x01\x04\x02\x00\x16") == [A.VersionEntity(22)]
    assert A.parse_entities(b"\x04\x09ab") == [A.UnknownEntity(9, b"ab")]
    with pytest.raises(AnnouncementError):
        Announcement.parse(VECTOR[:119])


def test_varint_big_endian():
    assert A.varint_encode(0xFC) == b"\xfc"
    assert A.varint_encode(0xFD) == b"\xfd\x00\xfd"
    assert A.varint_encode(0x1234) == b"\xfd\x12\x34"
    assert A.varint_encode(0x12345678) == b"\xfe\x12\x34\x56\x78"
    assert A.varint_encode(2**40) == b"\xff" + (2**40).to_bytes(8, "big")
    with pytest.raises(AnnouncementError):
        A.varint_decode(b"\xfe\x00", 0)


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(n):
    raw = A.varint_encode(n)
    assert A.varint_decode(raw + b"tail", 0) == (n, len(raw))


@given(st.integers(0, 0xFFFF), st.integers(0, 17),
       st.lists(st.tuples(*[st.integers(0, 2**33)] * 3), max_size=6))
def test_link_state_round_trip(node_id, start, slots):
    e = A.LinkStateEntity(node_id, start, tuple(slots))
    assert A.parse_entities(A.encode_entities([e])) == [e]


def _parse_all(data):
    for verify in (True, False):
        try:
            Announcement.parse(data, verify=verify)
        except AnnouncementError:
            pass
    try:
        A.parse_entities(data[120:])
    except AnnouncementError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parser_random_bytes_only_announcement_error(data):
    _parse_all(data)


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_parser_random_entities_only_announcement_error(tail):
    _parse_all(VECTOR[:120] + tail)


def _random_announcement(rng):
    if rng.random() < 0.5:
        return rng.randbytes(rng.randrange(0, 200))
    tail = bytearray(rng.randbytes(rng.randrange(0, 80)))
    if tail and rng.random() < 0.7:
        tail[0] = min(len(tail), rng.choice((2, 4, 7, 32, rng.randrange(1, 40))))
        if len(tail) > 1:
            tail[1] = rng.randrange(0, 5)
    return VECTOR[:120] + bytes(tail)


def test_structured_random_announcements():
    rng = random.Random(4)
    for _ in range(300):
        _parse_all(_random_announcement(rng))


@pytest.mark.slow
def test_parser_fuzz_100k():
    rng = random.Random(8)
    for _ in range(100_000):
        _parse_all(_random_announcement(rng))
