"""The market wire form (node/market/wire.py): strict canonical JSON, domain-separated cjdns signatures."""
import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from node.market import wire
from node.market.evidence import Reveal
from node.market.token_chain import LockRequest
from node.cjdns import keys

SK = bytes(range(1, 33))
REVEAL = Reveal(b"\x01" * 32, b"\x02" * 16, b"\x03" * 32).signed(SK, random32=bytes(32))


def test_encoding_is_canonical_and_round_trips():
    data = REVEAL.encode()
    assert data == wire.canonical(json.loads(data)) and b" " not in data
    assert Reveal.decode(data) == REVEAL and REVEAL.signature_ok()
    assert REVEAL.sender == keys.signing_public_key(SK)
    assert REVEAL.signed_bytes() == wire.DOMAIN + wire.canonical({k: v for k, v in json.loads(data).items()
                                                                  if k != "sig"})


def test_the_signature_covers_the_type():
    """A reveal's signature is no good for another message type with the same fields."""
    body = json.loads(REVEAL.encode())
    body["type"] = "reveal2"
    assert wire.DOMAIN + wire.canonical({k: v for k, v in body.items() if k != "sig"}) != REVEAL.signed_bytes()
    assert not keys.verify(REVEAL.sender, wire.DOMAIN + wire.canonical({k: v for k, v in body.items()
                                                                        if k != "sig"}), REVEAL.sig)


def test_digest_ignores_the_randomized_signature():
    again = REVEAL.signed(SK)
    assert again.sig != REVEAL.sig and again.digest() == REVEAL.digest()


@pytest.mark.parametrize("change,what", [
    (lambda b: b.update(lock="00" * 17) or b, "16 bytes"),              # wrong length
    (lambda b: b.update(lock="AA" * 16) or b, "lowercase hex"),
    (lambda b: b.update(v=True) or b, "version"),
    (lambda b: b.update(v=2) or b, "version"),
    (lambda b: b.update(extra=1) or b, "unknown fields"),
    (lambda b: b.pop("preimage") and b, "missing fields"),
    (lambda b: b.update(type="update") or b, "expected type"),
])
def test_decode_is_strict(change, what):
    body = change(json.loads(REVEAL.encode()))
    with pytest.raises(wire.WireError, match=what) as e:
        Reveal.decode(json.dumps(body).encode())
    assert e.value.code == wire.MALFORMED


@pytest.mark.parametrize("data,what", [
    (b'{"a":1,"a":2}', "duplicate key"),
    (b'{"a":1.0}', "non-integer"),
    (b'{"a":NaN}', "non-integer"),
    (b'[]', "object"),
    (b"\xff", "not JSON"),
    (b"{" * 100000, "not JSON"),
    ("x" * (wire.MAX_MESSAGE_BYTES + 1), "limit"),
])
def test_loads_is_strict(data, what):
    with pytest.raises(wire.WireError, match=what):
        wire.loads(data)


def test_integers_and_names_are_bounded():
    r = LockRequest(b"\x01" * 32, "t1", b"", b"\x02" * 32, b"\x03" * 32, 5, b"\x04" * 16).signed(SK)
    body = json.loads(r.encode())
    for field, value in [("timeout", -1), ("timeout", 2 ** 63), ("timeout", True), ("token", "a b"),
                         ("token", "x" * 65), ("token", "")]:
        with pytest.raises(wire.WireError):
            LockRequest.decode(json.dumps({**body, field: value}).encode())


@given(st.binary(max_size=100))
def test_garbage_is_always_a_wire_error(data):
    with pytest.raises(wire.WireError):
        Reveal.decode(data)


def test_decode_as_dispatches_on_type():
    assert wire.decode_as({"reveal": Reveal}, REVEAL.encode()) == REVEAL
    with pytest.raises(wire.WireError, match="unexpected message type"):
        wire.decode_as({"lock_request": LockRequest}, REVEAL.encode())
    assert dataclasses.replace(REVEAL, preimage=b"\x04" * 32).signature_ok() is False
