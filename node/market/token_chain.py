"""Issuer chains: the signed update chain in which a routing device issues and moves its lease tokens.

The TokenStrike model (pkt-reference.md §7) with pktlab's formats (wire.py gives the encoding rules). Every
device is an *issuer*: its key is its node identity (the Ed25519 signing key derived from its cjdns key). It issues
one token per bandwidth lease and per virtual router, and records every change in its own chain of updates::

    {"v":1, "type":"update",
     "issuer":    <signing key>,
     "height":    n,                     # 0 for the first update, then +1 each
     "prev":      <digest of update n-1, 32 zero bytes for n = 0>,
     "pkt_height": h, "pkt_block": <hash of PKT block h>,   # the time stamp: this update is not older than h
     "ops":       [op, ...],             # 0..64 operations, applied in order, all or none
     "sig":       <issuer signature>}

    {"op":"issue_lease",  "token", "lease", "link", "kbps", "start", "end", "price"}
        a bandwidth lease of the device: its lease id and link, the guarantee (kbit/s), the term (Unix seconds
        start..end) and the asking price (atomic PKT units); the issuer owns it first
    {"op":"issue_router", "token", "router", "start", "end", "price"}
        a virtual router lease
    {"op":"lock", "request": <lock_request>}
        lock a token for a transfer; justified by the owner's signed request, which it carries
    {"op":"transfer", "lock", "preimage", "to"}
        complete a lock: SHA-256(preimage) must be the lock's hash and ``to`` the lock's recipient
    {"op":"unlock", "lock"}
        return a pending lock's token to its owner; justified by the update's pkt_height >= the lock's timeout

    lock_request (signed by "owner", the token's current owner):
    {"v":1, "type":"lock_request", "issuer", "token", "owner", "to", "hash", "timeout", "nonce", "sig"}
        lock id = the first 16 bytes of the request's digest; a request locks at most once

The justification of each operation travels with it (the owner's request in ``lock``, the preimage in
``transfer``, the PKT block anchor of the update for ``unlock``), so replaying an issuer's chain from height 0 with
:meth:`TokenState.apply` gives the ownership state, and any rule an update breaks is visible from the chain alone.
A replicator checks the anchor against its own PKT chain (``ChainView.block_hash``): a block hash cannot be known
before the block exists, so an update cannot pretend to be later than it is.

:meth:`TokenState.apply` raises :class:`RuleError` with one of the codes below; ``CHAIN_CODES`` are problems of
linkage (not provable faults by themselves), every other code is a rule the issuer broke by signing the update.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from .wire import HASH, ID16, KEY, SIG, Many, Message, Name, One, Record, UInt, sha256

MAX_OPS = 64
GENESIS_PREV = bytes(32)

# rule codes
WRONG_ISSUER = "wrong_issuer"
BAD_HEIGHT = "bad_height"
BAD_PREV = "bad_prev"
PKT_HEIGHT_DECREASED = "pkt_height_decreased"
DUPLICATE_TOKEN = "duplicate_token"
BAD_TERMS = "bad_terms"
UNKNOWN_TOKEN = "unknown_token"
LOCK_WITHOUT_OWNER_SIGNATURE = "lock_without_owner_signature"      # §7 fault 2
TOKEN_LOCKED = "token_locked"
REPLAYED_REQUEST = "replayed_request"
EXPIRED_REQUEST = "expired_request"
UNKNOWN_LOCK = "unknown_lock"
LOCK_NOT_PENDING = "lock_not_pending"
BAD_TRANSFER = "bad_transfer"                                      # §7 fault 3
UNLOCK_BEFORE_TIMEOUT = "unlock_before_timeout"
CHAIN_CODES = frozenset({WRONG_ISSUER, BAD_HEIGHT, BAD_PREV})

PENDING, TRANSFERRED, UNLOCKED = "pending", "transferred", "unlocked"


class RuleError(ValueError):
    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


# -- wire records ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockRequest(Message):
    TYPE: ClassVar[str] = "lock_request"
    SIGNER: ClassVar[str] = "owner"
    WIRE: ClassVar[dict] = {"issuer": KEY, "token": Name(), "owner": KEY, "to": KEY, "hash": HASH,
                            "timeout": UInt(), "nonce": ID16, "sig": SIG}
    issuer: bytes
    token: str
    owner: bytes
    to: bytes
    hash: bytes
    timeout: int
    nonce: bytes
    sig: bytes = b""

    @property
    def lock_id(self) -> bytes:
        return self.digest()[:16]


@dataclass(frozen=True)
class IssueLease(Record):
    TYPE: ClassVar[str] = "issue_lease"
    WIRE: ClassVar[dict] = {"token": Name(), "lease": Name(), "link": Name(), "kbps": UInt(), "start": UInt(),
                            "end": UInt(), "price": UInt()}
    token: str
    lease: str
    link: str
    kbps: int
    start: int
    end: int
    price: int


@dataclass(frozen=True)
class IssueRouter(Record):
    TYPE: ClassVar[str] = "issue_router"
    WIRE: ClassVar[dict] = {"token": Name(), "router": Name(), "start": UInt(), "end": UInt(), "price": UInt()}
    token: str
    router: str
    start: int
    end: int
    price: int


@dataclass(frozen=True)
class Lock(Record):
    TYPE: ClassVar[str] = "lock"
    WIRE: ClassVar[dict] = {"request": One(LockRequest)}
    request: LockRequest


@dataclass(frozen=True)
class Transfer(Record):
    TYPE: ClassVar[str] = "transfer"
    WIRE: ClassVar[dict] = {"lock": ID16, "preimage": HASH, "to": KEY}
    lock: bytes
    preimage: bytes
    to: bytes


@dataclass(frozen=True)
class Unlock(Record):
    TYPE: ClassVar[str] = "unlock"
    WIRE: ClassVar[dict] = {"lock": ID16}
    lock: bytes


OPS = (IssueLease, IssueRouter, Lock, Transfer, Unlock)


@dataclass(frozen=True)
class Update(Message):
    TYPE: ClassVar[str] = "update"
    SIGNER: ClassVar[str] = "issuer"
    WIRE: ClassVar[dict] = {"issuer": KEY, "height": UInt(), "prev": HASH, "pkt_height": UInt(),
                            "pkt_block": HASH, "ops": Many(One(*OPS), MAX_OPS), "sig": SIG}
    issuer: bytes
    height: int
    prev: bytes
    pkt_height: int
    pkt_block: bytes
    ops: tuple
    sig: bytes = b""


def make_update(private_key: bytes, height: int, prev: bytes, pkt_height: int, pkt_block: bytes, ops,
                random32: bytes | None = None) -> Update:
    """An update signed by the issuer ``private_key`` (no rule is checked: see TokenState.apply)."""
    return Update(bytes(32), height, prev, pkt_height, pkt_block, tuple(ops)).signed(private_key, random32)


# -- ownership state ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    id: str
    op: Record              # the IssueLease / IssueRouter that created it: its terms
    owner: bytes
    lock: bytes | None = None

    @property
    def kind(self) -> str:
        return "lease" if isinstance(self.op, IssueLease) else "router"


@dataclass(frozen=True)
class LockState:
    id: bytes
    token: str
    owner: bytes            # who gets the token back on unlock
    to: bytes
    hash: bytes
    timeout: int            # PKT height from which the issuer may unlock
    state: str = PENDING


@dataclass
class TokenState:
    """The ownership state after replaying an issuer's chain; :meth:`apply` returns the next state."""
    issuer: bytes
    length: int = 0                     # updates applied
    head: bytes = GENESIS_PREV          # digest of the last one
    pkt_height: int = 0
    tokens: dict = field(default_factory=dict)      # token id -> Token
    locks: dict = field(default_factory=dict)       # lock id -> LockState (every lock ever made)

    def apply(self, update: Update) -> "TokenState":
        """The state after ``update``, or RuleError naming the first broken rule (the signature is not checked)."""
        if update.issuer != self.issuer:
            raise RuleError(WRONG_ISSUER, "update of another issuer")
        if update.height != self.length:
            raise RuleError(BAD_HEIGHT, f"height {update.height}, the chain has {self.length} updates")
        if update.prev != self.head:
            raise RuleError(BAD_PREV, f"prev {update.prev.hex()[:16]}.. is not the head {self.head.hex()[:16]}..")
        if update.pkt_height < self.pkt_height:
            raise RuleError(PKT_HEIGHT_DECREASED, f"pkt_height {update.pkt_height} < {self.pkt_height}")
        tokens, locks = dict(self.tokens), dict(self.locks)        # the next state's, changed op by op
        for i, op in enumerate(update.ops):
            try:
                _apply_op(self.issuer, tokens, locks, op, update.pkt_height)
            except RuleError as e:
                raise RuleError(e.code, f"op {i} ({op.TYPE}): {e.detail}") from None
        return TokenState(self.issuer, self.length + 1, update.digest(), update.pkt_height, tokens, locks)

    def check_lock_request(self, r: LockRequest, pkt_height: int) -> None:
        """RuleError unless ``r`` may lock now: the owner signed it, the token is free and the timeout is ahead."""
        _check_lock_request(self.issuer, self.tokens, self.locks, r, pkt_height)


