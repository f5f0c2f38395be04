"""The wire form shared by every market message: canonical JSON, hex byte strings, cjdns-derived signatures.

PKT leaves the TokenStrike formats open (pkt-reference.md §7), so pktlab defines them once, here:

* A message is one JSON object, UTF-8. Top-level messages start with ``"v": 1`` and ``"type": "<name>"``;
  nested records (the operations inside an issuer update) carry ``"op": "<name>"`` instead.
* Byte strings are lowercase hex; integers are JSON integers 0 .. 2^63-1 (no floats, no booleans, anywhere);
  names (token ids, lease ids, fault codes) match ``[A-Za-z0-9._:-]{1,64}``; an outpoint is
  ``<64 hex digits>:<output index>``.
* The object must have exactly its type's fields (no missing, extra or duplicated keys).
* A signed message has a ``"sig"`` field: a cjdns Ed25519 signature (node/cjdns/keys.py: the node's
  Curve25519 key used as the Ed25519 scalar, so a market key *is* a node identity) by the key in the type's
  signer field, over ``b"pktlab-market-v1\\n"`` + the canonical JSON of the object without ``"sig"`` (sorted keys,
  separators ``,`` and ``:``, ASCII only). The type is inside the signed object, so one signature can never be
  replayed as another type.
* A message's *digest* is SHA-256 of those signed bytes: two copies that differ only in their (randomized)
  signature have the same digest. Digests name updates (``prev``), lock requests (the lock id) and reveals.

Decoding raises only :class:`WireError` (code ``malformed``); what a decoded message means is checked by the
module that owns its type.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import ClassVar

from node.cjdns import keys

VERSION = 1
DOMAIN = b"pktlab-market-v1\n"
MAX_UINT = (1 << 63) - 1
MAX_MESSAGE_BYTES = 1 << 20            # every message but a discredit proof
MAX_PROOF_BYTES = 16 << 20             # a proof carries an issuer chain segment
MALFORMED = "malformed"
BAD_SIGNATURE = "bad_signature"

_HEX = re.compile(r"\A(?:[0-9a-f]{2})*\Z")


class WireError(ValueError):
    """A message is rejected; ``code`` is the counted reason, ``detail`` says what exactly is wrong."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise WireError(MALFORMED, f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_float(text):
    raise WireError(MALFORMED, f"non-integer number {text}")


