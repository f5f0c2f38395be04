"""Discredit proofs: the five TokenStrike issuer faults (pkt-reference.md §7), each checkable by anyone.

A proof is one message; a node checks it with :func:`verify` using nothing but its contents, the issuer key it
names and, for faults 4 and 5, the node's own :class:`~node.market.evidence.Policy` (whose attestations it
believes). A node that accepts a proof refuses that issuer from then on. ::

    {"v":1, "type":"discredit", "issuer", "fault",
     "updates": [update, ...],              # issuer-signed updates (see below)
     "subject": lock_request | reveal | null,
     "attestations": [attestation, ...]}

    fault                          updates                        subject, attestations
    1 double_update                two updates, one height        -, -
    2 lock_without_owner_signature the chain from height 0; the   -, -
    3 bad_transfer                 last update breaks that rule
      invalid_update               (the same, any other rule: e.g. unlock_before_timeout, unknown_lock)
    4 unlock_after_reveal          the chain from height 0; the   the reveal; quorum attestations of it with
                                   last update unlocks its lock   seen_height < the lock's timeout
    5 refused_request              the chain from height 0 up to  the lock request or reveal; quorum
                                   the highest attested head      attestations made when the time to act was
                                                                  over (refusal_due), each naming a head on
                                                                  that chain

For 5, the request must still be actionable after the whole segment (a lock request: signed by the token's
owner, token free, request unused, timeout > seen_height + ACT_WITHIN; a reveal: lock pending, preimage right,
seen before the timeout), so an issuer that acted in time, or a request it could rightly refuse, never makes a
proof. The time to act is a lock request's seen_height + ACT_WITHIN, and a reveal's lock timeout + ACT_WITHIN.
A proof carries the issuer's chain from height 0: its size grows with the chain (fine for a testbed; a real
deployment would add signed checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .evidence import ACT_WITHIN, Attestation, Policy, Reveal
from .token_chain import (BAD_TRANSFER, CHAIN_CODES, LOCK_WITHOUT_OWNER_SIGNATURE, PENDING, LockRequest,
                          RuleError, TokenState, Unlock, Update, replay)
from .wire import KEY, MAX_PROOF_BYTES, Many, Message, Name, One, sha256

DOUBLE_UPDATE = "double_update"
INVALID_UPDATE = "invalid_update"
UNLOCK_AFTER_REVEAL = "unlock_after_reveal"
REFUSED_REQUEST = "refused_request"
FAULTS = (DOUBLE_UPDATE, LOCK_WITHOUT_OWNER_SIGNATURE, BAD_TRANSFER, INVALID_UPDATE, UNLOCK_AFTER_REVEAL,
          REFUSED_REQUEST)
MAX_PROOF_UPDATES = 100_000
MAX_ATTESTATIONS = 64


class ProofError(ValueError):
    """The message does not prove what it claims; ``code`` says why."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Discredit(Message):
    TYPE: ClassVar[str] = "discredit"
    MAX_BYTES: ClassVar[int] = MAX_PROOF_BYTES
    WIRE: ClassVar[dict] = {"issuer": KEY, "fault": Name(), "updates": Many(One(Update), MAX_PROOF_UPDATES),
                            "subject": One(LockRequest, Reveal, optional=True),
                            "attestations": Many(One(Attestation), MAX_ATTESTATIONS)}
    issuer: bytes
    fault: str
    updates: tuple
    subject: LockRequest | Reveal | None = None
    attestations: tuple = ()


def refusal_due(subject, seen_height: int, at_height: int, lock_timeout: int | None = None) -> bool:
    """Whether, for ``subject`` first seen at PKT height ``seen_height``, the issuer's time to act is over at
    ``at_height`` (and the subject was timely): a lock request must be locked within ACT_WITHIN blocks, a reveal
    seen before its lock's timeout (``lock_timeout``) must be honoured by that timeout + ACT_WITHIN."""
    if isinstance(subject, LockRequest):
        return subject.timeout > seen_height + ACT_WITHIN and at_height >= seen_height + ACT_WITHIN
    return seen_height < lock_timeout and at_height >= lock_timeout + ACT_WITHIN


def fault_for(rule_code: str) -> str:
    """The fault an issuer commits by signing an update that breaks ``rule_code``."""
    return rule_code if rule_code in (LOCK_WITHOUT_OWNER_SIGNATURE, BAD_TRANSFER) else INVALID_UPDATE


# -- building (what a replicator does when it sees a fault) ----------------------------------------------------

def double_update(a: Update, b: Update) -> Discredit:
    return Discredit(a.issuer, DOUBLE_UPDATE, (a, b))


def invalid_update(chain, bad: Update, rule_code: str) -> Discredit:
    return Discredit(bad.issuer, fault_for(rule_code), tuple(chain) + (bad,))


def unlock_after_reveal(chain, reveal: Reveal, attestations) -> Discredit:
    return Discredit(reveal.issuer, UNLOCK_AFTER_REVEAL, tuple(chain), reveal, tuple(attestations))


def refused_request(chain, issuer: bytes, subject, attestations) -> Discredit:
    return Discredit(issuer, REFUSED_REQUEST, tuple(chain), subject, tuple(attestations))


