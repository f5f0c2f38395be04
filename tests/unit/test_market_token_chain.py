"""Issuer chains (node/market/token_chain.py) and the honest issuer (issuer.py): every operation, every rule."""
import dataclasses
import hashlib
import os
import sys

import pytest
from hypothesis import given, settings, strategies as st

from node.market import token_chain as tc
from node.market.evidence import Reveal
from node.market.issuer import Issuer
from node.market.replicator import Replicator
from node.market.token_chain import IssueLease, IssueRouter, Lock, LockRequest, Transfer, Unlock, make_update
from node.market.wire import WireError

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, POLICY, RESELLER_SK, FakeChain, key  # noqa: E402

ISSUER, BUYER, OTHER = key(ISSUER_SK), key(BUYER_SK), key(RESELLER_SK)
X = b"p" * 32
H = hashlib.sha256(X).digest()
LEASE = IssueLease("t1", "L1", "eth1", 1000, 100, 200, 500)


def request(owner_sk=ISSUER_SK, token="t1", to=BUYER, hash=H, timeout=50, nonce=b"n" * 16, issuer=ISSUER):
    return LockRequest(issuer, token, b"", to, hash, timeout, nonce).signed(owner_sk)


class Chain:
    """Builds a chain of updates by hand (any content, signed by the issuer) and replays it."""

    def __init__(self):
        self.updates = []
        self.state = tc.TokenState(ISSUER)

    def make(self, ops, pkt_height=10, height=None, prev=None):
        return make_update(ISSUER_SK, len(self.updates) if height is None else height,
                           self.state.head if prev is None else prev, pkt_height, bytes(32), ops)

    def add(self, ops, pkt_height=10):
        u = self.make(ops, pkt_height)
        self.state = self.state.apply(u)
        self.updates.append(u)
        return u

    def rule(self, ops, pkt_height=10, **kw):
        with pytest.raises(tc.RuleError) as e:
            self.state.apply(self.make(ops, pkt_height, **kw))
        return e.value.code


def test_issue_lock_transfer_moves_the_token():
    c = Chain()
    c.add([LEASE, IssueRouter("vr1", "vrA", 100, 200, 50)])
    assert c.state.tokens["t1"].owner == ISSUER and c.state.tokens["t1"].kind == "lease"
    assert c.state.tokens["vr1"].kind == "router" and c.state.tokens["vr1"].op.router == "vrA"
    r = request()
    c.add([Lock(r)])
    assert c.state.tokens["t1"].lock == r.lock_id
    assert c.state.locks[r.lock_id].state == tc.PENDING and c.state.locks[r.lock_id].to == BUYER
    c.add([Transfer(r.lock_id, X, BUYER)])
    assert c.state.tokens["t1"].owner == BUYER and c.state.tokens["t1"].lock is None
    assert c.state.locks[r.lock_id].state == tc.TRANSFERRED
    assert tc.replay(ISSUER, c.updates) == c.state


def test_unlock_after_the_timeout_returns_the_token():
    c = Chain()
    c.add([LEASE])
    r = request(timeout=30)
    c.add([Lock(r)], pkt_height=10)
    assert c.rule([Unlock(r.lock_id)], pkt_height=29) == tc.UNLOCK_BEFORE_TIMEOUT
    c.add([Unlock(r.lock_id)], pkt_height=30)
    assert c.state.tokens["t1"].owner == ISSUER and c.state.locks[r.lock_id].state == tc.UNLOCKED
    # the new owner may lock again with a fresh request, never with the used one
    assert c.rule([Lock(r)], pkt_height=30) == tc.REPLAYED_REQUEST
    c.add([Lock(request(nonce=b"m" * 16, timeout=60))], pkt_height=30)


def test_operations_inside_one_update_apply_in_order():
    c = Chain()
    r = request()
    c.add([LEASE, Lock(r), Transfer(r.lock_id, X, BUYER)])
    assert c.state.tokens["t1"].owner == BUYER


