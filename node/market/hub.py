"""HTLC-forwarding payment channels: a payer pays a payee through a hub that routes the payment (issue 16, item 4).

Two one-way channels, payer -> hub and hub -> payee (the *sender* of a channel pays its *receiver*). A payment is
a conditional commitment on each hop: an HTLC of the same SHA-256 ``hash`` with an ``expiry`` PKT height. The
payee, who drew the preimage, reveals it to the hub, the hub to the payer, and each sender then makes its hop's
HTLC unconditional (the amount moves into ``paid``). Messages (wire.py's rules)::

    hub_open      {"v":1,"type":"hub_open", "channel", "sender", "receiver", "capacity", "refund_height",
                   "funding": <outpoint>, "sig" by sender}
    htlc          {"op":"htlc", "hash", "amount", "expiry", "to"}      to = the payee the payment is for
    hub_state     {"v":1,"type":"hub_state", "channel", "sender", "seq", "paid", "htlcs": [htlc, ...], "sig" by
                   sender}     the whole state a close presents: the receiver takes ``paid`` plus every HTLC
                               whose preimage it shows below that HTLC's expiry; the sender the rest
    htlc_fulfill  {"v":1,"type":"htlc_fulfill", "channel", "receiver", "hash", "preimage", "sig" by receiver}
    htlc_fail     {"v":1,"type":"htlc_fail", "channel", "receiver", "hash", "reason", "sig" by receiver}

Each ``hub_state`` has seq = the previous + 1 and makes exactly one change, which the receiver checks
(:meth:`HtlcReceiver.receive`): *add* one HTLC (amount > 0, a hash this channel never used, expiry >= height +
CLOSE_WITHIN so the receiver can still act, expiry + CLOSE_WITHIN <= refund_height so it can close before the
sender may refund); *settle* one (it leaves the list, ``paid`` grows by its amount: only after the receiver's
fulfill); or *cancel* one (it leaves, ``paid`` unchanged: only after the receiver's fail, or from its expiry on,
never after a fulfill). The exposure invariant holds at every state: paid + the pending HTLCs <= capacity. A close
(:func:`settle`) takes the highest validly signed seq, as for the one-way channels (a stale state loses).

**The margin rule** (why the hub can never lose): the hub forwards an incoming HTLC (expiry T_in, amount A) as an
outgoing one with the same hash, expiry T_out = T_in - margin and amount A - fee, with margin >= CLOSE_WITHIN =
confirmations (2) + claim_within (4) blocks (swap.py's SwapParams defaults). The hub pays on the outgoing hop only
against the preimage, shown to it or in a close mined below T_out; it then knows the preimage by T_out +
confirmations at the latest and has claim_within blocks left to be paid on the incoming hop, by the payer's
settle or by closing with the preimage below T_in. A payment that fails (the payee's fail, no route, over
capacity, an expiry too close, a hash it already routed) or expires (T_out on the outgoing hop, T_in on the incoming) is cancelled on both
hops. In the pure model here a close is mined at the height it is made; CLOSE_WITHIN is the latency a real chain
adds.

Rejected input is counted in ``rejected`` by reason, never raised: ``malformed``, ``bad_signature`` (forged),
``wrong_channel``, ``replayed`` (an old seq, or a fulfill or fail of an HTLC already resolved), ``out_of_order``,
``wrong_hash`` (no pending HTLC with that hash, or a preimage that does not open it), ``expired``,
``expiry_after_refund``, ``over_capacity``, ``duplicate_hash``, ``bad_transition``. Misuse of the API raises
:class:`~node.market.channel.ChannelError`. Pure: heights are passed in, no I/O.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from .channel import OUT_OF_ORDER, OVER_CAPACITY, REPLAYED, WRONG_CHANNEL, ChannelError
from .swap import SwapParams
from .wire import (
    BAD_SIGNATURE,
    HASH,
    ID16,
    KEY,
    OUTPOINT,
    SIG,
    Many,
    Message,
    Name,
    One,
    Record,
    UInt,
    WireError,
    decode_as,
    sha256,
)

# blocks from learning a preimage to a close with it mined: the swap's chain-liveness assumptions (swap.py)
CLOSE_WITHIN = SwapParams.confirmations + SwapParams.claim_within
MAX_HTLCS = 32                                  # pending HTLCs per channel

WRONG_HASH = "wrong_hash"
EXPIRED = "expired"
EXPIRY_AFTER_REFUND = "expiry_after_refund"
DUPLICATE_HASH = "duplicate_hash"
BAD_TRANSITION = "bad_transition"
# why the hub fails a payment back (htlc_fail reasons)
NO_ROUTE = "no_route"
FEE_TOO_LOW = "fee_too_low"


@dataclass(frozen=True)
class HubOpen(Message):
    TYPE: ClassVar[str] = "hub_open"
    SIGNER: ClassVar[str] = "sender"
    WIRE: ClassVar[dict] = {"channel": ID16, "sender": KEY, "receiver": KEY, "capacity": UInt(),
                            "refund_height": UInt(), "funding": OUTPOINT, "sig": SIG}
    channel: bytes
    sender: bytes
    receiver: bytes
    capacity: int
    refund_height: int
    funding: str
    sig: bytes = b""


@dataclass(frozen=True)
class Htlc(Record):
    TYPE: ClassVar[str] = "htlc"
    WIRE: ClassVar[dict] = {"hash": HASH, "amount": UInt(), "expiry": UInt(), "to": KEY}
    hash: bytes
    amount: int
    expiry: int
    to: bytes


@dataclass(frozen=True)
class HubState(Message):
    TYPE: ClassVar[str] = "hub_state"
    SIGNER: ClassVar[str] = "sender"
    WIRE: ClassVar[dict] = {"channel": ID16, "sender": KEY, "seq": UInt(), "paid": UInt(),
                            "htlcs": Many(One(Htlc), MAX_HTLCS), "sig": SIG}
    channel: bytes
    sender: bytes
    seq: int
    paid: int
    htlcs: tuple
    sig: bytes = b""

    def pending(self) -> int:
        return sum(h.amount for h in self.htlcs)


@dataclass(frozen=True)
class HtlcFulfill(Message):
    TYPE: ClassVar[str] = "htlc_fulfill"
    SIGNER: ClassVar[str] = "receiver"
    WIRE: ClassVar[dict] = {"channel": ID16, "receiver": KEY, "hash": HASH, "preimage": HASH, "sig": SIG}
    channel: bytes
    receiver: bytes
    hash: bytes
    preimage: bytes
    sig: bytes = b""


@dataclass(frozen=True)
class HtlcFail(Message):
    TYPE: ClassVar[str] = "htlc_fail"
    SIGNER: ClassVar[str] = "receiver"
    WIRE: ClassVar[dict] = {"channel": ID16, "receiver": KEY, "hash": HASH, "reason": Name(), "sig": SIG}
    channel: bytes
    receiver: bytes
    hash: bytes
    reason: str
    sig: bytes = b""


def open_hub_channel(private_key: bytes, channel: bytes, receiver: bytes, capacity: int, refund_height: int,
                     funding: str) -> HubOpen:
    if capacity < 1:
        raise ChannelError("a channel needs a capacity >= 1")
    return HubOpen(channel, bytes(32), receiver, capacity, refund_height, funding).signed(private_key)


def settle(terms: HubOpen, states, preimages: dict, height: int) -> tuple[int, int]:
    """(to receiver, to sender) of a close mined at ``height`` presenting ``states`` and ``preimages`` ({hash:
    preimage}): the highest validly signed seq wins; its HTLCs pay the receiver if their preimage is shown below
    their expiry, else return to the sender. With no state, everything returns to the sender. A close needs the
    receiver's signature (as channel_chain.py's does), so ``states`` are states the receiver accepted: a state the
    sender signed and the receiver refused never closes the channel."""
    best = None
    for s in states:
        if (s.channel == terms.channel and s.sender == terms.sender and s.paid + s.pending() <= terms.capacity
                and s.signature_ok() and (best is None or s.seq > best.seq)):
            best = s
    if best is None:
        return 0, terms.capacity
    won = sum(h.amount for h in best.htlcs
              if height < h.expiry and h.hash in preimages and sha256(preimages[h.hash]) == h.hash)
    return best.paid + won, terms.capacity - best.paid - won


class _End:
    """What both ends of a channel hold: the terms, the latest state, the hashes already resolved."""

    def __init__(self, terms: HubOpen):
        self.terms = terms
        self.seq, self.paid = 0, 0
        self.htlcs: dict[bytes, Htlc] = {}          # pending, by hash
        self.resolved: set[bytes] = set()           # hashes settled or cancelled
        self.rejected: Counter = Counter()

    @property
    def pending(self) -> int:
        return sum(h.amount for h in self.htlcs.values())

    def _decode(self, classes: dict, data):
        msg = decode_as(classes, data)
        if msg.channel != self.terms.channel:
            raise WireError(WRONG_CHANNEL, "a message for another channel")
        if not msg.signature_ok() or getattr(msg, msg.SIGNER) != getattr(self.terms, msg.SIGNER):
            raise WireError(BAD_SIGNATURE, f"{msg.TYPE} is not signed by the channel's {msg.SIGNER}")
        return msg


class HtlcSender(_End):
    """The paying end: adds HTLCs, settles them on the receiver's fulfill, cancels them on its fail or at expiry."""

    def __init__(self, terms: HubOpen, private_key: bytes):
        super().__init__(terms)
        self._sk = private_key
        self.preimages: dict[bytes, bytes] = {}     # learned from fulfills

    def _state(self) -> bytes:
        self.seq += 1
        s = HubState(self.terms.channel, self.terms.sender, self.seq, self.paid, tuple(self.htlcs.values()))
        return s.signed(self._sk).encode()

    def refusal(self, hash: bytes, amount: int, expiry: int, height: int) -> str | None:
        """Why this HTLC cannot be added now (a rejection code), or None."""
        t = self.terms
        if amount < 1 or len(self.htlcs) >= MAX_HTLCS:
            return BAD_TRANSITION
        if hash in self.htlcs or hash in self.resolved:
            return DUPLICATE_HASH
        if self.paid + self.pending + amount > t.capacity:
            return OVER_CAPACITY
        if expiry < height + CLOSE_WITHIN:
            return EXPIRED
        if expiry + CLOSE_WITHIN > t.refund_height:
            return EXPIRY_AFTER_REFUND
        return None

    def add(self, hash: bytes, amount: int, expiry: int, to: bytes, height: int) -> bytes:
        """The state adding an HTLC (ChannelError naming why it cannot be added)."""
        why = self.refusal(hash, amount, expiry, height)
        if why is not None:
            raise ChannelError(f"{why}: HTLC of {amount} expiring at {expiry} (height {height}, paid {self.paid}, "
                               f"pending {self.pending}, capacity {self.terms.capacity})")
        self.htlcs[hash] = Htlc(hash, amount, expiry, to)
        return self._state()

    def receive(self, data, height: int) -> list:
        """A fulfill or fail from the receiver: returns the state that settles or cancels the HTLC ([] if
        refused, counted). A fulfill is honoured at any height (the receiver may close with it until expiry)."""
        try:
            msg = self._decode({HtlcFulfill.TYPE: HtlcFulfill, HtlcFail.TYPE: HtlcFail}, data)
            if msg.hash in self.resolved:
                raise WireError(REPLAYED, f"HTLC {msg.hash.hex()[:16]}.. already resolved")
            h = self.htlcs.get(msg.hash)
            if h is None:
                raise WireError(WRONG_HASH, f"no pending HTLC {msg.hash.hex()[:16]}..")
            if isinstance(msg, HtlcFulfill) and sha256(msg.preimage) != h.hash:
                raise WireError(WRONG_HASH, "the preimage does not open the HTLC")
        except WireError as e:
            self.rejected[e.code] += 1
            return []
        if isinstance(msg, HtlcFulfill):
            self.preimages[h.hash] = msg.preimage
            self.paid += h.amount
        return [self._resolve(h.hash)]

    def expire(self, height: int) -> list:
        """Cancel every HTLC whose expiry has come (none the receiver fulfilled: those were settled)."""
        return [self._resolve(h.hash) for h in list(self.htlcs.values()) if height >= h.expiry]

    def _resolve(self, hash: bytes) -> bytes:
        del self.htlcs[hash]
        self.resolved.add(hash)
        return self._state()


