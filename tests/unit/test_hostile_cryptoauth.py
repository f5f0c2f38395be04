"""Hostile CryptoAuth handshakes (issue 13 item 1): a peer with a real key pair sends a Hello or Key whose
temporary key is a low-order Curve25519 point. Either must be a counted rejection (CryptoAuthError) that leaves
the session exactly as it was, never a RuntimeError from NaCl or a half-changed session."""
import random
import struct

import pytest
from nacl import bindings as nacl

from node.tun_switch.node import UNANSWERED_RESET_S
from node.cjdns.cryptoauth import CryptoAuthError, Session, State
from node.cjdns.keys import Identity
from node.cjdns.sessions import SessionManager

from meshes import build_line

ALICE = Identity.from_seed(b"alice", 0)
BOB = Identity.from_seed(b"bob", 0)

# Curve25519 points of small order (and their non-canonical encodings): X25519 with any of them gives an
# all-zero shared secret, which libsodium refuses (crypto_box_beforenm / crypto_scalarmult fail).
LOW_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
)]


def snapshot(s: Session) -> dict:
    """Everything a packet could change in a session (its counters aside)."""
    return {"next_nonce": s.next_nonce, "established": s.is_established, "initiator": s.initiator,
            "her_public_key": s.her_public_key, "her_temp_pk": s.her_temp_pk, "my_temp_sk": s.my_temp_sk,
            "my_temp_pk": s.my_temp_pk, "data_secret": s.data_secret, "pw_hash": s.pw_hash,
            "replay": (s.replay.base, s.replay.bits), "last_activity": s.last_activity,
            "resets": s.counters["resets"]}


def handshake_packet(kind, sender, secret, temp_pk, content=b"x", nonce24=bytes(range(24))):
    """A handshake packet as ``sender`` would build it, carrying any temporary key."""
    return struct.pack(">I", kind) + bytes(12) + nonce24 + sender.public_key + \
        nacl.crypto_box_afternm(temp_pk + content, nonce24, secret)


@pytest.mark.parametrize("point", LOW_ORDER, ids=[p.hex()[:8] for p in LOW_ORDER])
def test_hello_with_a_low_order_temporary_key_is_a_counted_rejection(point):
    bob = Session(BOB, None, initiator=False, rng=random.Random(1).randbytes)
    before = snapshot(bob)
    hello = handshake_packet(0, ALICE, nacl.crypto_box_beforenm(BOB.public_key, ALICE.private_key), point)
    with pytest.raises(CryptoAuthError) as e:
        bob.decrypt(hello, now=0.0)
    assert e.value.reason == "bad_key"
    assert snapshot(bob) == before and bob.counters["rejected"] == 1


@pytest.mark.parametrize("point", LOW_ORDER, ids=[p.hex()[:8] for p in LOW_ORDER])
def test_hello_with_a_low_order_key_to_an_established_session_changes_nothing(point):
    a = Session(ALICE, BOB.public_key, rng=random.Random(2).randbytes)
    b = Session(BOB, None, initiator=False, rng=random.Random(3).randbytes)
    b.decrypt(a.encrypt(b"h"))
    a.decrypt(b.encrypt(b"k"))
    b.decrypt(a.encrypt(b"d"))
    assert b.state == State.ESTABLISHED
    before = snapshot(b)
    hello = handshake_packet(0, ALICE, nacl.crypto_box_beforenm(BOB.public_key, ALICE.private_key), point)
    with pytest.raises(CryptoAuthError):
        b.decrypt(hello)
    assert snapshot(b) == before
    assert a.decrypt(b.encrypt(b"still")) == b"still"          # the session still works