@pytest.mark.parametrize("ops,code", [
    ([LEASE, LEASE], tc.DUPLICATE_TOKEN),
    ([dataclasses.replace(LEASE, end=100)], tc.BAD_TERMS),
    ([dataclasses.replace(LEASE, kbps=0)], tc.BAD_TERMS),
    ([IssueRouter("vr", "vrA", 5, 5, 1)], tc.BAD_TERMS),
    ([Lock(request(token="nope"))], tc.UNKNOWN_TOKEN),
    ([LEASE, Lock(request(owner_sk=BUYER_SK))], tc.LOCK_WITHOUT_OWNER_SIGNATURE),
    ([LEASE, Lock(dataclasses.replace(request(), to=OTHER))], tc.LOCK_WITHOUT_OWNER_SIGNATURE),
    ([LEASE, Lock(request(issuer=OTHER))], tc.LOCK_WITHOUT_OWNER_SIGNATURE),
    ([LEASE, Lock(request()), Lock(request(nonce=b"m" * 16))], tc.TOKEN_LOCKED),
    ([LEASE, Lock(request(timeout=10))], tc.EXPIRED_REQUEST),
    ([Transfer(b"l" * 16, X, BUYER)], tc.UNKNOWN_LOCK),
    ([Unlock(b"l" * 16)], tc.UNKNOWN_LOCK),
    ([LEASE, Lock(request()), Transfer(request().lock_id, b"q" * 32, BUYER)], tc.BAD_TRANSFER),
    ([LEASE, Lock(request()), Transfer(request().lock_id, X, OTHER)], tc.BAD_TRANSFER),
    ([LEASE, Lock(request()), Transfer(request().lock_id, X, BUYER), Transfer(request().lock_id, X, BUYER)],
     tc.LOCK_NOT_PENDING),
])
def test_each_rule(ops, code):
    c = Chain()
    assert c.rule(ops) == code
    assert c.state == tc.TokenState(ISSUER)          # all or nothing


def test_chain_linkage_rules():
    c = Chain()
    c.add([LEASE], pkt_height=10)
    assert c.rule([], height=0) == tc.BAD_HEIGHT
    assert c.rule([], height=2) == tc.BAD_HEIGHT
    assert c.rule([], prev=b"x" * 32) == tc.BAD_PREV
    assert c.rule([], pkt_height=9) == tc.PKT_HEIGHT_DECREASED
    other = make_update(BUYER_SK, 1, c.state.head, 10, bytes(32), [])
    with pytest.raises(tc.RuleError, match=tc.WRONG_ISSUER):
        c.state.apply(other)


def test_update_wire_form_and_signature():
    c = Chain()
    r = request()
    u = c.add([LEASE, Lock(r)])
    again = tc.Update.decode(u.encode())
    assert again == u and again.signature_ok() and again.ops[1].request.signature_ok()
    resigned = u.signed(ISSUER_SK)
    assert resigned.sig != u.sig and resigned.digest() == u.digest()     # the digest ignores the signature
    for change in ({"height": 1}, {"pkt_height": 11}, {"ops": (LEASE,)}, {"prev": b"z" * 32}):
        assert not dataclasses.replace(u, **change).signature_ok(), change
    assert r.lock_id == r.digest()[:16]


class IssuerWorld:
    def __init__(self):
        self.chain = FakeChain({b"buyer": 10_000})
        self.chain.mine(5)
        self.issuer = Issuer(ISSUER_SK, self.chain)
        self.issuer.issue_lease("t1", "L1", "eth1", 1000, 100, 200, 500)


def test_issuer_answers_requests_and_counts_bad_ones():
    w = IssuerWorld()
    i = w.issuer
    r = request(timeout=20)
    assert i.receive(r.encode()) and i.state.tokens["t1"].lock == r.lock_id
    assert i.receive(r.encode()) == []                                   # replayed
    assert i.receive(request(owner_sk=BUYER_SK, nonce=b"b" * 16).encode()) == []
    assert i.receive(dataclasses.replace(r, timeout=21).encode()) == []  # tampered after signing
    assert i.receive(request(issuer=OTHER).encode()) == []
    assert i.receive(b"\x00garbage") == []
    assert i.receive(Reveal(ISSUER, r.lock_id, b"q" * 32).signed(BUYER_SK).encode()) == []
    assert i.receive(Reveal(ISSUER, b"l" * 16, X).signed(BUYER_SK).encode()) == []
    assert dict(i.rejected) == {"replayed_request": 1, "lock_without_owner_signature": 1, "bad_signature": 1,
                                "wrong_issuer": 1, "malformed": 1, "bad_preimage": 1, "lock_not_pending": 1}
    assert i.receive(Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK).encode())
    assert i.state.tokens["t1"].owner == BUYER
    assert all(u.signature_ok() for u in i.updates) and tc.replay(ISSUER, i.updates) == i.state


