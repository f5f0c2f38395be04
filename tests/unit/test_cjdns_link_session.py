"""Peer-link sessions (node/cjdns/link_session.py): cjdns' outer CryptoAuth session around every frame on a link."""
import struct

import pytest

from node.cjdns import control, keys, labels
from node.cjdns.cryptoauth import FIRST_DATA_NONCE, HANDSHAKE_SIZE, HELLO, KEY, CryptoAuthError
from node.cjdns.link_session import LinkSession
from node.cjdns.switch_header import SwitchHeader

A, B, C = (keys.Identity.from_seed(b"link-session", i) for i in range(3))


def ping_frame(data=b"ping"):
    """A link ping as it reaches the peer's router: one-hop label already consumed (last byte 1)."""
    return SwitchHeader(label=1 | labels.bit_reverse64(0x13)).pack() + control.frame(control.Ping(22, data))


def transit_frame(payload=b"through the switch"):
    """A frame the peer's switch would forward on (the label names another interface)."""
    return SwitchHeader(label=0x15).pack() + struct.pack(">I", 0x12345678) + payload


def established_pair(now=10.0):
    a, b = LinkSession(A, B.public_key, now), LinkSession(B, A.public_key, now)
    assert b.open(a.seal(ping_frame(b"1"), now), now) == ping_frame(b"1")          # Hello
    assert a.open(b.seal(ping_frame(b"2"), now), now) == ping_frame(b"2")          # Key
    assert b.open(a.seal(transit_frame(), now), now) == transit_frame()            # first data: b is up
    assert a.open(b.seal(transit_frame(), now), now) == transit_frame()            # a is up
    assert a.established and b.established
    return a, b


def nonce(packet):
    return struct.unpack_from(">I", packet)[0]


def test_handshake_then_data_both_ways():
    a, b = LinkSession(A, B.public_key, 1.0), LinkSession(B, A.public_key, 1.0)
    hello = a.seal(ping_frame(), 1.0)
    assert nonce(hello) == HELLO and hello[40:72] == A.public_key and len(hello) == HANDSHAKE_SIZE + len(ping_frame())
    assert b.open(hello, 1.0) == ping_frame()
    key = b.seal(ping_frame(b"pong"), 1.0)
    assert nonce(key) == KEY and key[40:72] == B.public_key
    assert a.open(key, 1.0) == ping_frame(b"pong")
    data = a.seal(transit_frame(), 1.0)
    assert nonce(data) == FIRST_DATA_NONCE and len(data) == 4 + 16 + len(transit_frame())
    assert b.open(data, 1.0) == transit_frame() and b.established and b.state == "ESTABLISHED"
    assert a.open(b.seal(transit_frame(b"back"), 1.0), 1.0) == transit_frame(b"back") and a.established


def test_nothing_of_the_frame_is_in_the_clear():
    a, b = established_pair()
    secret = b"plain IPv6 payload bytes 0123456789" * 4
    for frame in (transit_frame(secret), ping_frame(secret)):
        packet = a.seal(frame, 10.0)
        assert secret[:16] not in packet and frame[:12] not in packet
        assert control.frame(control.Ping(22, b""))[:8] not in packet


def test_before_the_session_is_up_only_frames_for_our_router_pass():
    a, b = LinkSession(A, B.public_key, 1.0), LinkSession(B, A.public_key, 1.0)
    with pytest.raises(CryptoAuthError) as e:
        b.open(a.seal(transit_frame(), 1.0), 1.0)           # a Hello carrying a frame for the switch
    assert e.value.reason == "not_established"
    # the Hello itself was taken: b answers with a Key, and the handshake goes on
    assert nonce(b.seal(ping_frame(), 1.0)) == KEY
    assert a.open(b.seal(ping_frame(), 1.0), 1.0) == ping_frame()
    with pytest.raises(CryptoAuthError) as e:
        a.open(b.seal(transit_frame(), 1.0), 1.0)           # a RepeatKey with a transit frame: a not up yet
    assert e.value.reason == "not_established"


def test_a_handshake_from_another_key_is_refused():
    b = LinkSession(B, A.public_key, 1.0)
    impostor = LinkSession(C, B.public_key, 1.0)
    with pytest.raises(CryptoAuthError) as e:
        b.open(impostor.seal(ping_frame(), 1.0), 1.0)
    assert e.value.reason == "wrong_key"


@pytest.mark.parametrize("tamper, reason", [(lambda p: p[:-1] + bytes([p[-1] ^ 1]), "decrypt_failed"),
                                            (lambda p: p[:10], "runt")])
def test_tampered_or_runt_data_is_refused(tamper, reason):
    a, b = established_pair()
    with pytest.raises(CryptoAuthError) as e:
        b.open(tamper(a.seal(transit_frame(), 10.0)), 10.0)
    assert e.value.reason == reason
    assert b.open(a.seal(transit_frame(b"next"), 10.0), 10.0) == transit_frame(b"next")   # nothing changed


def test_a_duplicate_is_a_replay_but_reordering_within_the_window_passes():
    a, b = established_pair()
    packets = [a.seal(transit_frame(bytes([i])), 10.0) for i in range(10)]
    for p in reversed(packets):
        assert b.open(p, 10.0)
    with pytest.raises(CryptoAuthError) as e:
        b.open(packets[3], 10.0)
    assert e.value.reason == "replay"


def test_a_restarted_peer_is_taken_back_by_its_new_hello():
    a, b = established_pair()
    b2 = LinkSession(B, A.public_key, 20.0)                  # b's agent restarted: a fresh session
    with pytest.raises(CryptoAuthError):
        b2.open(a.seal(transit_frame(), 20.0), 20.0)         # a's data means nothing to b2
    assert a.open(b2.seal(ping_frame(), 20.0), 20.0) == ping_frame()      # b2's Hello restarts a's session
    assert not a.established
    assert b2.open(a.seal(ping_frame(b"pong"), 20.0), 20.0) == ping_frame(b"pong")   # a's Key
    assert a.open(b2.seal(transit_frame(), 20.0), 20.0) == transit_frame()
    assert b2.open(a.seal(transit_frame(), 20.0), 20.0) == transit_frame()
    assert a.established and b2.established


def test_crossing_hellos_settle_on_one_session():
    a, b = LinkSession(A, B.public_key, 1.0), LinkSession(B, A.public_key, 1.0)
    hello_a, hello_b = a.seal(ping_frame(b"a"), 1.0), b.seal(ping_frame(b"b"), 1.0)
    taken = []
    for receiver, hello in ((b, hello_a), (a, hello_b)):
        try:
            taken.append(receiver.open(hello, 1.0))
        except CryptoAuthError as e:
            assert e.reason == "crossing_hello"
    assert len(taken) == 1                                    # the lower key gives in and answers
    for _ in range(3):                                        # link pings both ways bring both up
        for x, y in ((a, b), (b, a)):
            try:
                y.open(x.seal(ping_frame(), 1.0), 1.0)
            except CryptoAuthError:
                pass
    assert a.established and b.established


def test_an_idle_session_starts_over_with_a_hello():
    a, b = established_pair(now=10.0)
    assert nonce(a.seal(ping_frame(), 100.0)) == HELLO        # 60 s without anything from b
    assert b.open(a.seal(ping_frame(), 100.0), 100.0) == ping_frame()
