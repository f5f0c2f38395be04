"""The five TokenStrike issuer faults (node/market/faults.py): each is detected by replicators, its proof verifies
on a fresh node that has nothing but the proof, and fails when tampered with; honest issuers are never framed."""
import dataclasses
import hashlib
import json
import os
import sys

import pytest
from hypothesis import given, settings, strategies as st

from node.market import faults
from node.market.evidence import ACT_WITHIN, Attestation, Policy, Reveal
from node.market.issuer import Issuer
from node.market.replicator import Replicator
from node.market.token_chain import Lock, LockRequest, Transfer, Unlock, make_update

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, POLICY, REPLICATOR_SKS, RESELLER_SK, FakeChain, key  # noqa: E402

ISSUER, BUYER = key(ISSUER_SK), key(BUYER_SK)
X = b"p" * 32
H = hashlib.sha256(X).digest()


class Net:
    """An issuer, three replicators (quorum 2) and a PKT chain; the issuer's key can also sign anything."""

    def __init__(self):
        self.chain = FakeChain({})
        self.chain.mine(5)
        self.issuer = Issuer(ISSUER_SK, self.chain)
        self.reps = [Replicator(self.chain, POLICY, sk) for sk in REPLICATOR_SKS]
        self.send(self.issuer.issue_lease("t1", "L1", "eth1", 1000, 0, 10 ** 9, 500))

    def send(self, datas, to_issuer: bool = False):
        queue, seen = list(datas), set()
        while queue:
            data = queue.pop(0)
            for node in self.reps + ([self.issuer] if to_issuer else []):
                if (id(node), data) not in seen:
                    seen.add((id(node), data))
                    queue += node.receive(data)

    def forge(self, ops, height=None, prev=None):
        """An update the issuer signs on top of the replicated chain (it may break any rule)."""
        held = self.reps[0].updates(ISSUER)
        h = self.chain.height()
        return make_update(ISSUER_SK, len(held) if height is None else height,
                           (held[-1].digest() if held else bytes(32)) if prev is None else prev, h,
                           self.chain.block_hash(h), ops).encode()

    def tick(self, blocks=1):
        for _ in range(blocks):
            self.chain.mine()
            for r in self.reps:
                self.send(r.tick())

    def lock(self, owner_sk=ISSUER_SK, to=BUYER, timeout=None):
        r = LockRequest(ISSUER, "t1", b"", to, H, timeout or self.chain.height() + 5, b"n" * 16).signed(owner_sk)
        self.send([r.encode()], to_issuer=True)
        return r

    def proof(self):
        assert all(r.is_discredited(ISSUER) for r in self.reps), [r.rejected for r in self.reps]
        return self.reps[0].discredited[ISSUER]


def fresh_accepts(proof, policy=POLICY) -> Replicator:
    node = Replicator(FakeChain({}), policy)
    out = node.receive(proof.encode() if hasattr(proof, "encode") else proof)
    return node if out and node.is_discredited(ISSUER) else None


def rejection(proof, policy=POLICY) -> str:
    node = Replicator(FakeChain({}), policy)
    assert node.receive(proof.encode()) == [] and not node.is_discredited(ISSUER)
    (reason,) = node.rejected
    return reason


# -- fault 1 --------------------------------------------------------------------------------------------------

def test_fault1_two_updates_at_one_height():
    n = Net()
    a, b = n.forge([]), n.forge([Unlock(b"l" * 16)])
    n.send([a])
    n.send([b])
    p = n.proof()
    assert p.fault == faults.DOUBLE_UPDATE and {u.height for u in p.updates} == {1}
    assert fresh_accepts(p)
    assert rejection(dataclasses.replace(p, updates=(p.updates[0], p.updates[0]))) == "proof_not_a_fault"
    other = make_update(ISSUER_SK, 2, bytes(32), 5, bytes(32), [])
    assert rejection(dataclasses.replace(p, updates=(p.updates[0], other))) == "proof_not_a_fault"
    tampered = dataclasses.replace(p.updates[1], pkt_height=p.updates[1].pkt_height + 1)
    assert rejection(dataclasses.replace(p, updates=(p.updates[0], tampered))) == "proof_bad_update_signature"
    forged_by_other = make_update(RESELLER_SK, 1, bytes(32), 5, bytes(32), [])
    assert rejection(dataclasses.replace(p, updates=(p.updates[0], forged_by_other))) == "proof_bad_update_signature"


# -- faults 2, 3 and other broken rules -----------------------------------------------------------------------

