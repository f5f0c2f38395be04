"""Atomic swap of a lease token for PKT: a token lock and a PKT-chain HTLC that share one hash.

Roles: the *seller* owns the token (usually the issuing device itself), the *buyer* pays PKT. Each role is a
state machine driven by events (:meth:`receive` for a message, :meth:`tick` after the PKT chain or the issuer
chain moved) that answers with actions for its driver: :class:`Send` (to the other party), :class:`Publish` (to
the issuer and the replicators), :class:`FundHtlc`, :class:`ClaimHtlc`, :class:`RefundHtlc`. It reads the PKT
chain through a ChainView and the issuer chain through a token view (a Replicator). Every message is checked
(signature, swap id, sender, state) and every rejection counted in ``rejected`` by reason, never raised.

Messages (wire.py rules; ``swap`` is 16 random bytes chosen by the buyer)::

    swap_propose  buyer -> seller  {swap, issuer, token, price, buyer, refund_to, sig by buyer}
    swap_accept   seller -> buyer  {swap, seller, hash, lock, lock_timeout, htlc_refund, pay_to, sig by seller}
    swap_funded   buyer -> seller  {swap, buyer, outpoint, sig by buyer}
    swap_cancel   either           {swap, sender, reason, sig by sender}

``buyer`` and ``seller`` are market keys (node signing keys): the token goes to ``buyer``. ``refund_to`` and
``pay_to`` are PKT chain addresses, ``outpoint`` is ``<txid>:<index>``.

Sequence (h = the PKT height when the seller accepts; p = :class:`SwapParams`):

1. buyer: propose.
2. seller: draws the secret x, hash H = SHA-256(x), sets T_htlc = h + p.fund_within + p.confirmations +
   p.claim_within and T_lock = T_htlc + p.reveal_margin, publishes a lock request (its token to the buyer, H,
   timeout T_lock) and sends accept.
3. buyer: once the issuer chain shows that lock (pending, the seller's token, to the buyer, H, T_lock), funds
   the HTLC (price, H, pay_to, refund_to, refund height T_htlc) while it can still be confirmed before T_htlc,
   and sends funded.
4. seller: once the HTLC is p.confirmations deep and the lock pending, claims it with x while h + 1 < T_htlc, so
   the claim is mined before the refund path opens. x is now on the PKT chain.
5. the buyer as soon as it sees the claim, the seller once its claim is p.confirmations deep, and the issuer
   watching the chain: publish / act on the reveal; the issuer transfers the token to the buyer.
6. no claim: the buyer refunds from T_htlc; the issuer unlocks at T_lock; both sides are back where they began.

**The safe order of the timeouts is T_lock >= T_htlc + reveal_margin (the token lock outlives the HTLC).** The
seller alone knows x and must publish it on the PKT chain to be paid; the last block a claim can enter while the
buyer still cannot refund is T_htlc - 1. The buyer (or anyone) then has until T_lock to get a reveal witnessed,
after which the issuer must transfer (unlocking instead is fault 4, stalling is fault 5). Were T_lock <= T_htlc,
the seller could wait until its token unlocks back to it at T_lock and still claim the PKT before T_htlc: it
would hold both. reveal_margin must exceed the buyer's detection lag plus gossip time (>= 2 blocks).

Other rules that keep either both sides settled or both refunded: the seller claims only after the funding is
p.confirmations deep (a shallower reorg cannot take the payment back once x is public) and publishes its own
reveal only once its claim is that deep, and is done only then, even if the token moved earlier (the buyer reveals
as soon as it sees the claim); a buyer that has seen a claim never refunds (it has x, so it takes the token); a
claim dropped by a reorg is claimed again (unless the token has gone back to the seller); a funding not in a
block by T_htlc + p.confirmations is watched for p.watch_after more blocks and refunded if it gets in.

What the timeouts assume of the PKT chain (chain liveness): a reorg is shallower than p.confirmations, every
transaction is in a block that stays in the best chain within D blocks of being broadcast, a party's view of the
chain lags by at most L blocks, and **L + D + p.confirmations <= p.reveal_margin + 2** (defaults 2 and 5: L + D
<= 5). Derivation: the seller broadcasts its claim at the latest at T_htlc - 2 + L, it is mined by T_htlc - 1 + L
+ D and p.confirmations deep by T_htlc - 2 + L + D + p.confirmations, which must not be after T_lock, where the
issuer would unlock instead of transferring from the chain. A chain that censors a claim for longer (or a party
that is offline past its timeouts) can leave one side paid and the other not, as in any HTLC swap.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from node.cjdns import keys

from .chain_view import CLAIMED, OPEN, REFUNDED, ChainView, depth
from .evidence import ACT_WITHIN, Reveal
from .token_chain import PENDING, TRANSFERRED, UNLOCKED, LockRequest
from .wire import (ADDRESS, BAD_SIGNATURE, HASH, ID16, KEY, OUTPOINT, SIG, Message, Name, UInt, WireError,
                   decode_as, sha256)

COMPLETED, REFUNDED_OUTCOME = "completed", "refunded"

# rejection reasons
WRONG_SWAP = "wrong_swap"
WRONG_SENDER = "wrong_sender"
UNEXPECTED = "unexpected"
BUSY = "busy"
WRONG_TOKEN = "wrong_token"
PRICE_TOO_LOW = "price_too_low"
TOKEN_NOT_AVAILABLE = "token_not_available"
ISSUER_DISCREDITED = "issuer_discredited"
UNSAFE_TIMEOUTS = "unsafe_timeouts"
TOO_LATE = "too_late"
TIMEOUT_TOO_FAR = "timeout_too_far"
BAD_LOCK = "bad_lock"
NO_ANSWER = "no_answer"         # a cancel reason only


@dataclass(frozen=True)
class SwapParams:
    confirmations: int = 2          # depth of the HTLC before the seller claims, of the claim before it reveals
    fund_within: int = 4            # blocks the buyer has to fund after the accept
    claim_within: int = 4           # blocks left for the seller's claim once the funding is confirmed
    reveal_margin: int = ACT_WITHIN + 2     # T_lock - T_htlc
    answer_within: int = 6          # blocks the buyer waits for an accept
    watch_after: int = 20           # blocks a buyer still watches for its funding after T_htlc + confirmations

    def __post_init__(self):
        for name in ("confirmations", "fund_within", "claim_within", "answer_within", "watch_after"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SwapParams.{name} must be an integer >= 1")
        if not isinstance(self.reveal_margin, int) or self.reveal_margin < 2:
            raise ValueError("SwapParams.reveal_margin must be an integer >= 2")

    def htlc_refund(self, height: int) -> int:
        return height + self.fund_within + self.confirmations + self.claim_within

    def lock_timeout(self, htlc_refund: int) -> int:
        return htlc_refund + self.reveal_margin


# -- messages -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwapPropose(Message):
    TYPE: ClassVar[str] = "swap_propose"
    SIGNER: ClassVar[str] = "buyer"
    WIRE: ClassVar[dict] = {"swap": ID16, "issuer": KEY, "token": Name(), "price": UInt(), "buyer": KEY,
                            "refund_to": ADDRESS, "sig": SIG}
    swap: bytes
    issuer: bytes
    token: str
    price: int
    buyer: bytes
    refund_to: bytes
    sig: bytes = b""


@dataclass(frozen=True)
class SwapAccept(Message):
    TYPE: ClassVar[str] = "swap_accept"
    SIGNER: ClassVar[str] = "seller"
    WIRE: ClassVar[dict] = {"swap": ID16, "seller": KEY, "hash": HASH, "lock": ID16, "lock_timeout": UInt(),
                            "htlc_refund": UInt(), "pay_to": ADDRESS, "sig": SIG}
    swap: bytes
    seller: bytes
    hash: bytes
    lock: bytes
    lock_timeout: int
    htlc_refund: int
    pay_to: bytes
    sig: bytes = b""


@dataclass(frozen=True)
class SwapFunded(Message):
    TYPE: ClassVar[str] = "swap_funded"
    SIGNER: ClassVar[str] = "buyer"
    WIRE: ClassVar[dict] = {"swap": ID16, "buyer": KEY, "outpoint": OUTPOINT, "sig": SIG}
    swap: bytes
    buyer: bytes
    outpoint: str
    sig: bytes = b""


@dataclass(frozen=True)
class SwapCancel(Message):
    TYPE: ClassVar[str] = "swap_cancel"
    SIGNER: ClassVar[str] = "sender"
    WIRE: ClassVar[dict] = {"swap": ID16, "sender": KEY, "reason": Name(), "sig": SIG}
    swap: bytes
    sender: bytes
    reason: str
    sig: bytes = b""


SWAP_TYPES = {c.TYPE: c for c in (SwapPropose, SwapAccept, SwapFunded, SwapCancel)}


# -- actions --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Publish:
    data: bytes


@dataclass(frozen=True)
class FundHtlc:
    amount: int
    hash: bytes
    pay_to: bytes
    refund_to: bytes
    refund_height: int


@dataclass(frozen=True)
class ClaimHtlc:
    outpoint: str
    preimage: bytes


@dataclass(frozen=True)
class RefundHtlc:
    outpoint: str


# -- the two roles --------------------------------------------------------------------------------------------

class _Role:
    def __init__(self, private_key: bytes, issuer: bytes, token: str, chain: ChainView, tokens,
                 params: SwapParams):
        self._sk = private_key
        self.key = keys.signing_public_key(private_key)
        self.issuer, self.token = issuer, token
        self.chain, self.tokens, self.params = chain, tokens, params
        self.phase = "start"
        self.outcome: str | None = None
        self.rejected: Counter = Counter()

    def receive(self, data) -> list:
        try:
            msg = decode_as(SWAP_TYPES, data)
            if not msg.signature_ok():
                raise WireError(BAD_SIGNATURE, f"{msg.TYPE} signature does not verify")
            return self._on(msg)
        except WireError as e:
            self.rejected[e.code] += 1
            return []

    def tick(self) -> list:
        return [] if self.outcome else self._tick()

    def _end(self, outcome: str) -> list:
        self.outcome, self.phase = outcome, outcome
        return []

    def _cancel(self, swap: bytes, reason: str) -> list:
        self._end(REFUNDED_OUTCOME)
        return [Send(SwapCancel(swap, self.key, reason).signed(self._sk).encode())]


class SellerSwap(_Role):
    """Sells ``token`` (owned by ``private_key``'s key) for at least ``price``; ``secret`` and ``nonce`` are fresh
    random bytes (32 and 16) from the driver."""

    def __init__(self, private_key: bytes, pay_to: bytes, issuer: bytes, token: str, price: int,
                 chain: ChainView, tokens, secret: bytes, nonce: bytes, params: SwapParams = SwapParams()):
        super().__init__(private_key, issuer, token, chain, tokens, params)
        self.pay_to, self.price = pay_to, price
        self.secret, self.nonce = secret, nonce
        self.hash = sha256(secret)
        self.propose: SwapPropose | None = None
        self.accept: SwapAccept | None = None
        self.request: LockRequest | None = None
        self.outpoint: str | None = None
        self.cancelled = False

    def _on(self, msg) -> list:
        if isinstance(msg, SwapPropose):
            return self._on_propose(msg)
        if self.accept is None or msg.swap != self.accept.swap:
            raise WireError(WRONG_SWAP if self.accept else UNEXPECTED, f"{msg.TYPE} for no swap of ours")
        sender = msg.buyer if isinstance(msg, SwapFunded) else msg.sender if isinstance(msg, SwapCancel) else None
        if sender != self.propose.buyer:
            raise WireError(WRONG_SENDER if sender else UNEXPECTED, f"{msg.TYPE} not from our buyer")
        if isinstance(msg, SwapFunded):
            self.outpoint = self.outpoint or msg.outpoint
            return self.tick()
        self.cancelled = True           # the lock stays until T_lock either way; stop offering
        return []

    def _on_propose(self, msg: SwapPropose) -> list:
        if self.propose is not None:
            if msg.digest() == self.propose.digest():
                return [Send(self.accept.encode())]         # our accept was lost: send it again
            raise WireError(BUSY, "this seller is already in a swap")
        if msg.issuer != self.issuer or msg.token != self.token:
            raise WireError(WRONG_TOKEN, f"we sell {self.token}")
        if msg.price < self.price:
            raise WireError(PRICE_TOO_LOW, f"price {msg.price} < {self.price}")
        if self.tokens.is_discredited(self.issuer):
            raise WireError(ISSUER_DISCREDITED, "the issuer is discredited")
        token = self.tokens.token(self.issuer, self.token)
        if token is None or token.owner != self.key or token.lock is not None:
            raise WireError(TOKEN_NOT_AVAILABLE, f"{self.token} is not ours to sell now")
        t_htlc = self.params.htlc_refund(self.chain.height())
        t_lock = self.params.lock_timeout(t_htlc)
        self.request = LockRequest(self.issuer, self.token, self.key, msg.buyer, self.hash, t_lock,
                                   self.nonce).signed(self._sk)
        self.accept = SwapAccept(msg.swap, self.key, self.hash, self.request.lock_id, t_lock, t_htlc,
                                 self.pay_to).signed(self._sk)
        self.propose, self.phase = msg, "offered"
        return [Publish(self.request.encode()), Send(self.accept.encode())]

    def _payment(self):
        """A confirmed HTLC that pays us the price under our hash with the agreed refund height."""
        for h in self.chain.htlcs_for(self.hash):
            if (h.amount >= self.propose.price and h.pay_to == self.pay_to and h.state == OPEN
                    and h.refund_height == self.accept.htlc_refund
                    and depth(self.chain, h.funded_height) >= self.params.confirmations):
                return h
        return None

    def _tick(self) -> list:
        if self.accept is None:
            return []
        height = self.chain.height()
        lock = self.tokens.lock(self.issuer, self.accept.lock)
        if self.phase == "offered":
            if lock is None or lock.state == UNLOCKED:
                if height >= self.accept.lock_timeout or (lock and lock.state == UNLOCKED):
                    return self._end(REFUNDED_OUTCOME)      # never locked (too late now), or back to us
                return [Publish(self.request.encode())]     # the issuer may have missed it
            payment = self._payment() if lock.state == PENDING else None
            if payment is not None and height + 1 < self.accept.htlc_refund:
                self.phase, self.outpoint = "claimed", payment.outpoint
                return [ClaimHtlc(payment.outpoint, self.secret)]
            if not self.cancelled and height + 1 < self.accept.htlc_refund and self.outpoint is None:
                return [Send(self.accept.encode())]         # the buyer may have missed it
            return []
        # claimed: get paid, then see the token transferred
        htlc = self.chain.htlc(self.outpoint)
        if htlc is None or htlc.state == OPEN:
            if lock.state == UNLOCKED:
                return []                                   # our claim came too late: never take both
            return [ClaimHtlc(self.outpoint, self.secret)]  # not mined yet, or a reorg dropped it
        if htlc.state == REFUNDED:
            return self._end(REFUNDED_OUTCOME) if lock.state == UNLOCKED else []
        if depth(self.chain, htlc.spent_height) < self.params.confirmations:
            return []           # not done even if the token moved (the buyer reveals at once): a reorg may drop it
        if lock.state == TRANSFERRED:
            return self._end(COMPLETED)
        if lock.state == PENDING:
            return [Publish(Reveal(self.issuer, lock.id, self.secret).signed(self._sk).encode())]
        return []


class BuyerSwap(_Role):
    """Buys ``token`` for ``price``; ``swap`` is 16 fresh random bytes from the driver."""

    def __init__(self, private_key: bytes, refund_to: bytes, issuer: bytes, token: str, price: int,
                 chain: ChainView, tokens, swap: bytes, params: SwapParams = SwapParams()):
        super().__init__(private_key, issuer, token, chain, tokens, params)
        self.propose = SwapPropose(swap, issuer, token, price, self.key, refund_to).signed(private_key)
        self.accept: SwapAccept | None = None
        self.outpoint: str | None = None
        self.preimage: bytes | None = None
        self.started = None

    def start(self) -> list:
        self.phase, self.started = "proposed", self.chain.height()
        return [Send(self.propose.encode())]

    def resume(self, accept: bytes | None = None, outpoint: str | None = None) -> None:
        """Continue a swap its driver journaled before a restart: the accept was checked against the height at which
        it came (checked again now, a late restart would refuse it as too_late and forget a funded HTLC), the
        outpoint is our funding."""
        if accept is not None:
            self.accept, self.phase = SwapAccept.decode(accept), "accepted"
        if outpoint is not None and self.accept is not None:
            self.outpoint, self.phase = outpoint, "funded"

    def funded(self, outpoint: str) -> list:
        """The driver funded the HTLC of our FundHtlc action at ``outpoint``."""
        self.outpoint, self.phase = outpoint, "funded"
        return [Send(SwapFunded(self.propose.swap, self.key, outpoint).signed(self._sk).encode())]

    def _on(self, msg) -> list:
        if msg.swap != self.propose.swap:
            raise WireError(WRONG_SWAP, f"{msg.TYPE} for another swap")
        if isinstance(msg, SwapAccept):
            return self._on_accept(msg)
        if isinstance(msg, SwapCancel) and self.accept is not None:
            if msg.sender != self.accept.seller:
                raise WireError(WRONG_SENDER, "cancel not from our seller")
            if self.phase in ("proposed", "accepted"):
                return self._end(REFUNDED_OUTCOME)
            raise WireError(UNEXPECTED, f"cancel in phase {self.phase}: the chain decides now")
        raise WireError(UNEXPECTED, f"{msg.TYPE} in phase {self.phase}")

    def _on_accept(self, msg: SwapAccept) -> list:
        if self.accept is not None:
            if msg.digest() == self.accept.digest():
                return []                                   # the seller sent it again
            raise WireError(UNEXPECTED, "a second, different accept")
        if self.phase != "proposed":
            raise WireError(UNEXPECTED, f"accept in phase {self.phase}")
        height = self.chain.height()
        if msg.lock_timeout < msg.htlc_refund + self.params.reveal_margin:
            raise WireError(UNSAFE_TIMEOUTS, f"lock timeout {msg.lock_timeout} < HTLC refund {msg.htlc_refund}"
                                             f" + {self.params.reveal_margin}")
        if msg.htlc_refund > self.params.htlc_refund(height) + self.params.fund_within:
            raise WireError(TIMEOUT_TOO_FAR, f"HTLC refund at {msg.htlc_refund} would lock our PKT too long")
        if msg.htlc_refund <= height + self.params.confirmations + 1:
            raise WireError(TOO_LATE, f"HTLC refund at {msg.htlc_refund} leaves no time at height {height}")
        self.accept, self.phase = msg, "accepted"
        return self.tick()

    def _lock_ok(self, lock) -> bool:
        a = self.accept
        return (lock.state == PENDING and lock.token == self.token and lock.owner == a.seller and lock.to == self.key
                and lock.hash == a.hash and lock.timeout == a.lock_timeout)

    def _tick(self) -> list:
        height = self.chain.height()
        if self.phase == "proposed":
            if height >= self.started + self.params.answer_within:
                return self._cancel(self.propose.swap, NO_ANSWER)      # nothing was spent
            return [Send(self.propose.encode())]
        if self.phase == "accepted":
            if self.tokens.is_discredited(self.issuer):
                return self._cancel(self.propose.swap, ISSUER_DISCREDITED)
            if height + 1 + self.params.confirmations >= self.accept.htlc_refund:
                return self._cancel(self.propose.swap, TOO_LATE)
            lock = self.tokens.lock(self.issuer, self.accept.lock)
            if lock is None:
                return []
            if not self._lock_ok(lock):
                self.rejected[BAD_LOCK] += 1
                return self._cancel(self.propose.swap, BAD_LOCK)
            self.phase = "funding"
            a = self.accept
            return [FundHtlc(self.propose.price, a.hash, a.pay_to, self.propose.refund_to, a.htlc_refund)]
        if self.phase != "funded":
            return []
        htlc = self.chain.htlc(self.outpoint)
        if htlc is not None and htlc.state == CLAIMED:
            self.preimage = htlc.preimage                   # from now on we never refund
        if self.preimage is not None:
            lock = self.tokens.lock(self.issuer, self.accept.lock)
            if lock.state == TRANSFERRED:
                return self._end(COMPLETED)
            return [Publish(Reveal(self.issuer, lock.id, self.preimage).signed(self._sk).encode())]
        if htlc is None:
            # A funding not in a block yet may still get in (a mempool that was cut off, a slow miner): refunded
            # only after watch_after more blocks; one that gets in by then is refunded below, never left locked.
            if height >= self.accept.htlc_refund + self.params.confirmations + self.params.watch_after:
                return self._end(REFUNDED_OUTCOME)
            return []
        if htlc.state == REFUNDED:
            if depth(self.chain, htlc.spent_height) >= self.params.confirmations:
                return self._end(REFUNDED_OUTCOME)
            return []
        if height >= htlc.refund_height:
            return [RefundHtlc(self.outpoint)]
        return []
