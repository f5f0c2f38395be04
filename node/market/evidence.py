"""Evidence about an issuer that its own chain cannot hold: reveals, replicator attestations, trust policy.

Two of the five TokenStrike faults (pkt-reference.md §7) are about what the issuer was *told* and when, which its
chain does not show. pktlab makes them checkable with two signed messages:

``reveal`` (signed by "sender": anyone who knows the preimage, usually the buyer)::

    {"v":1, "type":"reveal", "issuer", "lock": <lock id>, "preimage": <32 bytes>, "sender", "sig"}

  It is both the request to complete a transfer (the issuer must answer it with a ``transfer``) and the
  *publication* of the preimage: a reveal is published once a replicator has seen it and attested it.

``attestation`` (signed by "replicator")::

    {"v":1, "type":"attestation", "replicator", "issuer",
     "subject": <digest of a lock_request or reveal>,
     "seen_height": h0,        # the replicator's PKT height when it first saw the subject
     "at_height": h1,          # its PKT height when it signed this attestation (>= h0)
     "length": n, "head": <digest of the issuer's update n-1, zeros if n = 0>}  # the issuer chain it held then

  One message serves both faults: as a *witness* (the subject was public at h0) and, once the issuer's time to
  act is over, as a *refusal* statement (at h1 the issuer's chain, up to update n-1, had not acted on it). The
  time to act (faults.refusal_due): a lock request by h0 + ACT_WITHIN (its timeout must lie beyond that); a
  reveal seen before its lock's timeout by that timeout + ACT_WITHIN (until then the issuer may still transfer,
  so an issuer that was briefly down is not discredited).

A verifier counts an attestation only from a replicator of its :class:`Policy`, and needs ``quorum`` distinct
ones. That is the limit of faults 4 and 5: they rest on the word of ``quorum`` replicators the verifier trusts
(their PKT heights and what they received), where faults 1 to 3 rest on the issuer's signature alone. A quorum
of colluding replicators can frame an issuer; fewer cannot. An issuer offline past its time to act is
indistinguishable from one that refuses, and is discredited the same way: serving requests is its duty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .wire import HASH, ID16, KEY, SIG, Message, UInt

BAD_PREIMAGE = "bad_preimage"          # a reveal whose preimage does not open its lock
ACT_WITHIN = 3          # PKT blocks an issuer has to act on a lock request (on a reveal: after the lock timeout)


@dataclass(frozen=True)
class Reveal(Message):
    TYPE: ClassVar[str] = "reveal"
    SIGNER: ClassVar[str] = "sender"
    WIRE: ClassVar[dict] = {"issuer": KEY, "lock": ID16, "preimage": HASH, "sender": KEY, "sig": SIG}
    issuer: bytes
    lock: bytes
    preimage: bytes
    sender: bytes = bytes(32)
    sig: bytes = b""


@dataclass(frozen=True)
class Attestation(Message):
    TYPE: ClassVar[str] = "attestation"
    SIGNER: ClassVar[str] = "replicator"
    WIRE: ClassVar[dict] = {"replicator": KEY, "issuer": KEY, "subject": HASH, "seen_height": UInt(),
                            "at_height": UInt(), "length": UInt(), "head": HASH, "sig": SIG}
    replicator: bytes
    issuer: bytes
    subject: bytes
    seen_height: int
    at_height: int
    length: int
    head: bytes
    sig: bytes = b""


@dataclass(frozen=True)
class Policy:
    """Whose attestations a node believes: ``quorum`` distinct keys out of ``replicators`` (signing keys)."""
    replicators: frozenset = field(default_factory=frozenset)
    quorum: int = 1

    def counted(self, attestations, issuer: bytes, subject: bytes, accept) -> list:
        """The attestations that count (one per trusted replicator, valid signature, ``accept(a)`` true)."""
        out, seen = [], set()
        for a in attestations:
            if (a.replicator in self.replicators and a.replicator not in seen and a.issuer == issuer
                    and a.subject == subject and a.at_height >= a.seen_height and accept(a) and a.signature_ok()):
                seen.add(a.replicator)
                out.append(a)
        return out

    def enough(self, counted) -> bool:
        return self.quorum >= 1 and len(counted) >= self.quorum
