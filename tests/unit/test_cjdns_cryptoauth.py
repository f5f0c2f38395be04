"""cjdns CryptoAuth sessions and the session manager (pkt-reference.md §3)."""
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st
from nacl import bindings as nacl

from node.cjdns import cryptoauth as CA
from node.cjdns.cryptoauth import CryptoAuthError, Session, State
from node.cjdns.keys import Identity
from node.cjdns.sessions import (CONTENT_IPTUN, SessionManager, SessionManagerError,
                                             pack_data_header, parse_data_header)

ALICE = Identity.from_seed(b"alice", 0)
BOB = Identity.from_seed(b"bob", 0)


def rng_of(seed):
    r = random.Random(seed)
    return r.randbytes


def pair(**kw):
    a = Session(ALICE, BOB.public_key, initiator=True, rng=rng_of(1), **kw.get("a", {}))
    b = Session(BOB, None, initiator=False, rng=rng_of(2), **kw.get("b", {}))
    return a, b


def handshake(a, b):
    assert b.decrypt(a.encrypt(b"hello")) == b"hello"
    assert a.decrypt(b.encrypt(b"key")) == b"key"
    assert b.decrypt(a.encrypt(b"first data")) == b"first data"
    assert a.decrypt(b.encrypt(b"reply")) == b"reply"


def test_auth_lookup_vector():
    assert CA.hash_password(b"password", 1)[1].hex() == "641c99f7719f57"
    pw_hash, lookup = CA.hash_password("password", 2, login="user")
    assert len(pw_hash) == 32 and len(lookup) == 7


def test_full_handshake_states_and_layout():
    a, b = pair()
    assert a.state == State.INIT and b.state == State.INIT
    hello = a.encrypt(b"hi")
    assert len(hello) == 120 + 2
    assert struct.unpack(">I", hello[:4])[0] == CA.HELLO
    assert hello[40:72] == ALICE.public_key
    assert a.state == State.SENT_HELLO
    assert b.decrypt(hello) == b"hi"
    assert b.state == State.RECEIVED_HELLO and b.her_public_key == ALICE.public_key
    key = b.encrypt(b"k")
    assert struct.unpack(">I", key[:4])[0] == CA.KEY and b.state == State.SENT_KEY
    assert a.decrypt(key) == b"k"
    assert a.state == State.RECEIVED_KEY
    data = a.encrypt(b"payload")
    assert struct.unpack(">I", data[:4])[0] == 4 and len(data) == 20 + 7
    assert b.decrypt(data) == b"payload"
    assert b.established and b.state == State.ESTABLISHED
    back = b.encrypt(b"back")
    assert struct.unpack(">I", back[:4])[0] == 4
    assert a.decrypt(back) == b"back" and a.established


def test_data_both_ways_many_messages():
    a, b = pair()
    handshake(a, b)
    for i in range(50):
        assert b.decrypt(a.encrypt(b"a%d" % i)) == b"a%d" % i
        assert a.decrypt(b.encrypt(b"b%d" % i)) == b"b%d" % i


def test_handshake_started_by_the_other_side():
    a = Session(ALICE, BOB.public_key, initiator=False, rng=rng_of(3))
    b = Session(BOB, ALICE.public_key, initiator=True, rng=rng_of(4))
    handshake(b, a)


def test_data_nonce_layout_matches_reference_sketch():
    a, b = pair()
    handshake(a, b)
    pkt = a.encrypt(b"x")
    n = struct.unpack(">I", pkt[:4])[0]
    nonce24 = bytes(4) + struct.pack("<I", n) + bytes(16)   # initiator sending: offset 4
    secret = nacl.crypto_box_beforenm(b.my_temp_pk, a.my_temp_sk)
    assert nacl.crypto_box_open_afternm(pkt[4:], nonce24, secret) == b"x"