def test_issuer_unlocks_expired_locks_on_tick():
    w = IssuerWorld()
    r = request(timeout=w.chain.height() + 3)
    w.issuer.receive(r.encode())
    assert w.issuer.tick() == []
    w.chain.mine(3)
    assert w.issuer.tick() == []            # the tip is at the timeout, the anchor (confirmations deep) not yet
    w.chain.mine(1)
    assert w.issuer.tick() and w.issuer.state.locks[r.lock_id].state == tc.UNLOCKED
    assert w.issuer.updates[-1].pkt_height == w.chain.height() - w.issuer.confirmations + 1
    assert w.issuer.tick() == []


def test_an_issuer_anchors_its_updates_below_a_shallow_reorg():
    """Found with a reorg on a mesh: an update anchored on the tip names a block a reorg can orphan, and a replicator
    that reads the chain later (a restarted market, a new buyer) refuses it as unknown_pkt_block, and everything
    after it. Anchored confirmations deep, a fresh replicator after a one-block reorg takes the whole chain."""
    w = IssuerWorld()
    w.issuer.receive(request(timeout=w.chain.height() + 10).encode())
    w.chain.reorg(1)
    fresh = Replicator(w.chain, POLICY)
    assert all(fresh.receive(u.encode()) for u in w.issuer.updates), fresh.rejected


def test_issuer_transfers_when_the_preimage_is_deep_on_the_pkt_chain():
    w = IssuerWorld()
    r = request(timeout=w.chain.height() + 10)
    w.issuer.receive(r.encode())
    outpoint = w.chain.fund_htlc(b"buyer", 500, H, b"seller", b"buyer", w.chain.height() + 8)
    w.chain.mine()
    w.chain.claim(outpoint, X)
    w.chain.mine()
    assert w.issuer.tick() == []                     # one confirmation: a reorg could still undo the claim
    w.chain.mine()
    assert w.issuer.tick() and w.issuer.state.tokens["t1"].owner == BUYER


def test_issuer_waits_when_the_pkt_chain_went_back():
    w = IssuerWorld()
    w.issuer.issue_lease("t2", "L2", "eth1", 1000, 100, 200, 500)
    w.chain.rewind(1)                                # the tip vanished under the issuer's last update
    assert w.issuer.issue_lease("t3", "L3", "eth1", 1, 1, 2, 1) == []
    assert w.issuer.rejected["pkt_chain_behind"] == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["lock", "reveal", "bad_reveal", "mine", "tick", "junk"]),
                          st.integers(0, 2), st.integers(1, 6)), max_size=25))
def test_honest_issuer_chains_always_replay(script):
    """Whatever is asked of an honest issuer, its chain is valid and every replica of it agrees."""
    w = IssuerWorld()
    i = w.issuer
    i.issue_lease("t2", "L2", "eth2", 500, 100, 300, 200)
    i.issue_router("vr", "vrA", 100, 300, 50)
    owners = {"t1": ISSUER_SK, "t2": ISSUER_SK, "vr": ISSUER_SK}
    sks = [ISSUER_SK, BUYER_SK, RESELLER_SK]
    locks = {}
    for n, (what, who, k) in enumerate(script):
        token = ["t1", "t2", "vr"][who]
        if what == "lock":
            r = request(owner_sk=owners[token], token=token, to=key(sks[k % 3]), hash=hashlib.sha256(bytes([k]) * 32)
                        .digest(), timeout=w.chain.height() + k, nonce=n.to_bytes(16, "big"))
            if i.receive(r.encode()):
                locks[token] = (r, bytes([k]) * 32, sks[k % 3])
        elif what in ("reveal", "bad_reveal") and token in locks:
            r, x, to_sk = locks[token]
            if i.receive(Reveal(ISSUER, r.lock_id, x if what == "reveal" else b"w" * 32).signed(to_sk).encode()):
                owners[token] = to_sk
        elif what == "mine":
            w.chain.mine(k)
        elif what == "tick":
            i.tick()
        else:
            i.receive(os.urandom(k * 10))
    state = tc.replay(ISSUER, i.updates)
    assert state == i.state and all(u.signature_ok() for u in i.updates)
    for token, sk in owners.items():
        assert state.tokens[token].owner == key(sk)


def test_decode_rejects_with_wire_errors():
    with pytest.raises(WireError, match="malformed"):
        tc.Update.decode(b'{"v":1,"type":"update"}')