class HtlcReceiver(_End):
    """The paid end: checks each state against the last, reveals preimages and fails HTLCs, closes."""

    def __init__(self, terms: HubOpen, private_key: bytes):
        super().__init__(terms)
        if not terms.signature_ok():
            raise ChannelError("hub_open is not signed by its sender")
        self._sk = private_key
        self.latest: HubState | None = None
        self.preimages: dict[bytes, bytes] = {}     # revealed by us (fulfills sent)
        self.failed: set[bytes] = set()             # given up by us (fails sent)

    def receive(self, data, height: int) -> list:
        """A hub_state from the sender; returns the HTLCs it adds ([] if refused, counted)."""
        try:
            state = self._decode({HubState.TYPE: HubState}, data)
            added = self._check(state, height)
        except WireError as e:
            self.rejected[e.code] += 1
            return []
        self.resolved |= set(self.htlcs) - {h.hash for h in state.htlcs}
        self.seq, self.paid, self.latest = state.seq, state.paid, state
        self.htlcs = {h.hash: h for h in state.htlcs}
        return added

    def _check(self, s: HubState, height: int) -> list:
        t = self.terms
        if s.seq <= self.seq:
            raise WireError(REPLAYED, f"seq {s.seq} already used (at {self.seq})")
        if s.seq != self.seq + 1:
            raise WireError(OUT_OF_ORDER, f"seq {s.seq} after {self.seq}")
        new = {h.hash: h for h in s.htlcs}
        if len(new) != len(s.htlcs):
            raise WireError(DUPLICATE_HASH, "two HTLCs with one hash")
        if s.paid + s.pending() > t.capacity:
            raise WireError(OVER_CAPACITY, f"paid {s.paid} + pending {s.pending()} > capacity {t.capacity}")
        added = [h for k, h in new.items() if k not in self.htlcs]
        removed = [h for k, h in self.htlcs.items() if k not in new]
        kept_same = all(new[k] == h for k, h in self.htlcs.items() if k in new)
        if not kept_same or len(added) + len(removed) != 1:
            raise WireError(BAD_TRANSITION, "a state changes exactly one HTLC")
        if added:
            h = added[0]
            if s.paid != self.paid or h.amount == 0:
                raise WireError(BAD_TRANSITION, "an add moves nothing into paid and adds an amount > 0")
            if h.hash in self.resolved:
                raise WireError(DUPLICATE_HASH, "that hash was already used on this channel")
            if h.expiry < height + CLOSE_WITHIN:
                raise WireError(EXPIRED, f"expiry {h.expiry} leaves less than {CLOSE_WITHIN} blocks from {height}")
            if h.expiry + CLOSE_WITHIN > t.refund_height:
                raise WireError(EXPIRY_AFTER_REFUND, f"expiry {h.expiry} too close to the refund {t.refund_height}")
            return added
        h = removed[0]
        if s.paid == self.paid + h.amount and h.hash in self.preimages:
            return []                                           # settled after our fulfill
        if s.paid == self.paid and h.hash not in self.preimages and (h.hash in self.failed or height >= h.expiry):
            return []                                           # cancelled after our fail, or expired
        raise WireError(BAD_TRANSITION, "an HTLC leaves only settled after a fulfill or cancelled after a fail "
                                        "or its expiry")

    def fulfill(self, preimage: bytes, height: int) -> bytes:
        """Reveal the preimage of a pending HTLC to the sender (below its expiry)."""
        h = self.htlcs.get(sha256(preimage))
        if h is None or height >= h.expiry or h.hash in self.failed:
            raise ChannelError("no pending, unexpired, unfailed HTLC for that preimage")
        self.preimages[h.hash] = preimage
        return HtlcFulfill(self.terms.channel, bytes(32), h.hash, preimage).signed(self._sk).encode()

    def fail(self, hash: bytes, reason: str) -> bytes:
        """Give up a pending HTLC: the sender may cancel it."""
        if hash not in self.htlcs or hash in self.preimages:
            raise ChannelError("no pending HTLC with that hash that we have not fulfilled")
        self.failed.add(hash)
        return HtlcFail(self.terms.channel, bytes(32), hash, reason).signed(self._sk).encode()

    def due(self, height: int) -> bool:
        """Must close now: an HTLC we revealed is not settled and its expiry is CLOSE_WITHIN blocks away."""
        return any(k in self.preimages and height + CLOSE_WITHIN >= h.expiry for k, h in self.htlcs.items())

    def close(self, height: int) -> tuple[int, int]:
        """(to us, to the sender) of a close with our latest state and preimages, mined at ``height``."""
        return settle(self.terms, [self.latest] if self.latest else [], self.preimages, height)