def test_repeat_hello_and_repeat_key():
    a, b = pair()
    h1 = a.encrypt(b"1")
    h2 = a.encrypt(b"2")          # no answer yet: RepeatHello with the same temporary key
    assert struct.unpack(">I", h2[:4])[0] == CA.REPEAT_HELLO
    assert b.decrypt(h2) == b"2"
    assert b.decrypt(h1) == b"1"  # same temporary key, reordered: delivered while b has seen no data (cjdns)
    k1 = b.encrypt(b"k1")
    k2 = b.encrypt(b"k2")         # the responder repeats Key until data arrives
    assert struct.unpack(">I", k2[:4])[0] == CA.REPEAT_KEY
    assert a.decrypt(k2) == b"k2" and a.decrypt(k1) == b"k1"
    assert b.decrypt(a.encrypt(b"d")) == b"d"
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(h1)             # once data has flowed, the old Hello is a stale duplicate
    assert e.value.reason == "duplicate_hello"


def test_replay_rejected_and_reorder_accepted():
    a, b = pair()
    handshake(a, b)
    pkts = [a.encrypt(b"%d" % i) for i in range(40)]
    order = list(range(40))
    random.Random(0).shuffle(order)
    for i in order:
        assert b.decrypt(pkts[i]) == b"%d" % i
    for i in (0, 17, 39):
        with pytest.raises(CryptoAuthError) as e:
            b.decrypt(pkts[i])
        assert e.value.reason == "replay"


def test_too_old_nonce_rejected():
    a, b = pair()
    handshake(a, b)
    old = a.encrypt(b"old")
    for _ in range(100):
        b.decrypt(a.encrypt(b"new"))
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(old)
    assert e.value.reason == "replay"


def test_replay_protector_window():
    rp = CA.ReplayProtector()
    assert rp.accept(4) and not rp.accept(4)
    assert rp.accept(60) and rp.accept(10) and not rp.check(10)
    assert rp.accept(70)            # beyond the window: it slides so that 70 sits at offset 47
    assert not rp.check(22) and rp.check(23) and not rp.check(60)
    assert rp.accept(1000)
    assert not rp.check(900) and rp.check(999)


def test_tampered_packets_rejected_without_state_change():
    a, b = pair()
    hello = bytearray(a.encrypt(b"hello"))
    hello[-1] ^= 1
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(bytes(hello))
    assert e.value.reason == "decrypt_failed" and b.state == State.INIT
    hello[-1] ^= 1
    b.decrypt(bytes(hello))
    key = bytearray(b.encrypt(b"key"))
    key[100] ^= 0x40
    with pytest.raises(CryptoAuthError):
        a.decrypt(bytes(key))
    assert a.state == State.SENT_HELLO
    key[100] ^= 0x40
    a.decrypt(bytes(key))
    data = bytearray(a.encrypt(b"data"))
    data[10] ^= 1
    with pytest.raises(CryptoAuthError):
        b.decrypt(bytes(data))
    assert not b.established
    data[10] ^= 1
    assert b.decrypt(bytes(data)) == b"data"   # the nonce was not burnt by the forgery


def test_crossing_hellos_resolved_by_key_order():
    a = Session(ALICE, BOB.public_key, rng=rng_of(5))
    b = Session(BOB, ALICE.public_key, rng=rng_of(6))
    ha, hb = a.encrypt(b"from a"), b.encrypt(b"from b")
    low, high = (a, b) if ALICE.public_key < BOB.public_key else (b, a)
    h_low, h_high = (ha, hb) if low is a else (hb, ha)
    with pytest.raises(CryptoAuthError) as e:
        low.decrypt(h_high)              # the lower key keeps its own Hello
    assert e.value.reason == "crossing_hello"
    assert high.decrypt(h_low) in (b"from a", b"from b")   # the higher key gives in and answers
    assert high.state == State.RECEIVED_HELLO and not high.initiator
    handshake_rest = high.encrypt(b"key")
    assert low.decrypt(handshake_rest) == b"key"
    assert high.decrypt(low.encrypt(b"d1")) == b"d1"
    assert low.decrypt(high.encrypt(b"d2")) == b"d2"


