"""PacketCrypt hash primitives: BLAKE2b sizes and the ChaCha20 `expand` generator."""
from testbed.paths import VECTORS
import json
import struct

from hypothesis import given, strategies as st

from node.chain.packetcrypt.hashing import chacha20_stream, expand, h32, h64

VECTORS = VECTORS


def test_h64_is_blake2b_512_rfc7693():
    # RFC 7693 appendix A: BLAKE2b-512("abc")
    assert h64(b"abc").hex() == (
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")


def test_h32_is_not_a_truncated_h64():
    assert len(h32(b"abc")) == 32
    assert h32(b"abc") != h64(b"abc")[:32]


def test_chacha20_block_rfc8439():
    # RFC 8439 §2.3.2: key 00..1f, nonce 000000090000004a00000000, counter 1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a00000000")
    assert chacha20_stream(64, key, nonce, counter=1).hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1), st.integers(1, 300))
def test_expand_is_chacha_with_the_pc_expnd_nonce(seed, num, length):
    out = expand(length, seed, num)
    assert len(out) == length
    assert out == chacha20_stream(length, seed, struct.pack("<I", num) + b"PC_EXPND")
    assert expand(length + 7, seed, num)[:length] == out          # a prefix of a longer expansion


def test_expand_depends_on_seed_and_num():
    seed = bytes(32)
    assert expand(64, seed, 0) != expand(64, seed, 1)
    assert expand(64, seed, 0) != expand(64, b"\x01" + bytes(31), 0)


def test_expand_rejects_a_short_seed():
    import pytest
    with pytest.raises(ValueError):
        expand(64, bytes(16), 0)


def test_expand_matches_the_cryptocycle_init_vector():
    # CryptoCycle init = expand(2048, seed, 0) with the nonce in the first 8 bytes: bytes 8..64 come from expand
    doc = json.loads(VECTORS.read_text())
    v = next(v for v in doc["vectors"] if v["id"] == "cryptocycle-5")
    first64 = bytes.fromhex(v["outputs"]["state_after_init_first64"])
    got = expand(64, bytes.fromhex(v["inputs"]["seed"]), 0)
    assert first64[16:64] == got[16:64]          # 8..16 is the rewritten data word region
