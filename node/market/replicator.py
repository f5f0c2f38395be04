"""Replicators: keep every issuer's chain, check each update, witness requests, and prove issuer faults.

A replicator is fed gossiped messages (:meth:`Replicator.receive`) and PKT blocks (:meth:`Replicator.tick`,
after its ChainView moved) and returns the messages it passes on: every new valid update, lock request, reveal,
attestation and discredit proof, plus the attestations and proofs it makes itself. Pure: no I/O, the PKT chain
is a ChainView.

* **Updates**: signature by the issuer, PKT anchor on our chain (``block_hash(pkt_height) == pkt_block``), then
  :meth:`TokenState.apply`. An update above the next height waits (up to MAX_ORPHANS per issuer) until the gap is
  filled. A *different* update at a height we hold is fault 1; an update that breaks a rule is fault 2, 3 or
  ``invalid_update``. The issuer chain never forks here, so the longest valid chain is the one we hold.
* **Lock requests and reveals** are *subjects*: we note the PKT height we first saw each valid one at. A reveal is
  attested at once (a witness: the preimage is published). Once the issuer's time to act is over
  (faults.refusal_due) and its chain has not acted on a subject that is still actionable, we attest that too
  (a refusal statement).
* **Faults 4 and 5** are proven from attestations (ours and gossiped ones) once ``policy.quorum`` trusted
  replicators agree: an unlock of a lock whose reveal was witnessed before its timeout, or a subject the issuer
  has not acted on.
* **Discredit**: a proof we build or receive is checked with :func:`faults.verify` (our own policy); its issuer
  is refused from then on (``issuer_discredited``) and the proof is gossiped.

Nothing raises out of :meth:`receive`: a rejected message is counted in ``rejected`` by reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from node.cjdns import keys

from . import faults
from .chain_view import ChainView
from .evidence import BAD_PREIMAGE, Attestation, Policy, Reveal
from .faults import Discredit, ProofError
from .token_chain import (CHAIN_CODES, GENESIS_PREV, LOCK_NOT_PENDING, PENDING, TRANSFERRED, UNKNOWN_LOCK,
                          LockRequest, RuleError, TokenState, Unlock, Update)
from .wire import BAD_SIGNATURE, WireError, decode_as, sha256

MAX_ORPHANS = 256
TYPES = {c.TYPE: c for c in (Update, LockRequest, Reveal, Attestation, Discredit)}

# rejection reasons (besides wire.MALFORMED, wire.BAD_SIGNATURE, evidence.BAD_PREIMAGE and the rule codes)
ISSUER_DISCREDITED = "issuer_discredited"
DUPLICATE = "duplicate"
UNKNOWN_PKT_BLOCK = "unknown_pkt_block"
ORPHAN_OVERFLOW = "orphan_overflow"
UNKNOWN_ISSUER = "unknown_issuer"
UNTRUSTED = "untrusted_attestation"


@dataclass
class Seen:
    """A lock request or reveal we saw, and the PKT height we first saw it at."""
    msg: LockRequest | Reveal
    height: int
    refusal_attested: bool = False


class Replicator:
    def __init__(self, chain: ChainView, policy: Policy, private_key: bytes | None = None):
        self.chain, self.policy = chain, policy
        self._private_key = private_key
        self.key = keys.signing_public_key(private_key) if private_key is not None else None
        self.chains: dict[bytes, list] = {}                 # issuer -> its updates, height order
        self.states: dict[bytes, TokenState] = {}
        self.orphans: dict[bytes, dict] = {}                # issuer -> {height: update}
        self.subjects: dict[bytes, Seen] = {}               # digest -> Seen
        self.attestations: dict[bytes, dict] = {}           # subject digest -> {replicator key: Attestation}
        self.discredited: dict[bytes, Discredit] = {}       # issuer -> the proof we accepted
        self.rejected: Counter = Counter()
        self.accepted: Counter = Counter()

    # -- read side (a wallet's token view) ----------------------------------------------------------------------

    def state(self, issuer: bytes) -> TokenState:
        return self.states.get(issuer) or TokenState(issuer)

    def updates(self, issuer: bytes, since: int = 0) -> list:
        """The issuer's updates from height ``since`` (what a late joiner fetches)."""
        return list(self.chains.get(issuer, [])[since:])

    def token(self, issuer: bytes, token_id: str):
        return self.state(issuer).tokens.get(token_id)

    def lock(self, issuer: bytes, lock_id: bytes):
        return self.state(issuer).locks.get(lock_id)

    def is_discredited(self, issuer: bytes) -> bool:
        return issuer in self.discredited

    # -- input --------------------------------------------------------------------------------------------------

    def receive(self, data) -> list:
        """Handle one gossiped message; return the messages to pass on."""
        try:
            msg = decode_as(TYPES, data)
            if isinstance(msg, Discredit):
                return self._discredit(msg)
            issuer = msg.issuer
            if issuer in self.discredited:
                raise WireError(ISSUER_DISCREDITED, f"issuer {issuer.hex()[:16]}.. is discredited")
            if not msg.signature_ok():
                raise WireError(BAD_SIGNATURE, f"{msg.TYPE} signature does not verify")
            if isinstance(msg, Update):
                return self._update(msg)
            if isinstance(msg, Attestation):
                return self._attestation(msg)
            return self._subject(msg)
        except (WireError, RuleError, ProofError) as e:
            self.rejected[e.code] += 1
            return []

    def tick(self) -> list:
        """Attest subjects the issuers left unanswered past their time to act; prove faults that now have quorum."""
        out = []
        for digest, seen in list(self.subjects.items()):
            issuer = seen.msg.issuer
            if issuer in self.discredited:
                continue
            if self._resolved(seen):
                del self.subjects[digest]
                continue
            if self.key is not None and not seen.refusal_attested and self._overdue(seen):
                seen.refusal_attested = True
                out += self._attest(digest, seen)
            out += self._prove(digest)
        return out

    # -- updates ------------------------------------------------------------------------------------------------

    def _update(self, u: Update) -> list:
        chain = self.chains.setdefault(u.issuer, [])
        if u.height < len(chain):
            if chain[u.height].digest() == u.digest():
                raise WireError(DUPLICATE, f"update {u.height} already held")
            return self._discredit(faults.double_update(chain[u.height], u))
        if self.chain.block_hash(u.pkt_height) != u.pkt_block:
            raise WireError(UNKNOWN_PKT_BLOCK, f"PKT block {u.pkt_height} {u.pkt_block.hex()[:16]}.. is not ours")
        if u.height > len(chain):
            waiting = self.orphans.setdefault(u.issuer, {})
            if u.height not in waiting and len(waiting) >= MAX_ORPHANS:
                raise WireError(ORPHAN_OVERFLOW, f"{MAX_ORPHANS} updates already wait for a gap")
            waiting[u.height] = u
            self.accepted["orphan"] += 1
            return []
        out = self._extend(u)
        waiting = self.orphans.get(u.issuer, {})
        while u.issuer not in self.discredited and len(chain) in waiting:
            try:
                out += self._extend(waiting.pop(len(chain)))
            except RuleError as e:          # a bad orphan: drop it, the gap stays
                self.rejected[e.code] += 1
        return out

    def _extend(self, u: Update) -> list:
        chain = self.chains[u.issuer]
        before = self.state(u.issuer)
        try:
            after = before.apply(u)
        except RuleError as e:
            if e.code in CHAIN_CODES:
                raise
            return self._discredit(faults.invalid_update(chain, u, e.code))
        chain.append(u)
        self.states[u.issuer] = after
        self.accepted["update"] += 1
        out = [u.encode()]
        for op in u.ops:
            if isinstance(op, Unlock):
                out += self._prove_unlock(u.issuer, op.lock, len(chain))
        return out

    # -- subjects and attestations ------------------------------------------------------------------------------

    def _subject(self, msg) -> list:
        state = self.states.get(msg.issuer)
        if state is None:
            raise WireError(UNKNOWN_ISSUER, "no update of this issuer yet")
        digest = msg.digest()
        if digest in self.subjects:
            raise WireError(DUPLICATE, f"{msg.TYPE} already seen")
        if isinstance(msg, LockRequest):
            state.check_lock_request(msg, self.chain.height())
        else:
            lock = state.locks.get(msg.lock)
            if lock is None:
                raise WireError(UNKNOWN_LOCK, f"no lock {msg.lock.hex()}")
            if sha256(msg.preimage) != lock.hash:
                raise WireError(BAD_PREIMAGE, "the preimage does not open the lock")
            if lock.state != PENDING:
                raise WireError(LOCK_NOT_PENDING, f"lock is {lock.state}")
        seen = Seen(msg, self.chain.height())
        self.subjects[digest] = seen
        self.accepted[msg.TYPE] += 1
        out = [msg.encode()]
        if isinstance(msg, Reveal) and self.key is not None:
            out += self._attest(digest, seen)          # a witness: the preimage is public from now on
        return out

    def _attest(self, digest: bytes, seen: Seen) -> list:
        chain = self.chains.get(seen.msg.issuer, [])
        a = Attestation(self.key, seen.msg.issuer, digest, seen.height, self.chain.height(), len(chain),
                        chain[-1].digest() if chain else GENESIS_PREV).signed(self._private_key)
        return self._hold(a)

    def _attestation(self, a: Attestation) -> list:
        if a.replicator not in self.policy.replicators:
            raise WireError(UNTRUSTED, "attestation from a replicator outside our policy")
        old = self.attestations.get(a.subject, {}).get(a.replicator)
        if old is not None and old.at_height >= a.at_height:
            raise WireError(DUPLICATE, "an attestation as recent is held")
        return self._hold(a)

    def _hold(self, a: Attestation) -> list:
        """Keep the newest attestation per (subject, replicator); it says as much as the older ones."""
        self.attestations.setdefault(a.subject, {})[a.replicator] = a
        self.accepted["attestation"] += 1
        return [a.encode()] + self._prove(a.subject)

    def _resolved(self, seen: Seen) -> bool:
        """The issuer acted on the subject (locked with the request, transferred the revealed lock)."""
        state = self.state(seen.msg.issuer)
        if isinstance(seen.msg, LockRequest):
            return seen.msg.lock_id in state.locks
        return state.locks[seen.msg.lock].state == TRANSFERRED

    def _overdue(self, seen: Seen) -> bool:
        """The issuer's time to act on the subject is over, and it still could act (faults.refusal_due)."""
        state, now = self.state(seen.msg.issuer), self.chain.height()
        if isinstance(seen.msg, LockRequest):
            try:
                state.check_lock_request(seen.msg, 0)
            except RuleError:
                return False
            return faults.refusal_due(seen.msg, seen.height, now)
        lock = state.locks[seen.msg.lock]
        return lock.state == PENDING and faults.refusal_due(seen.msg, seen.height, now, lock.timeout)

    # -- proofs -------------------------------------------------------------------------------------------------

    def _prove(self, digest: bytes) -> list:
        """A fault 4 or 5 proof about subject ``digest`` if the attestations now allow one."""
        seen = self.subjects.get(digest)
        if seen is None or seen.msg.issuer in self.discredited:
            return []
        issuer = seen.msg.issuer
        if isinstance(seen.msg, Reveal) and self.state(issuer).locks[seen.msg.lock].state != PENDING:
            chain = self.chains[issuer]
            for n, u in enumerate(chain):
                if any(isinstance(op, Unlock) and op.lock == seen.msg.lock for op in u.ops):
                    return self._prove_unlock(issuer, seen.msg.lock, n + 1)
            return []
        chain = self.chains.get(issuer, [])
        lock = self.state(issuer).locks.get(seen.msg.lock) if isinstance(seen.msg, Reveal) else None
        refusals = [a for a in self.attestations.get(digest, {}).values()
                    if faults.refusal_due(seen.msg, a.seen_height, a.at_height, lock and lock.timeout)]
        if any(a.length > len(chain) for a in refusals):
            return []                       # an attester holds more of the chain than we do: wait
        refusals = [a for a in refusals if a.replicator in self.policy.replicators
                    and 0 < a.length and chain[a.length - 1].digest() == a.head]
        if not self.policy.enough(refusals):
            return []
        proof = faults.refused_request(chain[:max(a.length for a in refusals)], issuer, seen.msg, refusals)
        return self._discredit(proof, quiet=True)

    def _prove_unlock(self, issuer: bytes, lock_id: bytes, length: int) -> list:
        """Fault 4 if a reveal of ``lock_id`` was witnessed before its timeout; the unlock is update length-1."""
        timeout = self.state(issuer).locks[lock_id].timeout
        for digest, seen in list(self.subjects.items()):
            if isinstance(seen.msg, Reveal) and seen.msg.issuer == issuer and seen.msg.lock == lock_id:
                held = [a for a in self.attestations.get(digest, {}).values()
                        if a.replicator in self.policy.replicators and a.seen_height < timeout]
                if not self.policy.enough(held):
                    continue
                out = self._discredit(faults.unlock_after_reveal(self.chains[issuer][:length], seen.msg, held),
                                      quiet=True)
                if out:
                    return out
        return []

    def _discredit(self, proof: Discredit, quiet: bool = False) -> list:
        """Accept a proof (ours or gossiped) if it verifies; ``quiet``: ours, not yet complete is no rejection."""
        if proof.issuer in self.discredited:
            if quiet:
                return []
            raise WireError(DUPLICATE, "issuer already discredited")
        try:
            faults.verify(proof, self.policy)
        except ProofError as e:
            if quiet:
                return []
            raise ProofError(f"proof_{e.code}", e.detail) from None
        self.discredited[proof.issuer] = proof
        self.accepted["discredit"] += 1
        return [proof.encode()]