def test_reset_after_inactivity():
    a = Session(ALICE, BOB.public_key, rng=rng_of(7), now=0)
    b = Session(BOB, None, initiator=False, rng=rng_of(8), now=0)
    b.decrypt(a.encrypt(b"h", now=0), now=0)
    a.decrypt(b.encrypt(b"k", now=1), now=1)
    b.decrypt(a.encrypt(b"d", now=2), now=2)
    a.decrypt(b.encrypt(b"d", now=3), now=3)
    late = a.encrypt(b"still ok", now=50)
    assert b.decrypt(late, now=50) == b"still ok"
    assert b.established
    assert b.check_timeout(now=111)        # 61 s after the last authenticated packet
    assert b.state == State.INIT
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(a.encrypt(b"x"), now=111)
    assert e.value.reason == "no_session"
    # the initiator resets too and its next packet is a fresh Hello, which the peer accepts
    assert a.check_timeout(now=200)
    hello = a.encrypt(b"again", now=200)
    assert struct.unpack(">I", hello[:4])[0] == CA.HELLO
    assert b.decrypt(hello, now=200) == b"again"


def test_setup_timeout_is_10s_and_never_in_sent_hello():
    a, b = pair()
    a.encrypt(b"h", now=0)
    assert not a.check_timeout(now=1000)           # SENT_HELLO never resets
    b2 = Session(BOB, None, initiator=False, rng=rng_of(9), now=0)
    b2.decrypt(Session(ALICE, BOB.public_key, rng=rng_of(10)).encrypt(b"h"), now=0)
    assert not b2.check_timeout(now=9)
    assert b2.check_timeout(now=11) and b2.state == State.INIT


def test_password_auth():
    a, b = pair(a={"password": "secret"}, b={"password": "secret", "require_auth": True})
    hello = a.encrypt(b"h")
    assert hello[4] == CA.AUTH_PASSWORD and hello[5:12] == CA.hash_password(b"secret")[1]
    handshake_rest = b.decrypt(hello)
    assert handshake_rest == b"h"
    assert a.decrypt(b.encrypt(b"k")) == b"k"
    assert b.decrypt(a.encrypt(b"d")) == b"d"
    # wrong password, and no password where one is required
    a2, b2 = pair(a={"password": "wrong"}, b={"password": "secret"})
    with pytest.raises(CryptoAuthError) as e:
        b2.decrypt(a2.encrypt(b"h"))
    assert e.value.reason == "unknown_auth"
    a3, b3 = pair(b={"password": "secret", "require_auth": True})
    with pytest.raises(CryptoAuthError) as e:
        b3.decrypt(a3.encrypt(b"h"))
    assert e.value.reason == "auth_required"


def test_login_auth():
    a, b = pair(a={"password": "pw", "login": "alice"}, b={"password": "pw", "login": "alice"})
    hello = a.encrypt(b"h")
    assert hello[4] == CA.AUTH_LOGIN
    assert b.decrypt(hello) == b"h"
    assert a.decrypt(b.encrypt(b"k")) == b"k"


def test_wiseguy_zero_temp_key_and_wrong_key():
    b = Session(BOB, ALICE.public_key, initiator=False)
    nonce24 = bytes(range(24))
    secret = nacl.crypto_box_beforenm(BOB.public_key, ALICE.private_key)
    boxed = nacl.crypto_box_afternm(bytes(32) + b"x", nonce24, secret)
    evil = struct.pack(">I", 0) + bytes(12) + nonce24 + ALICE.public_key + boxed
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(evil)
    assert e.value.reason == "wiseguy"
    carol = Identity.from_seed(b"carol", 0)
    c = Session(carol, BOB.public_key)
    with pytest.raises(CryptoAuthError) as e:
        b.decrypt(c.encrypt(b"h"))
    assert e.value.reason == "wrong_key"