@dataclass(frozen=True)
class Send:
    """A message for the end of a channel (``to``: a payer's or payee's signing key)."""
    to: bytes
    data: bytes


class Hub:
    """Routes payments: a receiver end per payer channel, a sender end per payee channel.

    An HTLC added on a payer's channel with ``to`` = a payee is forwarded on that payee's channel with the same
    hash, ``amount - fee`` and ``expiry - margin`` (the margin rule), or failed back at once. A fulfill from the
    payee settles the outgoing HTLC and is passed back to the payer; a fail or an expiry cancels both hops."""

    def __init__(self, private_key: bytes, fee: int = 0, margin: int = CLOSE_WITHIN):
        if margin < CLOSE_WITHIN or fee < 0:
            raise ChannelError(f"the hub's margin must be >= {CLOSE_WITHIN} blocks and its fee >= 0")
        self._sk, self.fee, self.margin = private_key, fee, margin
        self.inbound: dict[bytes, HtlcReceiver] = {}       # channel id -> payer -> hub
        self.outbound: dict[bytes, HtlcSender] = {}        # payee key -> hub -> payee
        self.routes: dict[bytes, bytes] = {}               # hash -> inbound channel id
        self.rejected: Counter = Counter()

    def accept(self, terms: HubOpen) -> None:
        """A payer opened a channel to us."""
        self.inbound[terms.channel] = HtlcReceiver(terms, self._sk)

    def open(self, terms: HubOpen) -> None:
        """Our channel to a payee."""
        self.outbound[terms.receiver] = HtlcSender(terms, self._sk)

    def receive(self, data, height: int) -> list:
        """A hub_state from a payer, or a fulfill or fail from a payee; returns the messages to send."""
        try:
            msg = decode_as({c.TYPE: c for c in (HubState, HtlcFulfill, HtlcFail)}, data)
        except WireError as e:
            self.rejected[e.code] += 1
            return []
        if isinstance(msg, HubState):
            end = self.inbound.get(msg.channel)
            if end is None:
                self.rejected[WRONG_CHANNEL] += 1
                return []
            out = []
            for h in end.receive(data, height):
                out += self._forward(end, h, height)
            return out
        payee = next((k for k, e in self.outbound.items() if e.terms.channel == msg.channel), None)
        if payee is None:
            self.rejected[WRONG_CHANNEL] += 1
            return []
        out = [Send(payee, s) for s in self.outbound[payee].receive(data, height)]
        if out and isinstance(msg, HtlcFulfill):
            out += self._back(msg.hash, msg.preimage, height, "")
        elif out:
            out += self._back(msg.hash, None, height, msg.reason)
        return out

    def learned(self, preimage: bytes, height: int) -> list:
        """A preimage seen elsewhere (a payee's close on the chain): claim the incoming HTLC with it."""
        return self._back(sha256(preimage), preimage, height, "")

    def tick(self, height: int) -> list:
        """Cancel expired outgoing HTLCs and fail their incoming ones back."""
        out = []
        for payee, end in self.outbound.items():
            expiring = [h.hash for h in end.htlcs.values() if height >= h.expiry]
            out += [Send(payee, s) for s in end.expire(height)]
            for hash in expiring:
                out += self._back(hash, None, height, EXPIRED)
        return out

    def due(self, height: int) -> list:
        """Inbound channels we must close now to be paid what we forwarded (the payer did not settle)."""
        return [c for c, end in self.inbound.items() if end.due(height)]

    def _forward(self, inbound: HtlcReceiver, h: Htlc, height: int) -> list:
        out_end = self.outbound.get(h.to)
        amount, expiry = h.amount - self.fee, h.expiry - self.margin
        if h.hash in self.routes:
            reason = DUPLICATE_HASH             # a hash is routed once: the preimage must reach its own payer
        elif out_end is None:
            reason = NO_ROUTE
        elif amount < 1:
            reason = FEE_TOO_LOW
        else:
            reason = out_end.refusal(h.hash, amount, expiry, height)
        if reason is not None:
            self.rejected[f"forward_{reason}"] += 1
            return self._answer(inbound, h.hash, None, height, reason)
        self.routes[h.hash] = inbound.terms.channel
        return [Send(h.to, out_end.add(h.hash, amount, expiry, h.to, height))]

    def _back(self, hash: bytes, preimage: bytes | None, height: int, reason: str) -> list:
        """Pass a fulfill (preimage) or a fail back on the incoming hop the payment came in on."""
        end = self.inbound.get(self.routes.get(hash, b""))
        return [] if end is None else self._answer(end, hash, preimage, height, reason)

    @staticmethod
    def _answer(end: HtlcReceiver, hash: bytes, preimage: bytes | None, height: int, reason: str) -> list:
        if hash not in end.htlcs or hash in end.preimages or hash in end.failed:
            return []
        try:
            data = end.fulfill(preimage, height) if preimage is not None else end.fail(hash, reason)
        except ChannelError:
            return []           # past the incoming expiry: nothing left to claim (the margin rule prevents it)
        return [Send(end.terms.sender, data)]