@pytest.mark.parametrize("point", LOW_ORDER, ids=[p.hex()[:8] for p in LOW_ORDER])
def test_key_with_a_low_order_temporary_key_changes_nothing(point):
    a = Session(ALICE, BOB.public_key, rng=random.Random(4).randbytes)
    a.encrypt(b"hello")
    assert a.state == State.SENT_HELLO
    before = snapshot(a)
    # Bob (who holds his private key) answers with a Key carrying a low-order temporary key
    secret = nacl.crypto_box_beforenm(a.my_temp_pk, BOB.private_key)
    with pytest.raises(CryptoAuthError) as e:
        a.decrypt(handshake_packet(2, BOB, secret, point))
    assert e.value.reason == "bad_key"
    assert snapshot(a) == before
    # and the real Key still completes the handshake
    b = Session(BOB, None, initiator=False, rng=random.Random(5).randbytes)
    a2 = Session(ALICE, BOB.public_key, rng=random.Random(4).randbytes)
    b.decrypt(a2.encrypt(b"hello"))
    assert a.decrypt(b.encrypt(b"key")) == b"key" and a.state == State.RECEIVED_KEY


def test_session_manager_counts_the_low_order_hello_and_keeps_no_session():
    mb = SessionManager(BOB)
    secret = nacl.crypto_box_beforenm(BOB.public_key, ALICE.private_key)
    with pytest.raises(CryptoAuthError):
        mb.unwrap(handshake_packet(0, ALICE, secret, LOW_ORDER[0], content=struct.pack(">I", 7)))
    assert mb.peers == {}


def test_handshake_without_a_handle_leaves_an_existing_session_alone():
    """The session manager needs 4 bytes of handle in a handshake's content: an authenticated Hello without
    them is rejected, and so it must not restart the session it was addressed to."""
    ma = SessionManager(ALICE, rng=random.Random(6).randbytes)
    mb = SessionManager(BOB, rng=random.Random(7).randbytes)
    for i in range(3):
        mb.unwrap(ma.wrap(BOB.public_key, b"ping %d" % i))
        ma.unwrap(mb.wrap(ALICE.public_key, b"pong %d" % i))
    session = mb.peers[ALICE.public_key].session
    assert session.established
    before = snapshot(session)
    carol = Session(ALICE, BOB.public_key, rng=random.Random(8).randbytes)     # Alice's key, a new Hello
    with pytest.raises(CryptoAuthError) as e:
        mb.unwrap(carol.encrypt(b"ab"))                                         # 2 bytes: no handle
    assert e.value.reason == "runt"
    assert snapshot(session) == before


def test_a_hello_replayed_from_an_earlier_session_costs_seconds_not_the_session():
    """Someone who saw a Hello of an earlier session (any switch on the path) replays it: it is a real Hello
    from the peer with a new temporary key, so the session restarts, as in cjdns (nothing in a Hello tells an
    old one from a new one). The session must come back on its own: the sender, hearing nothing, restarts it
    after UNANSWERED_RESET_S."""
    wire, loop, (n0, n1) = build_line(2)
    frames = []
    wire.taps.append(lambda link, packet: frames.append(packet))

    def exchange(tag):
        n0.send_ip6(ip6(n0, n1, tag))
        wire.pump()
        n1.send_ip6(ip6(n1, n0, tag + b" back"))
        wire.pump()

    exchange(b"first")
    old_hello = next(f for f in frames if f[12:16] == bytes(4))
    n0.sessions.peers[n1.identity.public_key].session.reset()        # n0 restarted its session since
    exchange(b"second")
    exchange(b"third")
    assert n1.delivered[-1].endswith(b"third")
    n1.receive_from_link(next(iter(n1.links.values())), old_hello)     # the replay
    wire.pump()
    delivered = len(n1.delivered)
    for i in range(int(UNANSWERED_RESET_S) + 3):
        loop.now += 1.0
        n0.send_ip6(ip6(n0, n1, b"later %d" % i))
        wire.pump()
    assert len(n1.delivered) > delivered and n1.delivered[-1].endswith(b"later %d" % i)
    exchange(b"fine again")
    assert n1.delivered[-1].endswith(b"fine again") and n0.delivered[-1].endswith(b"fine again back")


def ip6(src, dst, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), 17, 64, src.identity.ip6, dst.identity.ip6) + payload