def loads(data, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Parse one JSON object strictly (no floats, NaN or duplicate keys)."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray)):
        raise WireError(MALFORMED, "a message is bytes")
    if len(data) > max_bytes:
        raise WireError(MALFORMED, f"message of {len(data)} bytes (limit {max_bytes})")
    try:
        obj = json.loads(bytes(data), object_pairs_hook=_no_duplicates, parse_float=_no_float,
                         parse_constant=_no_float)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise WireError(MALFORMED, f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise WireError(MALFORMED, "a message is a JSON object")
    return obj


# -- field kinds ----------------------------------------------------------------------------------------------

class Hex:
    """A byte string of ``size`` bytes (or 1..``max_size`` bytes when size is None)."""

    def __init__(self, size: int | None, max_size: int = 64):
        self.size, self.max_size = size, max_size

    def encode(self, value: bytes):
        return value.hex()

    def decode(self, value, name: str) -> bytes:
        if not isinstance(value, str) or not _HEX.match(value):
            raise WireError(MALFORMED, f"{name} must be lowercase hex")
        n = len(value) // 2
        if (self.size is not None and n != self.size) or (self.size is None and not 1 <= n <= self.max_size):
            want = self.size if self.size is not None else f"1..{self.max_size}"
            raise WireError(MALFORMED, f"{name} must be {want} bytes, got {n}")
        return bytes.fromhex(value)


class UInt:
    def encode(self, value: int):
        return value

    def decode(self, value, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT:
            raise WireError(MALFORMED, f"{name} must be an integer 0..2^63-1")
        return value


class Name:
    """A short text: by default ``[A-Za-z0-9._:-]{1,64}`` (ids, codes), or any pattern given."""

    def __init__(self, pattern: str = r"[A-Za-z0-9._:-]{1,64}"):
        self.pattern, self.regex = pattern, re.compile(r"\A(?:" + pattern + r")\Z")

    def encode(self, value: str):
        return value

    def decode(self, value, name: str) -> str:
        if not isinstance(value, str) or not self.regex.match(value):
            raise WireError(MALFORMED, f"{name} must match {self.pattern}")
        return value


class One:
    """A nested record of one of ``classes``, told apart by their tag (``op`` or ``type``); None if optional."""

    def __init__(self, *classes, optional: bool = False):
        self.classes, self.optional = classes, optional

    def encode(self, value):
        return None if value is None else value.body()

    def decode(self, value, name: str):
        if value is None and self.optional:
            return None
        if not isinstance(value, dict):
            raise WireError(MALFORMED, f"{name} must be an object")
        for cls in self.classes:
            if value.get(cls.TAG) == cls.TYPE:
                return cls.from_body(value)
        raise WireError(MALFORMED, f"{name}: expected one of {[c.TYPE for c in self.classes]}")


class Many:
    """A list of 0..max_len items of one kind."""

    def __init__(self, item, max_len: int):
        self.item, self.max_len = item, max_len

    def encode(self, value):
        return [self.item.encode(v) for v in value]

    def decode(self, value, name: str) -> tuple:
        if not isinstance(value, list) or len(value) > self.max_len:
            raise WireError(MALFORMED, f"{name} must be a list of at most {self.max_len} items")
        return tuple(self.item.decode(v, f"{name}[{i}]") for i, v in enumerate(value))


KEY = Hex(32)          # an Ed25519 signing key (keys.signing_public_key of a cjdns private key)
HASH = Hex(32)
SIG = Hex(64)
ID16 = Hex(16)
ADDRESS = Hex(None)    # an opaque PKT chain address or script key, 1..64 bytes (the chain part defines it)
OUTPOINT = Name(r"[0-9a-f]{64}:[0-9]{1,10}")    # "<txid hex>:<output index>"


# -- records and messages -------------------------------------------------------------------------------------

class Record:
    """A frozen dataclass with a wire form: subclasses set TYPE and WIRE = {field: kind} in field order."""
    TAG: ClassVar[str] = "op"
    TYPE: ClassVar[str] = ""
    WIRE: ClassVar[dict] = {}

    def _header(self) -> dict:
        return {"op": self.TYPE}

    def body(self) -> dict:
        out = self._header()
        for name, kind in self.WIRE.items():
            out[name] = kind.encode(getattr(self, name))
        return out

    @classmethod
    def _check_header(cls, body: dict) -> None:
        if body.get("op") != cls.TYPE:
            raise WireError(MALFORMED, f"expected op {cls.TYPE!r}")

    @classmethod
    def from_body(cls, body) -> "Record":
        if not isinstance(body, dict):
            raise WireError(MALFORMED, f"{cls.TYPE} must be an object")
        cls._check_header(body)
        want = set(cls.WIRE) | {cls.TAG} | ({"v"} if cls.TAG == "type" else set())
        if set(body) != want:
            missing, extra = sorted(want - set(body)), sorted(set(body) - want)
            raise WireError(MALFORMED, f"{cls.TYPE}: missing fields {missing}, unknown fields {extra}")
        return cls(**{name: kind.decode(body[name], f"{cls.TYPE}.{name}") for name, kind in cls.WIRE.items()})


class Message(Record):
    """A top-level message. If SIGNER names a field, the message carries ``sig`` by that key."""
    TAG: ClassVar[str] = "type"
    SIGNER: ClassVar[str | None] = None
    MAX_BYTES: ClassVar[int] = MAX_MESSAGE_BYTES

    def _header(self) -> dict:
        return {"v": VERSION, "type": self.TYPE}

    @classmethod
    def _check_header(cls, body: dict) -> None:
        if body.get("v") != VERSION or isinstance(body.get("v"), bool):
            raise WireError(MALFORMED, f"unsupported version {body.get('v')!r}")
        if body.get("type") != cls.TYPE:
            raise WireError(MALFORMED, f"expected type {cls.TYPE!r}, got {body.get('type')!r}")

    def unsigned_body(self) -> dict:
        return {k: v for k, v in self.body().items() if k != "sig"}

    def signed_bytes(self) -> bytes:
        return DOMAIN + canonical(self.unsigned_body())

    def digest(self) -> bytes:
        return sha256(self.signed_bytes())

    def encode(self) -> bytes:
        return canonical(self.body())

    @classmethod
    def decode(cls, data):
        return cls.from_body(loads(data, cls.MAX_BYTES))

    def signed(self, private_key: bytes, random32: bytes | None = None):
        """A copy signed by ``private_key`` (a cjdns private key); the signer field is set to its signing key."""
        me = dataclasses.replace(self, **{self.SIGNER: keys.signing_public_key(private_key), "sig": bytes(64)})
        return dataclasses.replace(me, sig=keys.sign(private_key, me.signed_bytes(), random32))

    def signature_ok(self) -> bool:
        return keys.verify(getattr(self, self.SIGNER), self.signed_bytes(), self.sig)


def message_type(data, max_bytes: int = MAX_PROOF_BYTES) -> tuple[str, dict]:
    """(type, parsed object) of any top-level message, for dispatching."""
    body = loads(data, max_bytes)
    t = body.get("type")
    if not isinstance(t, str):
        raise WireError(MALFORMED, "no message type")
    return t, body


def decode_as(classes: dict, data) -> Message:
    """Decode ``data`` as whichever of ``classes`` ({type: class}) its type names."""
    t, body = message_type(data)
    cls = classes.get(t)
    if cls is None:
        raise WireError(MALFORMED, f"unexpected message type {t!r}")
    if len(data) > cls.MAX_BYTES:
        raise WireError(MALFORMED, f"{t} of {len(data)} bytes (limit {cls.MAX_BYTES})")
    return cls.from_body(body)