def test_fault2_lock_without_the_owners_signature():
    n = Net()
    stolen = LockRequest(ISSUER, "t1", b"", BUYER, H, 50, b"n" * 16).signed(BUYER_SK)   # the buyer is not the owner
    n.send([n.forge([Lock(stolen)])])
    p = n.proof()
    assert p.fault == faults.LOCK_WITHOUT_OWNER_SIGNATURE and len(p.updates) == 2
    assert fresh_accepts(p)
    assert rejection(dataclasses.replace(p, updates=p.updates[:-1])) == "proof_not_a_fault"
    assert rejection(dataclasses.replace(p, fault=faults.BAD_TRANSFER)) == "proof_wrong_fault"
    assert rejection(dataclasses.replace(p, updates=p.updates[1:])) == "proof_not_a_fault"     # no genesis


@pytest.mark.parametrize("preimage,to", [(b"q" * 32, BUYER), (X, key(RESELLER_SK))],
                         ids=["wrong_preimage", "wrong_recipient"])
def test_fault3_bad_transfer(preimage, to):
    n = Net()
    r = n.lock()
    n.send([n.forge([Transfer(r.lock_id, preimage, to)])])
    p = n.proof()
    assert p.fault == faults.BAD_TRANSFER and fresh_accepts(p)
    assert rejection(dataclasses.replace(p, fault=faults.INVALID_UPDATE)) == "proof_wrong_fault"


def test_other_broken_rules_are_invalid_updates():
    n = Net()
    r = n.lock()
    n.send([n.forge([Unlock(r.lock_id)])])          # before the timeout
    p = n.proof()
    assert p.fault == faults.INVALID_UPDATE and fresh_accepts(p)


# -- fault 4 --------------------------------------------------------------------------------------------------

def fault4():
    n = Net()
    r = n.lock()
    reveal = Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK)
    n.send([reveal.encode()])                       # witnessed by all three; the issuer ignores it
    n.tick(r.timeout - n.chain.height())
    n.send([n.forge([Unlock(r.lock_id)])])
    return n, r, reveal


def test_fault4_unlock_although_the_preimage_was_published():
    n, r, reveal = fault4()
    p = n.proof()
    assert p.fault == faults.UNLOCK_AFTER_REVEAL and p.subject == reveal
    assert len(p.attestations) == 3 and all(a.seen_height < r.timeout for a in p.attestations)
    assert fresh_accepts(p)
    assert rejection(dataclasses.replace(p, attestations=p.attestations[:1])) == "proof_no_quorum"
    assert rejection(p, Policy(POLICY.replicators, quorum=4)) == "proof_no_quorum"
    assert rejection(p, Policy(frozenset({key(RESELLER_SK)}), quorum=1)) == "proof_no_quorum"
    one = p.attestations[0]
    assert rejection(dataclasses.replace(p, attestations=(one, one, one))) == "proof_no_quorum"     # distinct
    impostors = tuple(dataclasses.replace(one, replicator=key(sk)) for sk in REPLICATOR_SKS)     # not re-signed
    assert rejection(dataclasses.replace(p, attestations=(one,) + impostors[1:])) == "proof_no_quorum"
    late = [dataclasses.replace(a, seen_height=r.timeout, at_height=r.timeout).signed(sk)
            for a, sk in zip(p.attestations, REPLICATOR_SKS)]
    assert rejection(dataclasses.replace(p, attestations=tuple(late))) == "proof_no_quorum"
    wrong = Reveal(ISSUER, r.lock_id, b"q" * 32).signed(BUYER_SK)
    assert rejection(dataclasses.replace(p, subject=wrong)) == "proof_not_a_fault"
    assert rejection(dataclasses.replace(p, subject=dataclasses.replace(reveal, preimage=b"q" * 32))) \
        == "proof_bad_subject"
    assert rejection(dataclasses.replace(p, updates=p.updates[:-1])) == "proof_not_a_fault"


def test_a_reveal_seen_only_after_the_timeout_proves_nothing():
    n = Net()
    r = n.lock()
    n.tick(r.timeout - n.chain.height())
    n.send([Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK).encode()])
    n.send([n.forge([Unlock(r.lock_id)])])
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)


# -- fault 5 --------------------------------------------------------------------------------------------------

def test_fault5_refusal_to_lock():
    n = Net()
    r = LockRequest(ISSUER, "t1", b"", BUYER, H, n.chain.height() + 20, b"n" * 16).signed(ISSUER_SK)
    n.send([r.encode()])                            # the issuer never hears of it (or ignores it)
    n.tick(ACT_WITHIN - 1)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)
    n.tick()
    p = n.proof()
    assert p.fault == faults.REFUSED_REQUEST and p.subject == r and fresh_accepts(p)
    assert rejection(dataclasses.replace(p, attestations=p.attestations[:1])) == "proof_no_quorum"
    early = [dataclasses.replace(a, at_height=a.seen_height + ACT_WITHIN - 1).signed(sk)
             for a, sk in zip(p.attestations, REPLICATOR_SKS)]
    assert rejection(dataclasses.replace(p, attestations=tuple(early))) == "proof_no_quorum"
    # the issuer cannot pretend it locked: a chain that holds the lock is no longer a refusal
    locked = make_update(ISSUER_SK, len(p.updates), p.updates[-1].digest(), 9, bytes(32), [Lock(r)])
    assert rejection(dataclasses.replace(p, updates=p.updates + (locked,))) == "proof_not_a_fault"


