"""Switch control messages (pkt-reference.md §2.5)."""
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from node.cjdns import control as C

MESSAGES = [
    C.Error(C.ERROR_CODES["MALFORMED_ADDRESS"], bytes(range(20))),
    C.Ping(22, b"cookie"), C.Ping(22, b"", pong=True),
    C.KeyPing(22, b"k" * 32, b"c" * 8), C.KeyPing(21, b"j" * 32, pong=True),
    C.GetSnode(22), C.GetSnode(22, 22, 1000, b"s" * 32, 0x153, reply=True),
    C.RPath(22), C.RPath(22, 0x4D2A2, reply=True),
    C.LlAddr(22), C.LlAddr(22, bytes([10, 0, 0, 1]), 5000, reply=True), C.LlAddr(22, b"\xfc" * 16, 1, reply=True),
]


def test_rfc1071_checksum_example():
    assert C.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert C.checksum(b"\x01") == 0xFEFF


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: f"{type(m).__name__}-{m.type}")
def test_round_trip_and_checksum(msg):
    raw = C.encode(msg)
    assert C.checksum(raw) == 0
    assert struct.unpack(">H", raw[2:4])[0] == msg.type
    assert C.parse(raw) == msg
    framed = C.frame(msg)
    assert C.is_control(framed) and C.unframe(framed) == msg


def test_wire_layouts():
    raw = C.encode(C.Ping(22, b"ab"))
    assert raw[2:] == bytes.fromhex("0003" "09f91102" "00000016") + b"ab"
    raw = C.encode(C.GetSnode(22, 21, 5, b"\x07" * 32, 0x13, reply=True))
    assert len(raw) == 4 + 56 and raw[4:8] == b"snor" and raw[-8:] == (0x13).to_bytes(8, "big")


def test_replies():
    ping = C.Ping(21, b"x")
    assert ping.reply(22) == C.Ping(22, b"x", pong=True)
    kp = C.KeyPing(21, b"a" * 32, b"cookie")
    assert kp.reply(22, b"b" * 32) == C.KeyPing(22, b"b" * 32, b"cookie", pong=True)


def test_rejections():
    good = bytearray(C.encode(C.Ping(22, b"x")))
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(C.ControlError, match="checksum"):
        C.parse(bytes(bad))
    assert C.parse(bytes(bad), verify_checksum=False).data == b"y"
    wrong_magic = C.encode(C.Ping(22))[:4] + b"\x00" * 8
    with pytest.raises(C.ControlError):
        C.parse(wrong_magic, verify_checksum=False)
    with pytest.raises(C.ControlError):
        C.parse(b"\x00\x00\x00\x63", verify_checksum=False)   # unknown type
    with pytest.raises(C.ControlError):
        C.unframe(b"\x00\x00\x00\x01" + bytes(good))
    with pytest.raises(C.ControlError):
        C.encode(C.Ping(22, b"x" * 257))


def test_error_cause_truncated_to_256():
    raw = C.encode(C.Error(7, b"z" * 400))
    assert len(raw) == 4 + 4 + 256
    assert C.parse(raw).name == "INVALID"


def _parse_random(data):
    for verify in (True, False):
        try:
            C.parse(data, verify)
        except C.ControlError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_parser_only_raises_control_error(data):
    _parse_random(data)


@settings(max_examples=300)
@given(st.sampled_from(sorted(C._CLASSES)), st.binary(max_size=70))
def test_parser_typed_random_bodies(t, body):
    _parse_random(struct.pack(">HH", 0, t) + body)


@pytest.mark.slow
def test_parser_fuzz_100k():
    rng = random.Random(9)
    types = sorted(C._CLASSES) + [0, 99]
    for _ in range(100_000):
        body = rng.randbytes(rng.randrange(0, 80))
        if rng.random() < 0.7:
            t = rng.choice(types)
            magic = C.MAGIC.get(t, 0)
            body = struct.pack(">HHI", 0, t, magic) + body
        _parse_random(body)