def _check_lock_request(issuer: bytes, tokens: dict, locks: dict, r: LockRequest, pkt_height: int) -> None:
    if r.issuer != issuer or not r.signature_ok():
        raise RuleError(LOCK_WITHOUT_OWNER_SIGNATURE, "the request is not signed for this issuer")
    token = tokens.get(r.token)
    if token is None:
        raise RuleError(UNKNOWN_TOKEN, f"no token {r.token}")
    if r.owner != token.owner:
        raise RuleError(LOCK_WITHOUT_OWNER_SIGNATURE, f"the request is not signed by the owner of {r.token}")
    if r.lock_id in locks:
        raise RuleError(REPLAYED_REQUEST, "this request was already used")
    if token.lock is not None:
        raise RuleError(TOKEN_LOCKED, f"token {r.token} is locked")
    if r.timeout <= pkt_height:
        raise RuleError(EXPIRED_REQUEST, f"timeout {r.timeout} is not after PKT height {pkt_height}")


def _apply_op(issuer: bytes, tokens: dict, locks: dict, op, pkt_height: int) -> None:
    """Apply one operation to ``tokens`` and ``locks`` in place (RuleError if it breaks a rule)."""
    if isinstance(op, (IssueLease, IssueRouter)):
        if op.token in tokens:
            raise RuleError(DUPLICATE_TOKEN, f"token {op.token} already issued")
        if op.end <= op.start or (isinstance(op, IssueLease) and op.kbps == 0):
            raise RuleError(BAD_TERMS, "the term must end after it starts and a lease must guarantee > 0")
        tokens[op.token] = Token(op.token, op, issuer)
    elif isinstance(op, Lock):
        r = op.request
        _check_lock_request(issuer, tokens, locks, r, pkt_height)
        tokens[r.token] = dataclasses.replace(tokens[r.token], lock=r.lock_id)
        locks[r.lock_id] = LockState(r.lock_id, r.token, r.owner, r.to, r.hash, r.timeout)
    elif isinstance(op, Transfer):
        lock = _pending(locks, op.lock)
        if sha256(op.preimage) != lock.hash:
            raise RuleError(BAD_TRANSFER, "the preimage does not hash to the lock's hash")
        if op.to != lock.to:
            raise RuleError(BAD_TRANSFER, "transfer to a key other than the lock's recipient")
        _close(tokens, locks, lock, TRANSFERRED, lock.to)
    elif isinstance(op, Unlock):
        lock = _pending(locks, op.lock)
        if pkt_height < lock.timeout:
            raise RuleError(UNLOCK_BEFORE_TIMEOUT, f"unlock at PKT height {pkt_height} < timeout {lock.timeout}")
        _close(tokens, locks, lock, UNLOCKED, lock.owner)
    else:  # the codec only builds OPS
        raise RuleError(BAD_TERMS, f"unknown operation {op!r}")


def _pending(locks: dict, lock_id: bytes) -> LockState:
    lock = locks.get(lock_id)
    if lock is None:
        raise RuleError(UNKNOWN_LOCK, f"no lock {lock_id.hex()}")
    if lock.state != PENDING:
        raise RuleError(LOCK_NOT_PENDING, f"lock {lock_id.hex()} is {lock.state}")
    return lock


def _close(tokens: dict, locks: dict, lock: LockState, state: str, new_owner: bytes) -> None:
    locks[lock.id] = dataclasses.replace(lock, state=state)
    tokens[lock.token] = dataclasses.replace(tokens[lock.token], owner=new_owner, lock=None)


def replay(issuer: bytes, updates) -> TokenState:
    """The state after ``updates`` from height 0 (RuleError at the first bad one; signatures not checked)."""
    state = TokenState(issuer)
    for u in updates:
        state = state.apply(u)
    return state