def test_an_issuer_that_locks_in_time_is_not_discredited():
    n = Net()
    r = LockRequest(ISSUER, "t1", b"", BUYER, H, n.chain.height() + 20, b"n" * 16).signed(ISSUER_SK)
    n.send([r.encode()])
    n.tick(ACT_WITHIN - 1)
    n.send(n.issuer.receive(r.encode()))            # late, but within its time
    n.tick(10)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)


def test_a_request_the_issuer_may_refuse_is_no_fault():
    n = Net()
    short = LockRequest(ISSUER, "t1", b"", BUYER, H, n.chain.height() + ACT_WITHIN, b"n" * 16).signed(ISSUER_SK)
    n.send([short.encode()])                        # its timeout leaves the issuer no time to act
    n.tick(10)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)


def test_fault5_refusal_to_transfer():
    n = Net()
    r = n.lock(timeout=n.chain.height() + 4)
    n.send([Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK).encode()])
    n.tick(r.timeout + ACT_WITHIN - n.chain.height() - 1)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)   # it may still transfer, even after the timeout
    n.tick()
    p = n.proof()
    assert p.fault == faults.REFUSED_REQUEST and isinstance(p.subject, Reveal) and fresh_accepts(p)


def test_a_briefly_down_issuer_that_transfers_late_is_not_discredited():
    n = Net()
    r = n.lock(timeout=n.chain.height() + 4)
    reveal = Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK)
    n.send([reveal.encode()])
    n.tick(r.timeout + ACT_WITHIN - n.chain.height() - 1)
    n.send(n.issuer.receive(reveal.encode()))
    n.tick(10)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)
    assert n.reps[2].token(ISSUER, "t1").owner == BUYER


# -- after a discredit ----------------------------------------------------------------------------------------

def test_a_discredited_issuer_is_refused_from_then_on():
    n, r, _ = fault4()
    rep = n.reps[1]
    assert rep.receive(n.forge([], height=99)) == []
    assert rep.receive(LockRequest(ISSUER, "t1", b"", BUYER, H, 99, b"z" * 16).signed(ISSUER_SK).encode()) == []
    assert rep.rejected["issuer_discredited"] == 2
    assert rep.receive(n.proof().encode()) == [] and rep.rejected["duplicate"] >= 1


def test_honest_issuer_under_load_is_never_discredited():
    n = Net()
    for k in range(6):
        r = LockRequest(ISSUER, "t1", b"", BUYER if k % 2 else ISSUER, H, n.chain.height() + 6,
                        bytes([k]) * 16).signed(key_owner(n))
        n.send([r.encode()], to_issuer=True)
        n.tick(2)
        n.send([Reveal(ISSUER, r.lock_id, X).signed(BUYER_SK).encode()], to_issuer=True)
        n.send(n.issuer.tick())
        n.tick(1)
    assert not any(rep.is_discredited(ISSUER) for rep in n.reps)
    assert n.reps[0].state(ISSUER) == n.issuer.state


def key_owner(n: Net) -> bytes:
    return ISSUER_SK if n.issuer.state.tokens["t1"].owner == ISSUER else BUYER_SK


def _mutate(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict) and obj:
        k = sorted(obj)[head % len(obj)]
        return {**obj, k: _mutate(obj[k], rest, value)}
    if isinstance(obj, list) and obj:
        i = head % len(obj)
        return obj[:i] + [_mutate(obj[i], rest, value)] + obj[i + 1:]
    return value


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=6),
       st.one_of(st.integers(-2, 2 ** 70), st.text(max_size=8), st.none(), st.booleans(), st.just("00" * 32),
                 st.lists(st.integers(), max_size=2)))
def test_mutated_proofs_never_raise(path, value):
    n, _, _ = fault4()
    body = json.loads(n.proof().encode())
    data = json.dumps(_mutate(body, path, value)).encode()
    node = Replicator(FakeChain({}), POLICY)
    out = node.receive(data)                        # never raises
    assert bool(out) == node.is_discredited(ISSUER)
    assert out or sum(node.rejected.values()) == 1


def test_attestations_outside_the_policy_are_counted():
    n, r, reveal = fault4()
    a = Attestation(b"", ISSUER, reveal.digest(), 1, 1, 0, bytes(32)).signed(RESELLER_SK)
    rep = Replicator(n.chain, POLICY)
    assert rep.receive(a.encode()) == [] and rep.rejected == {"untrusted_attestation": 1}