# -- checking -------------------------------------------------------------------------------------------------

def verify(proof: Discredit, policy: Policy) -> None:
    """Return if ``proof`` proves its fault against ``proof.issuer``; raise ProofError otherwise."""
    if proof.fault not in FAULTS:
        raise ProofError("unknown_fault", f"no fault {proof.fault!r}")
    if not proof.updates:
        raise ProofError("no_updates", "a proof carries the issuer's updates")
    for u in proof.updates:
        if u.issuer != proof.issuer or not u.signature_ok():
            raise ProofError("bad_update_signature", f"update {u.height} is not signed by the issuer")
    if proof.fault == DOUBLE_UPDATE:
        _verify_double(proof)
    elif proof.fault in (LOCK_WITHOUT_OWNER_SIGNATURE, BAD_TRANSFER, INVALID_UPDATE):
        _verify_invalid(proof)
    elif proof.fault == UNLOCK_AFTER_REVEAL:
        _verify_unlock_after_reveal(proof, policy)
    else:
        _verify_refusal(proof, policy)


def _no_evidence(proof: Discredit) -> None:
    if proof.subject is not None or proof.attestations:
        raise ProofError("unexpected_evidence", f"{proof.fault} carries no subject or attestations")


def _verify_double(proof: Discredit) -> None:
    _no_evidence(proof)
    if len(proof.updates) != 2:
        raise ProofError("not_a_fault", "double_update carries exactly two updates")
    a, b = proof.updates
    if a.height != b.height or a.digest() == b.digest():
        raise ProofError("not_a_fault", "the two updates are not different updates at one height")


def _segment(proof: Discredit, updates) -> TokenState:
    """Replay ``updates`` (a prefix of the proof's chain); each must be valid."""
    try:
        return replay(proof.issuer, updates)
    except RuleError as e:
        raise ProofError("bad_segment", f"the chain before the fault is not valid: {e}") from None


def _verify_invalid(proof: Discredit) -> None:
    _no_evidence(proof)
    state = _segment(proof, proof.updates[:-1])
    try:
        state.apply(proof.updates[-1])
    except RuleError as e:
        if e.code in CHAIN_CODES:
            raise ProofError("not_a_fault", f"the last update does not extend the chain ({e.code})") from None
        if fault_for(e.code) != proof.fault:
            raise ProofError("wrong_fault", f"the update breaks {e.code}, not {proof.fault}") from None
        return
    raise ProofError("not_a_fault", "the last update is valid")


def _verify_unlock_after_reveal(proof: Discredit, policy: Policy) -> None:
    reveal = proof.subject
    if not isinstance(reveal, Reveal) or reveal.issuer != proof.issuer or not reveal.signature_ok():
        raise ProofError("bad_subject", "unlock_after_reveal needs a reveal signed for this issuer")
    before = _segment(proof, proof.updates[:-1])
    unlock = proof.updates[-1]
    if not any(isinstance(op, Unlock) and op.lock == reveal.lock for op in unlock.ops):
        raise ProofError("not_a_fault", "the last update does not unlock the revealed lock")
    try:
        before.apply(unlock)
    except RuleError as e:
        raise ProofError("bad_segment", f"the unlock itself breaks a rule (prove that instead): {e}") from None
    lock = before.locks.get(reveal.lock)
    if lock is None or lock.state != PENDING or sha256(reveal.preimage) != lock.hash:
        raise ProofError("not_a_fault", "the reveal does not open a lock pending before the unlock")
    counted = policy.counted(proof.attestations, proof.issuer, reveal.digest(),
                             lambda a: a.seen_height < lock.timeout)
    if not policy.enough(counted):
        raise ProofError("no_quorum", f"{len(counted)} trusted witnesses before the timeout, {policy.quorum} needed")


def _verify_refusal(proof: Discredit, policy: Policy) -> None:
    subject, chain = proof.subject, proof.updates
    if not isinstance(subject, (LockRequest, Reveal)) or subject.issuer != proof.issuer \
            or not subject.signature_ok():
        raise ProofError("bad_subject", "refused_request needs a lock request or reveal signed for this issuer")
    state = _segment(proof, chain)

    def on_chain(a: Attestation) -> bool:
        return 0 < a.length <= len(chain) and chain[a.length - 1].digest() == a.head

    lock_timeout = None
    if isinstance(subject, LockRequest):
        try:
            state.check_lock_request(subject, 0)
        except RuleError as e:
            raise ProofError("not_a_fault", f"the issuer may refuse this request: {e}") from None
    else:
        lock = state.locks.get(subject.lock)
        if lock is None or lock.state != PENDING or sha256(subject.preimage) != lock.hash:
            raise ProofError("not_a_fault", "the reveal does not open a lock still pending")
        lock_timeout = lock.timeout
    counted = policy.counted(proof.attestations, proof.issuer, subject.digest(),
                             lambda a: on_chain(a) and refusal_due(subject, a.seen_height, a.at_height, lock_timeout))
    if not policy.enough(counted):
        raise ProofError("no_quorum", f"{len(counted)} trusted refusal attestations, {policy.quorum} needed")
    if max(a.length for a in counted) != len(chain):
        raise ProofError("bad_segment", "the chain must end at the highest attested head")
