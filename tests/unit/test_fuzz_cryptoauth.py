"""Fuzz: CryptoAuth sessions in every state, and the session manager, fed a real peer's packets (mutated),
handshakes the real peer could send with any temporary key (low-order points too), and random bytes.

Must hold for every input: only CryptoAuthError is raised; a rejected packet leaves the session exactly as it
was (but for the inactivity reset due at that time anyway); the rejected counter counts it; the session
manager keeps no session for a rejected Hello and changes none it has."""
import copy
import random
import struct

from hypothesis import strategies as st
from nacl import bindings as nacl

from node.cjdns.cryptoauth import CryptoAuthError, Session
from node.cjdns.keys import Identity
from node.cjdns.sessions import SessionManager

from fuzzing import harness
from test_hostile_cryptoauth import LOW_ORDER, handshake_packet, snapshot

ALICE = Identity.from_seed(b"alice", 0)
BOB = Identity.from_seed(b"bob", 0)


def transcript():
    """A full honest exchange between Alice (initiator) and Bob; the sessions as they were at each step."""
    a = Session(ALICE, BOB.public_key, now=0.0, rng=random.Random(1).randbytes)
    b = Session(BOB, None, initiator=False, now=0.0, rng=random.Random(2).randbytes)
    states, packets = {"b_init": copy.deepcopy(b)}, {}
    packets["hello"] = a.encrypt(b"hello", 0.0)
    packets["repeat_hello"] = a.encrypt(b"again", 0.0)
    states["a_sent_hello"] = copy.deepcopy(a)
    b.decrypt(packets["hello"], 0.0)
    states["b_received_hello"] = copy.deepcopy(b)
    packets["key"] = b.encrypt(b"key", 0.0)
    packets["repeat_key"] = b.encrypt(b"key again", 0.0)
    states["b_sent_key"] = copy.deepcopy(b)
    a.decrypt(packets["key"], 0.0)
    states["a_received_key"] = copy.deepcopy(a)
    packets["data_a1"] = a.encrypt(b"data 1", 0.0)
    packets["data_a2"] = a.encrypt(b"data 2", 0.0)
    b.decrypt(packets["data_a1"], 0.0)
    packets["data_b1"] = b.encrypt(b"back 1", 0.0)
    a.decrypt(packets["data_b1"], 0.0)
    states["a_established"], states["b_established"] = copy.deepcopy(a), copy.deepcopy(b)
    packets["data_a3"] = a.encrypt(b"data 3", 0.0)
    packets["data_b2"] = b.encrypt(b"back 2", 0.0)
    return states, packets


STATES, PACKETS = transcript()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 300), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 300)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("overwrite"), st.integers(0, 300), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("nonce"), st.integers(0, 2**32 - 1)),
)


def mutate(packet: bytes, mutations) -> bytes:
    p = bytearray(packet)
    for m in mutations:
        if m[0] == "flip" and p:
            p[m[1] % len(p)] ^= 1 << m[2]
        elif m[0] == "cut":
            del p[m[1] % (len(p) + 1):]
        elif m[0] == "append":
            p += m[1]
        elif m[0] == "overwrite" and p:
            i = m[1] % len(p)
            p[i:i + len(m[2])] = m[2]
        elif m[0] == "nonce" and len(p) >= 4:
            struct.pack_into(">I", p, 0, m[1])
    return bytes(p)


temp_key = st.one_of(st.sampled_from(LOW_ORDER + [bytes(32)]), st.binary(min_size=32, max_size=32))
packet = st.one_of(
    st.tuples(st.just("real"), st.sampled_from(sorted(PACKETS)), st.lists(mutation, max_size=3)),
    st.tuples(st.just("forged"), st.integers(0, 3), temp_key, st.binary(max_size=40)),
    st.tuples(st.just("random"), st.binary(max_size=200)),
)


def build(spec, target: Session) -> bytes:
    if spec[0] == "real":
        return mutate(PACKETS[spec[1]], spec[2])
    if spec[0] == "random":
        return spec[1]
    _, kind, temp, content = spec
    if kind < 2:      # a Hello from Alice, to Bob (the responder)
        return handshake_packet(kind, ALICE, nacl.crypto_box_beforenm(BOB.public_key, ALICE.private_key),
                                temp, content)
    # a Key from Bob, to Alice: boxed for her temporary key, if she has one
    her_temp = target.my_temp_pk or nacl.crypto_scalarmult_base(bytes(32))
    return handshake_packet(kind, BOB, nacl.crypto_box_beforenm(her_temp, BOB.private_key), temp, content)


@harness(st.tuples(st.sampled_from(sorted(STATES)), packet, st.floats(0, 100)), ci=300)
def test_fuzz_cryptoauth_session(case):
    """A rejected packet changes nothing in a session, whatever state it is in."""
    state, spec, now = case
    session = copy.deepcopy(STATES[state])
    expected = copy.deepcopy(session)
    expected.check_timeout(now)             # due at this time anyway, packet or not
    rejected = session.counters["rejected"]
    data = build(spec, session)
    try:
        session.decrypt(data, now)
    except CryptoAuthError:
        assert snapshot(session) == snapshot(expected)
        assert session.counters["rejected"] == rejected + 1
    else:
        assert session.counters["rejected"] == rejected


def manager_transcript():
    ma = SessionManager(ALICE, rng=random.Random(3).randbytes)
    mb = SessionManager(BOB, rng=random.Random(4).randbytes)
    wires = []
    for i in range(3):
        wires.append(ma.wrap(BOB.public_key, b"\x10\x00\x01\x00a%d" % i, 0.0))
        mb.unwrap(wires[-1], 0.0)
        wires.append(mb.wrap(ALICE.public_key, b"\x10\x00\x01\x00b%d" % i, 0.0))
        ma.unwrap(wires[-1], 0.0)
    wires.append(ma.wrap(BOB.public_key, b"\x10\x00\x01\x00later", 0.0))
    return mb, wires


MANAGER, WIRES = manager_transcript()


@harness(st.one_of(st.tuples(st.integers(0, len(WIRES) - 1), st.lists(mutation, max_size=3)),
                   st.tuples(st.just(-1), st.binary(max_size=200))), ci=300)
def test_fuzz_session_manager(case):
    """The session manager rejects with CryptoAuthError only; a rejection adds no session and changes none."""
    index, change = case
    mb = copy.deepcopy(MANAGER)
    data = change if index < 0 else mutate(WIRES[index], change)
    before = {k: (p.my_handle, p.her_handle, snapshot(p.session)) for k, p in mb.peers.items()}
    try:
        mb.unwrap(data, 1.0)
    except CryptoAuthError:
        after = {k: (p.my_handle, p.her_handle, snapshot(p.session)) for k, p in mb.peers.items()}
        assert after == before and set(mb.by_handle) == {p.my_handle for p in mb.peers.values()}
