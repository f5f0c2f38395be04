"""cjdns node keys and addresses (pkt-reference.md §1).

* A node key is a Curve25519 key pair; the private key is 32 random bytes used directly as the scalar.
* Its IPv6 address is ``SHA512(SHA512(public_key))[0:16]``, valid only when it starts with 0xfc.
* Public keys are written as 52 characters of cjdns base32 (DJB's dnscurve alphabet, least significant bits
  first, no padding) followed by ``.k``.
* Announcements are signed with an Ed25519 key derived from the same scalar (cjdns ``Sign.c``): the clamped
  private key is used as the Ed25519 secret scalar directly (no SHA-512 expansion of a seed), so the signing
  public key converts back to the node's Curve25519 key with the standard Ed25519 -> Curve25519 map.

Every parser here raises only :class:`KeyFormatError` (a ValueError) on bad input.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from nacl import bindings as nacl
from nacl import exceptions as nacl_exceptions

ALPHABET = "0123456789bcdfghjklmnpqrstuvwxyz"
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_DECODE.update({c.upper(): i for c, i in list(_DECODE.items())})

ADDRESS_PREFIX = 0xFC


class KeyFormatError(ValueError):
    """A key, key text, address or signature input is malformed."""


# -- base32 -------------------------------------------------------------------------------------------------

def base32_encode(data: bytes) -> str:
    """cjdns base32: 5-bit groups taken from the least significant bits first, no padding."""
    out = []
    work = bits = 0
    for b in data:
        work |= b << bits
        bits += 8
        while bits >= 5:
            out.append(ALPHABET[work & 31])
            work >>= 5
            bits -= 5
    if bits:
        out.append(ALPHABET[work & 31])
    return "".join(out)


def base32_decode(text: str) -> bytes:
    """Inverse of base32_encode; rejects unknown characters and non-zero or over-long trailing bits."""
    if not isinstance(text, str):
        raise KeyFormatError("base32 input must be a str")
    out = bytearray()
    work = bits = 0
    for ch in text:
        value = _DECODE.get(ch)
        if value is None:
            raise KeyFormatError(f"invalid base32 character {ch!r}")
        work |= value << bits
        bits += 5
        if bits >= 8:
            out.append(work & 0xFF)
            work >>= 8
            bits -= 8
    if bits >= 5 or work != 0:
        raise KeyFormatError("base32 input has trailing garbage bits")
    return bytes(out)


# -- public keys and addresses ---------------------------------------------------------------------------

def address_for_key(public_key: bytes) -> bytes:
    """The 16-byte IPv6 address of a Curve25519 public key (valid only if it starts with 0xfc)."""
    if len(public_key) != 32:
        raise KeyFormatError("public key must be 32 bytes")
    return hashlib.sha512(hashlib.sha512(public_key).digest()).digest()[:16]


def is_valid_address(ip6: bytes) -> bool:
    return len(ip6) == 16 and ip6[0] == ADDRESS_PREFIX


def ip6_text(ip6: bytes) -> str:
    """8 groups of 4 lower-case hex digits, no zero compression (cjdns style)."""
    if len(ip6) != 16:
        raise KeyFormatError("an IPv6 address is 16 bytes")
    h = ip6.hex()
    return ":".join(h[i:i + 4] for i in range(0, 32, 4))


def parse_ip6_text(text: str) -> bytes:
    """Parse any IPv6 text form (full or compressed) into 16 bytes."""
    import ipaddress
    try:
        return ipaddress.IPv6Address(text).packed
    except (ipaddress.AddressValueError, ValueError, TypeError) as e:
        raise KeyFormatError(f"bad IPv6 address {text!r}: {e}") from None


def pubkey_text(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise KeyFormatError("public key must be 32 bytes")
    return base32_encode(public_key) + ".k"


def parse_pubkey_text(text: str) -> bytes:
    """Parse ``<52 base32 chars>.k`` into the 32-byte public key."""
    if not isinstance(text, str) or len(text) != 54 or not text.endswith(".k"):
        raise KeyFormatError(f"a public key is 52 base32 characters followed by .k, got {text!r}")
    key = base32_decode(text[:-2])
    if len(key) != 32:
        raise KeyFormatError("public key text does not decode to 32 bytes")
    return key


def public_key_for(private_key: bytes) -> bytes:
    if len(private_key) != 32:
        raise KeyFormatError("private key must be 32 bytes")
    return nacl.crypto_scalarmult_base(private_key)


def _private_key_bytes(key) -> bytes:
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key)
        except ValueError:
            raise KeyFormatError("private key text must be 64 hex characters") from None
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise KeyFormatError("private key must be 32 bytes or 64 hex characters")
    return bytes(key)


@dataclass(frozen=True)
class Identity:
    """A node identity: Curve25519 key pair plus its fc00::/8 address."""
    private_key: bytes
    public_key: bytes
    ip6: bytes

    @classmethod
    def from_private_key(cls, key) -> "Identity":
        """From 32 bytes or 64 hex characters. The address may be invalid (check ``valid``)."""
        sk = _private_key_bytes(key)
        pk = public_key_for(sk)
        return cls(sk, pk, address_for_key(pk))

    @classmethod
    def generate(cls, rng=None) -> "Identity":
        """A fresh identity whose address starts with 0xfc (retries like cjdns Key_gen).

        ``rng`` is a ``random.Random``-like object (randbytes) or a callable ``n -> bytes``; default os.urandom.
        """
        if rng is None:
            draw = os.urandom
        elif hasattr(rng, "randbytes"):
            draw = rng.randbytes
        else:
            draw = rng
        while True:
            ident = cls.from_private_key(draw(32))
            if ident.valid:
                return ident

    @classmethod
    def from_seed(cls, seed: bytes, index: int) -> "Identity":
        """Deterministic identity number ``index`` derived from ``seed`` (for reproducible testbeds)."""
        counter = 0
        while True:
            sk = hashlib.sha256(b"pktlab-identity" + bytes(seed) + struct.pack(">QI", index, counter)).digest()
            ident = cls.from_private_key(sk)
            if ident.valid:
                return ident
            counter += 1

    @property
    def valid(self) -> bool:
        return is_valid_address(self.ip6)

    @property
    def pubkey_text(self) -> str:
        return pubkey_text(self.public_key)

    @property
    def ip6_text(self) -> str:
        return ip6_text(self.ip6)

    @property
    def private_key_hex(self) -> str:
        return self.private_key.hex()

    @property
    def signing_public_key(self) -> bytes:
        return signing_public_key(self.private_key)

    def sign(self, msg: bytes) -> bytes:
        return sign(self.private_key, msg)

    def __repr__(self) -> str:  # never print the private key
        return f"Identity({self.pubkey_text}, {self.ip6_text})"


# -- cjdns signing (Ed25519 with the Curve25519 scalar, §1.4) ---------------------------------------------

def _clamped_scalar(private_key: bytes) -> bytes:
    a = bytearray(_private_key_bytes(private_key))
    a[0] &= 248
    a[31] &= 63
    a[31] |= 64
    return bytes(a)


def _reduce(h64: bytes) -> bytes:
    return nacl.crypto_core_ed25519_scalar_reduce(h64)


def signing_public_key(private_key: bytes) -> bytes:
    """The Ed25519 public key A = a*B of a cjdns private key (no seed hashing)."""
    return nacl.crypto_scalarmult_ed25519_base_noclamp(_clamped_scalar(private_key))


def sign(private_key: bytes, msg: bytes, random32: bytes | None = None) -> bytes:
    """A standard-format Ed25519 signature R||S made with the cjdns-derived key (randomized nonce prefix)."""
    sk = _private_key_bytes(private_key)
    a = _clamped_scalar(sk)
    big_a = nacl.crypto_scalarmult_ed25519_base_noclamp(a)
    if random32 is None:
        random32 = os.urandom(32)
    prefix = hashlib.sha512(sk + random32).digest()[32:64]
    r = _reduce(hashlib.sha512(prefix + msg).digest())
    big_r = nacl.crypto_scalarmult_ed25519_base_noclamp(r)
    h = _reduce(hashlib.sha512(big_r + big_a + msg).digest())
    a_reduced = _reduce(a + bytes(32))
    s = nacl.crypto_core_ed25519_scalar_add(nacl.crypto_core_ed25519_scalar_mul(h, a_reduced), r)
    return big_r + s


def verify(signing_key: bytes, msg: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``msg`` under ``signing_key``."""
    if len(signing_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.crypto_sign_open(bytes(signature) + bytes(msg), bytes(signing_key))
        return True
    except (nacl_exceptions.CryptoError, ValueError, TypeError):
        return False


def curve25519_from_signing_key(signing_key: bytes) -> bytes:
    """The node's Curve25519 public key from its Ed25519 signing key."""
    if len(signing_key) != 32:
        raise KeyFormatError("signing key must be 32 bytes")
    try:
        return nacl.crypto_sign_ed25519_pk_to_curve25519(bytes(signing_key))
    except (nacl_exceptions.CryptoError, ValueError, TypeError) as e:
        raise KeyFormatError(f"signing key is not a valid Ed25519 point: {e}") from None
