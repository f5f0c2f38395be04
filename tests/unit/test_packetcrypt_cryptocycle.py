"""CryptoCycle: public vectors, RFC 8439 equivalence, the AEAD-length wrap-around, decrypt, smul and final."""
from testbed.paths import VECTORS
import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305
from hypothesis import given, settings, strategies as st

from node.chain.packetcrypt import cryptocycle as cc
from node.chain.packetcrypt.hashing import chacha20_stream, h32
from node.chain.packetcrypt.vectors import check_cryptocycle

VECTORS = [v for v in json.loads(VECTORS.read_text())["vectors"]
           if v["kind"] == "packetcrypt.cryptocycle"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_public_vectors(vector):
    check_cryptocycle(vector)


def _layout(key, nonce, ad, msg, decrypt=False, azc=None, tzc=None):
    """A state laid out as in the vectors: returns (state, offset of the message)."""
    add_len = (len(ad) + 15) // 16
    length = (len(msg) + 15) // 16
    azc = 16 * add_len - len(ad) if azc is None else azc
    tzc = 16 * length - len(msg) if tzc is None else tzc
    data = azc | tzc << 8 | int(decrypt) << 12 | add_len << 13 | length << 17
    s = bytearray(cc.STATE_SIZE)
    s[0:12] = nonce
    s[12:16] = struct.pack("<I", data)
    s[16:48] = key
    s[48:48 + len(ad)] = ad
    start = 48 + 16 * add_len
    s[start:start + len(msg)] = msg
    return s, start


@settings(max_examples=60)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12),
       st.binary(max_size=100), st.binary(min_size=1, max_size=1500))
def test_one_cycle_is_rfc8439_chacha20_poly1305(key, nonce, ad, msg):
    s, start = _layout(key, nonce, ad, msg)
    cc.crypt(s)
    want = ChaCha20Poly1305(key).encrypt(nonce, msg, ad)
    assert bytes(s[start:start + len(msg)]) + bytes(s[16:32]) == want


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12), st.binary(max_size=200),
       st.binary(min_size=1, max_size=600))
def test_decrypt_restores_the_plaintext_with_the_same_tag(key, nonce, ad, msg):
    s, start = _layout(key, nonce, ad, msg)
    cc.crypt(s)
    tag = bytes(s[16:32])
    d, dstart = _layout(key, nonce, ad, bytes(s[start:start + len(msg)]), decrypt=True)
    cc.crypt(d)
    assert bytes(d[dstart:dstart + len(msg)]) == msg
    assert bytes(d[16:32]) == tag


def test_aead_length_wraps_when_addlen_is_zero_but_azc_is_not():
    key, nonce, msg = bytes(range(32)), bytes(12), b"sixteen byte msg"
    s, start = _layout(key, nonce, b"", msg, azc=5)
    cc.crypt(s)
    block0 = chacha20_stream(64, key, nonce)
    ct = bytes(s[start:start + 16])
    assert ct == bytes(a ^ b for a, b in zip(msg, chacha20_stream(16, key, nonce, counter=1)))
    mac_data = ct + struct.pack("<QQ", (0 - 5) % 2**64, 16)
    assert bytes(s[16:32]) == Poly1305.generate_tag(block0[:32], mac_data)


def test_message_is_truncated_to_fit_the_state():
    s, _ = _layout(bytes(32), bytes(12), b"x" * 32, b"")
    struct.pack_into("<I", s, 12, (2 << 13) | (127 << 17))      # addLen 2, len 127 -> max 123
    cc.crypt(s)
    data = struct.unpack_from("<I", s, 12)[0]
    assert (data >> 17) & 0x7F == 123 and (data >> 16) & 1 == 1


def test_wrong_version_marks_the_state_failed_and_leaves_it():
    s, _ = _layout(bytes(32), bytes(12), b"", b"m" * 16)
    struct.pack_into("<I", s, 12, struct.unpack_from("<I", s, 12)[0] | (1 << 25))
    before = bytes(s)
    cc.crypt(s)
    assert cc.is_failed(s)
    assert bytes(s[16:]) == before[16:]


@given(st.binary(min_size=2048, max_size=2048))
def test_make_fuzzable(state):
    s = bytearray(state)
    cc.make_fuzzable(s)
    data = struct.unpack_from("<I", s, 12)[0]
    assert data >> 24 == 0                                # version and failed cleared
    assert (data >> 17) & 0x7F >= 32                      # at least 512 bytes of message
    assert (data & 0x00FFFFFF) | (32 << 17) == (struct.unpack_from("<I", state, 16)[0] & 0x00FFFFFF) | (32 << 17)


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1))
def test_init_and_item_no(seed, nonce):
    s = cc.init(seed, nonce)
    assert len(s) == 2048 and struct.unpack_from("<Q", s, 0)[0] == nonce
    assert cc.get_item_no(s) == struct.unpack_from("<Q", s, 16)[0]
    assert cc.SeededInit(seed).init(nonce) == s


def test_update_rejects_wrong_sizes():
    s = cc.init(bytes(32), 0)
    with pytest.raises(ValueError):
        cc.update(s, bytes(1000))
    with pytest.raises(ValueError):
        cc.update(s, bytes(1024), bytes(31))


def test_update_with_content_block_differs():
    a, b = cc.init(bytes(32), 1), cc.init(bytes(32), 1)
    cc.update(a, bytes(1024))
    cc.update(b, bytes(1024), b"\x01" * 32)
    assert a != b


@given(st.binary(min_size=2048, max_size=2048))
@settings(max_examples=25)
def test_smul_is_x25519_of_the_base_point_product(state):
    s = bytearray(state)
    cc.smul(s)
    pub = X25519PrivateKey.from_private_bytes(state[32:64]).public_key()
    shared = X25519PrivateKey.from_private_bytes(state[0:32]).exchange(
        X25519PublicKey.from_public_bytes(pub.public_bytes_raw()))
    assert bytes(s[64:96]) == shared
    assert bytes(s[:64]) == state[:64] and bytes(s[96:]) == state[96:]


def test_final_hashes_the_whole_state():
    s = cc.init(b"\x07" * 32, 9)
    want = h32(bytes(s))
    rest = bytes(s[32:])
    cc.final(s)
    assert bytes(s[:32]) == want and bytes(s[32:]) == rest