def test_unexpected_key_and_data_before_handshake():
    a, b = pair()
    b.decrypt(a.encrypt(b"h"))
    key = b.encrypt(b"k")
    fresh = Session(ALICE, BOB.public_key)
    with pytest.raises(CryptoAuthError) as e:
        fresh.decrypt(key)
    assert e.value.reason == "unexpected_key"
    with pytest.raises(CryptoAuthError) as e:
        fresh.decrypt(struct.pack(">I", 9) + bytes(30))
    assert e.value.reason == "no_session"


# -- session manager --------------------------------------------------------------------------------------

def test_session_manager_handles_and_data_headers():
    ma = SessionManager(ALICE, rng=rng_of(11))
    mb = SessionManager(BOB, rng=rng_of(12))
    now = 0.0
    msgs = [pack_data_header(CONTENT_IPTUN) + b"packet %d" % i for i in range(6)]
    # alternate directions through the whole handshake and into data
    for i, msg in enumerate(msgs):
        if i % 2 == 0:
            wire = ma.wrap(BOB.public_key, msg, now)
            sender, content = mb.unwrap(wire, now)
            assert sender == ALICE.public_key
        else:
            wire = mb.wrap(ALICE.public_key, msg, now)
            sender, content = ma.unwrap(wire, now)
            assert sender == BOB.public_key
        assert content == msg
        version, ctype, payload = parse_data_header(content)
        assert (version, ctype, payload) == (1, CONTENT_IPTUN, b"packet %d" % i)
    # established: data packets start with the receiver's handle
    wire = ma.wrap(BOB.public_key, b"xxxx", now)
    assert struct.unpack(">I", wire[:4])[0] == mb.peers[ALICE.public_key].my_handle
    assert struct.unpack(">I", wire[4:8])[0] >= 4


def test_session_manager_rejections():
    mb = SessionManager(BOB)
    for bad, reason in [(b"\xff\xff\xff\xff" + bytes(20), "control"), (b"\x00\x00", "runt"),
                        (struct.pack(">I", 12345) + bytes(30), "unknown_handle")]:
        with pytest.raises(SessionManagerError) as e:
            mb.unwrap(bad)
        assert e.value.reason == reason
    with pytest.raises(CryptoAuthError):
        mb.unwrap(bytes(4) + bytes(200))
    assert mb.peers == {}        # a rejected Hello leaves no session behind


# -- fuzzing -------------------------------------------------------------------------------------------

def _states():
    a, b = pair()
    sessions = [Session(BOB, None, initiator=False), a, b]
    b.decrypt(a.encrypt(b"h"))
    a2, b2 = pair()
    handshake(a2, b2)
    return sessions + [a2, b2]


def _fuzz(sessions, manager, data):
    for s in sessions:
        try:
            s.decrypt(data)
        except CryptoAuthError:
            pass
    try:
        manager.unwrap(data)
    except CryptoAuthError:
        pass


def _random_packet(rng):
    kind = rng.random()
    if kind < 0.4:
        head = struct.pack(">I", rng.randrange(0, 4))
        return head + rng.randbytes(rng.randrange(0, 200))
    if kind < 0.5:
        return struct.pack(">I", 0) + bytes(12) + rng.randbytes(24) + ALICE.public_key + rng.randbytes(60)
    return rng.randbytes(rng.randrange(0, 100))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decrypt_random_bytes_only_raises_cryptoauth_error(data):
    _fuzz(FUZZ_SESSIONS, FUZZ_MANAGER, data)


FUZZ_SESSIONS = _states()
FUZZ_MANAGER = SessionManager(BOB)


def test_decrypt_structured_random_packets():
    rng = random.Random(1)
    for _ in range(300):
        _fuzz(FUZZ_SESSIONS, FUZZ_MANAGER, _random_packet(rng))


@pytest.mark.slow
def test_decrypt_fuzz_100k():
    rng = random.Random(2)
    sessions = _states()
    manager = SessionManager(BOB)
    for _ in range(100_000):
        _fuzz(sessions, manager, _random_packet(rng))
