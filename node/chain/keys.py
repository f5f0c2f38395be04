"""secp256k1 keys (coincurve) and PKT addresses (pkt-reference.md §6: P2PKH version 0x75 'p', P2SH 0x38,
WIF 0xe0; base58check as Bitcoin). Bech32 ("pkt1...") addresses belong to segwit outputs, which this chain does
not use.
"""
from __future__ import annotations

import base58
import coincurve

from . import script as S
from .wire import hash160, sha256

P2PKH_VERSION = 0x75
P2SH_VERSION = 0x38
WIF_VERSION = 0xE0


class AddressError(ValueError):
    """Text that is not a PKT address of a supported kind."""


class Key:
    """A secp256k1 private key with its compressed public key."""

    def __init__(self, secret: bytes):
        self._key = coincurve.PrivateKey(bytes(secret))
        self.pubkey = self._key.public_key.format(compressed=True)

    @classmethod
    def from_seed(cls, seed: bytes | str) -> "Key":
        """A deterministic key: the secret is SHA-256 of the seed (for tests and published testbed keys)."""
        return cls(sha256(seed.encode() if isinstance(seed, str) else bytes(seed)))

    @classmethod
    def generate(cls) -> "Key":
        return cls(coincurve.PrivateKey().secret)

    @property
    def secret(self) -> bytes:
        return self._key.secret

    @property
    def pubkey_hash(self) -> bytes:
        return hash160(self.pubkey)

    @property
    def p2pkh_script(self) -> bytes:
        return S.p2pkh(self.pubkey_hash)

    @property
    def address(self) -> str:
        return encode_address(self.p2pkh_script)

    def sign(self, digest32: bytes) -> bytes:
        """A DER signature (low-S, RFC 6979 nonce) over a 32-byte signature hash."""
        return self._key.sign(bytes(digest32), hasher=None)

    def wif(self) -> str:
        return base58.b58encode_check(bytes([WIF_VERSION]) + self.secret + b"\x01").decode()

    @classmethod
    def from_wif(cls, text: str) -> "Key":
        try:
            raw = base58.b58decode_check(text)
        except ValueError as e:
            raise AddressError(f"bad WIF key: {e}") from None
        if raw[:1] != bytes([WIF_VERSION]) or len(raw) not in (33, 34):
            raise AddressError("not a PKT WIF key")
        return cls(raw[1:33])


def encode_address(script_pubkey: bytes) -> str:
    """The address of a P2PKH or P2SH output script (any vote suffix ignored)."""
    kind, fields = S.classify(script_pubkey)
    if kind == "p2pkh":
        return base58.b58encode_check(bytes([P2PKH_VERSION]) + fields[0]).decode()
    if kind == "p2sh":
        return base58.b58encode_check(bytes([P2SH_VERSION]) + fields[0]).decode()
    raise AddressError(f"a {kind} output has no address")


def decode_address(text: str) -> bytes:
    """The output script an address pays to."""
    try:
        raw = base58.b58decode_check(text.strip())
    except ValueError as e:
        raise AddressError(f"bad address {text!r}: {e}") from None
    if len(raw) != 21:
        raise AddressError(f"bad address {text!r}: {len(raw)} bytes")
    if raw[0] == P2PKH_VERSION:
        return S.p2pkh(raw[1:])
    if raw[0] == P2SH_VERSION:
        return bytes([S.Op.OP_HASH160, 20]) + raw[1:] + bytes([S.Op.OP_EQUAL])
    raise AddressError(f"address version 0x{raw[0]:02x} is not PKT's")
