"""cjdns keys, addresses, base32 and the derived Ed25519 signing (pkt-reference.md §1)."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from node.cjdns import keys as K

# pkt-reference.md §1.3 (private key or None, public key text, ip6)
TABLE = [
    ("378813dfecc62185ffab4d00030b55f50b54e515bfcea8b41f2bd1c2511bae03",
     "qgkjd0stfvk9r3j28s4gh8rgslbgx2r5xgxzxkgm5vdxqwn8xsu0.k", "fcf5:c1ec:be67:9ad5:1f6c:f31b:5d74:37b0"),
    ("751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e",
     "r6jzx210usqbgnm3pdtm1z6btd14pvdtkn5j8qnpgqzknpggkuw0.k", "fc68:cb2c:60db:cb96:19ac:34a8:fd34:03fc"),
    ("ad7ea326aa01940a25bc9e012622db694fd9b4177cf3f89116f3cfe85c80e14a",
     "kmzm4w0kj9bswd5qmx74nu7kusv5pj40vcsmp781j6xxgpd59z00.k", "fc41:94b5:0925:7ba9:3959:11ab:a006:367a"),
    ("d8543e70b9ae7c41bc18a49a9ceeca9cdc4501966bbd7e76cf3a9fbc12ed8bb4",
     "vz21tg07061s8v9mckrvgtfds7j2u5lst8cwl6nqhp81njrh5wg0.k", "fc1f:5b96:e1c5:625d:afde:2523:a7fa:383a"),
    (None, "rjndc8rvg194ddf2j5v679cfjcpmsmhv8p022q3lvpym21cqwyh0.k", "fc50:47a8:2ef5:1c82:952e:10fc:dbad:dba9"),
    (None, "08bz912l989nzqc21q9x5qr96ns465nd71f290hb9q40z94jjw60.k", "fc8d:56ed:a8f3:237e:e586:2447:9966:9be1"),
    (None, "byxcwmgbhkcgt3vv2820vujbc65szwkn9sj7vk1x3tjdw4q0sc30.k", "fcb6:19d6:8d6a:7437:0213:039c:d9fb:e255"),
    (None, "kw0vfw3tmb6u6p21z5jmmymdlumwknlg3x8muk5mcw66tdpqlw30.k", "fc02:2735:e595:bb70:8ffc:5293:8af8:c4b7"),
    (None, "xpr2z2s3hnr0qzpk2u121uqjv15dc335v54pccqlqj6c5p840yy0.k", "fc32:6a5d:e235:7057:e990:6398:5d7a:aa58"),
]


@pytest.mark.parametrize("sk,pk_text,ip6", TABLE)
def test_reference_addresses(sk, pk_text, ip6):
    pk = K.parse_pubkey_text(pk_text)
    assert K.ip6_text(K.address_for_key(pk)) == ip6
    assert K.pubkey_text(pk) == pk_text
    if sk:
        ident = K.Identity.from_private_key(sk)
        assert ident.pubkey_text == pk_text
        assert ident.ip6_text == ip6
        assert ident.valid


def test_known_public_key_hex():
    ident = K.Identity.from_private_key(TABLE[1][0])
    assert ident.public_key.hex() == "d7c0df45001a5be5e81c95e519be5199055237cb9116882cadcefe48ab735173"


def test_uppercase_base32_accepted():
    assert K.parse_pubkey_text(TABLE[0][1][:-2].upper() + ".k") == K.parse_pubkey_text(TABLE[0][1])


def test_generate_gives_fc_addresses():
    rng = random.Random(1)
    for _ in range(3):
        ident = K.Identity.generate(rng)
        assert ident.ip6[0] == 0xFC
        assert K.Identity.from_private_key(ident.private_key) == ident


def test_from_seed_is_deterministic_and_distinct():
    a = K.Identity.from_seed(b"lab", 0)
    assert a == K.Identity.from_seed(b"lab", 0)
    assert a != K.Identity.from_seed(b"lab", 1)
    assert a != K.Identity.from_seed(b"lab2", 0)
    assert a.ip6_text.startswith("fc")


def test_repr_hides_private_key():
    ident = K.Identity.from_seed(b"lab", 0)
    assert ident.private_key.hex() not in repr(ident)


def test_signing_key_maps_back_to_node_key():
    for i in range(4):
        ident = K.Identity.from_seed(b"sign", i)
        assert K.curve25519_from_signing_key(ident.signing_public_key) == ident.public_key


def test_sign_verify():
    ident = K.Identity.from_seed(b"sign", 0)
    sig = K.sign(ident.private_key, b"message")
    assert K.verify(ident.signing_public_key, b"message", sig)
    assert not K.verify(ident.signing_public_key, b"messagf", sig)
    bad = bytearray(sig)
    bad[5] ^= 1
    assert not K.verify(ident.signing_public_key, b"message", bytes(bad))
    other = K.Identity.from_seed(b"sign", 1)
    assert not K.verify(other.signing_public_key, b"message", sig)
    # the nonce prefix is randomized: two signatures differ but both verify
    sig2 = K.sign(ident.private_key, b"message")
    assert sig2 != sig and K.verify(ident.signing_public_key, b"message", sig2)


def test_invalid_inputs():
    with pytest.raises(K.KeyFormatError):
        K.parse_pubkey_text("not a key")
    with pytest.raises(K.KeyFormatError):
        K.Identity.from_private_key("zz" * 32)
    with pytest.raises(K.KeyFormatError):
        K.base32_decode("1")  # 5 leftover bits
    assert not K.verify(b"\x00" * 32, b"m", b"\x00" * 64)


@given(st.binary(max_size=80))
def test_base32_round_trip(data):
    assert K.base32_decode(K.base32_encode(data)) == data


def _base32_parsers(text):
    for parse in (K.base32_decode, K.parse_pubkey_text):
        try:
            parse(text)
        except K.KeyFormatError:
            pass


@settings(max_examples=300)
@given(st.text(alphabet=K.ALPHABET + "AZaz.!\x00", max_size=60))
def test_base32_parsers_only_raise_their_error(text):
    _base32_parsers(text)


@settings(max_examples=300)
@given(st.binary(min_size=32, max_size=32))
def test_signing_key_conversion_only_raises_its_error(data):
    try:
        K.curve25519_from_signing_key(data)
    except K.KeyFormatError:
        pass


@pytest.mark.slow
def test_base32_parsers_fuzz_100k():
    rng = random.Random(7)
    chars = K.ALPHABET + "AZaz.!\x00é"
    for _ in range(100_000):
        n = rng.randrange(0, 60)
        _base32_parsers("".join(rng.choice(chars) for _ in range(n)))
