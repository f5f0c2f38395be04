"""An honest issuer: a routing device keeping its token chain (the rules are in token_chain.py).

It issues its lease and virtual-router tokens, answers lock requests and reveals with updates, and on every PKT
block (:meth:`Issuer.tick`) settles its pending locks: a lock whose preimage is on the PKT chain (a claimed HTLC
with that hash, ``confirmations`` deep) is transferred, and a lock whose timeout has passed is unlocked. Updates
are anchored on the PKT block ``confirmations`` deep, not the tip: a reorg of the tip would otherwise orphan the
anchor, and a replicator that comes later (or a restarted one) could no longer check it (found with a reorg on a
mesh); so an unlock comes ``confirmations - 1`` blocks after the timeout, which only lengthens the lock. Settling
from the chain as well as from reveals means a transfer completes even when the buyer is gone.

Each call returns the encoded updates to gossip (at most one update per call); a request it must not act on is
counted in ``rejected`` by the rule it breaks, never raised. Pure: the PKT chain is a ChainView.
"""
from __future__ import annotations

from collections import Counter

from node.cjdns import keys

from .chain_view import CLAIMED, ChainView, depth
from .evidence import BAD_PREIMAGE, Reveal
from .token_chain import (LOCK_NOT_PENDING, PENDING, WRONG_ISSUER, IssueLease, IssueRouter, Lock, LockRequest,
                          RuleError, TokenState, Transfer, Unlock, make_update)
from .wire import BAD_SIGNATURE, WireError, decode_as, sha256

TYPES = {c.TYPE: c for c in (LockRequest, Reveal)}
PKT_CHAIN_BEHIND = "pkt_chain_behind"       # the PKT chain is below our last update (a reorg): wait


class Issuer:
    def __init__(self, private_key: bytes, chain: ChainView, confirmations: int = 2):
        self._private_key = private_key
        self.key = keys.signing_public_key(private_key)
        self.chain = chain
        self.confirmations = confirmations
        self.updates: list = []
        self.state = TokenState(self.key)
        self.rejected: Counter = Counter()

    def restore(self, updates) -> None:
        """Continue a chain this issuer made before (read back from its store); RuleError if it is not valid."""
        for u in updates:
            self.state = self.state.apply(u)
            self.updates.append(u)

    def issue_lease(self, token: str, lease: str, link: str, kbps: int, start: int, end: int, price: int) -> list:
        return self._commit([IssueLease(token, lease, link, kbps, start, end, price)])

    def issue_router(self, token: str, router: str, start: int, end: int, price: int) -> list:
        return self._commit([IssueRouter(token, router, start, end, price)])

    def receive(self, data) -> list:
        """A lock request or reveal: answer it with an update (or count why not)."""
        try:
            msg = decode_as(TYPES, data)
            if msg.issuer != self.key:
                raise WireError(WRONG_ISSUER, "addressed to another issuer")
            if not msg.signature_ok():
                raise WireError(BAD_SIGNATURE, f"{msg.TYPE} signature does not verify")
            if isinstance(msg, LockRequest):
                self.state.check_lock_request(msg, self.chain.height())
                return self._commit([Lock(msg)])
            lock = self.state.locks.get(msg.lock)
            if lock is None or lock.state != PENDING:
                raise WireError(LOCK_NOT_PENDING, "no pending lock with that id")
            if sha256(msg.preimage) != lock.hash:
                raise WireError(BAD_PREIMAGE, "the preimage does not open the lock")
            return self._commit([Transfer(lock.id, msg.preimage, lock.to)])
        except (WireError, RuleError) as e:
            self.rejected[e.code] += 1
            return []

    def tick(self) -> list:
        """Transfer locks whose preimage the PKT chain shows; unlock expired ones."""
        ops = []
        for lock in self.state.locks.values():
            if lock.state != PENDING:
                continue
            preimage = self._published_preimage(lock.hash)
            if preimage is not None:
                ops.append(Transfer(lock.id, preimage, lock.to))
            elif self._anchor() >= lock.timeout:
                ops.append(Unlock(lock.id))
        return self._commit(ops) if ops else []

    def _published_preimage(self, hash: bytes) -> bytes | None:
        for htlc in self.chain.htlcs_for(hash):
            if htlc.state == CLAIMED and depth(self.chain, htlc.spent_height) >= self.confirmations:
                return htlc.preimage
        return None

    def _anchor(self) -> int:
        """The PKT height our updates are anchored on: ``confirmations`` deep, so that a reorg (shallower than that,
        as the swap assumes) never orphans the block an update names and every replicator can check it later."""
        return max(0, self.chain.height() - self.confirmations + 1)

    def _commit(self, ops) -> list:
        height = self._anchor()
        if height < self.state.pkt_height:       # the PKT chain went back (reorg): wait until it is past us
            self.rejected[PKT_CHAIN_BEHIND] += 1
            return []
        last = self.updates[-1].digest() if self.updates else bytes(32)
        u = make_update(self._private_key, len(self.updates), last, height, self.chain.block_hash(height), ops)
        try:
            self.state = self.state.apply(u)
        except RuleError as e:
            self.rejected[e.code] += 1
            return []
        self.updates.append(u)
        return [u.encode()]
