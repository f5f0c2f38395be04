"""Replicators (node/market/replicator.py): forged, replayed, malformed and out-of-order input is counted by reason,
never raised, and never changes what the replicator holds; gossip order does not matter."""
import dataclasses
import hashlib
import json
import os
import random
import sys

from hypothesis import given, settings, strategies as st

from node.market.evidence import Reveal
from node.market.issuer import Issuer
from node.market.replicator import MAX_ORPHANS, Replicator
from node.market.token_chain import LockRequest, make_update

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, POLICY, FakeChain, key  # noqa: E402

ISSUER, BUYER = key(ISSUER_SK), key(BUYER_SK)
X = b"p" * 32
H = hashlib.sha256(X).digest()


def world(tokens: int = 3):
    chain = FakeChain({})
    chain.mine(5)
    issuer = Issuer(ISSUER_SK, chain)
    updates = []
    for n in range(tokens):
        updates += issuer.issue_lease(f"t{n}", f"L{n}", "eth1", 1000, 0, 10 ** 9, 500)
    return chain, issuer, updates


def test_every_bad_update_is_counted_and_changes_nothing():
    chain, issuer, updates = world()
    rep = Replicator(chain, POLICY)
    for u in updates:
        assert rep.receive(u)
    held = rep.updates(ISSUER)
    top = issuer.updates[-1]
    bad = {
        "malformed": [b"", b"{", b"[1]", b'{"v":1,"type":"update"}', b"\xff" * 10,
                      top.encode().replace(b'"height":2', b'"height":2.0'),
                      top.encode().replace(b'"height":2', b'"height":true'),
                      top.encode()[:-1] + b',"height":2}',
                      top.encode().replace(b'"v":1', b'"v":2'),
                      top.encode()[:-1] + b',"extra":1}',
                      top.encode().replace(b'"ops":[', b'"ops":[{"op":"mint"},'),
                      b'{"v":1,"type":"swap_propose"}', b" " * (1 << 21)],
        "bad_signature": [dataclasses.replace(top, height=3).encode(),
                          make_update(BUYER_SK, 3, top.digest(), 5, chain.block_hash(5), []).encode()
                          .replace(key(BUYER_SK).hex().encode(), ISSUER.hex().encode())],
        "duplicate": [top.encode(), top.signed(ISSUER_SK).encode()],
        "unknown_pkt_block": [make_update(ISSUER_SK, 3, top.digest(), 5, b"\x01" * 32, []).encode(),
                              make_update(ISSUER_SK, 3, top.digest(), 99, b"\x01" * 32, []).encode()],
        "bad_prev": [make_update(ISSUER_SK, 3, b"\x07" * 32, 5, chain.block_hash(5), []).encode()],
        "unknown_issuer": [Reveal(key(BUYER_SK), b"l" * 16, X).signed(BUYER_SK).encode()],
        "unknown_lock": [Reveal(ISSUER, b"l" * 16, X).signed(BUYER_SK).encode()],
        "unknown_token": [LockRequest(ISSUER, "nope", b"", BUYER, H, 99, b"n" * 16).signed(ISSUER_SK).encode()],
    }
    for reason, datas in bad.items():
        for data in datas:
            assert rep.receive(data) == [], (reason, data[:80])
        assert rep.rejected[reason] == len(datas), (reason, rep.rejected)
    assert rep.updates(ISSUER) == held and not rep.discredited and not rep.subjects


def test_updates_out_of_order_wait_for_the_gap():
    chain, issuer, updates = world(6)
    rep = Replicator(chain, POLICY)
    for u in reversed(updates):
        rep.receive(u)
    assert rep.state(ISSUER) == issuer.state and rep.accepted["orphan"] == 5
    late = Replicator(chain, POLICY)
    for u in rep.updates(ISSUER, since=0):          # a late joiner fetches the chain
        late.receive(u.encode())
    assert late.state(ISSUER) == issuer.state


def test_orphans_are_bounded():
    chain, issuer, updates = world(1)
    rep = Replicator(chain, POLICY)
    rep.receive(updates[0])
    for h in range(2, MAX_ORPHANS + 3):
        rep.receive(make_update(ISSUER_SK, h, bytes(32), 5, chain.block_hash(5), []).encode())
    assert rep.rejected["orphan_overflow"] == 1 and len(rep.orphans[ISSUER]) == MAX_ORPHANS


def test_reveal_checks():
    chain, issuer, updates = world(1)
    rep = Replicator(chain, POLICY)
    for u in updates:
        rep.receive(u)
    r = LockRequest(ISSUER, "t0", b"", BUYER, H, 50, b"n" * 16).signed(ISSUER_SK)
    for u in issuer.receive(r.encode()):
        rep.receive(u)
    assert rep.receive(Reveal(ISSUER, r.lock_id, b"q" * 32).signed(BUYER_SK).encode()) == []
    good = Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK)
    assert rep.receive(good.encode()) == [good.encode()]        # no key: it witnesses nothing itself
    assert rep.receive(good.encode()) == []
    assert dict(rep.rejected) == {"bad_preimage": 1, "duplicate": 1}


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_gossip_order_does_not_matter(rnd: random.Random):
    chain, issuer, updates = world(2)
    r = LockRequest(ISSUER, "t0", b"", BUYER, H, 50, b"n" * 16).signed(ISSUER_SK)
    updates += issuer.receive(r.encode())
    reveal = Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK)
    updates += issuer.receive(reveal.encode())
    messages = updates + [r.encode(), reveal.encode()] * 2
    rnd.shuffle(messages)
    rep = Replicator(chain, POLICY)
    for m in messages * 2:                          # anything may come late, or twice
        rep.receive(m)
    assert rep.state(ISSUER) == issuer.state and not rep.discredited


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(),
                                           st.dictionaries(st.sampled_from(["v", "type", "issuer", "height", "ops",
                                                                            "sig", "lock", "subject"]),
                                                           st.one_of(st.integers(), st.text(max_size=5),
                                                                     st.sampled_from(["update", "reveal",
                                                                                      "attestation", "discredit"])))))
def test_fuzzed_input_never_raises(data):
    chain, _, updates = world(1)
    rep = Replicator(chain, POLICY, bytes([9]) * 32)
    rep.receive(updates[0])
    assert rep.receive(data) == []
    assert sum(rep.rejected.values()) == 1
