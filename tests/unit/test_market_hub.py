"""HTLC-forwarding channels through a hub (node/market/hub.py): conditional payments on two hops with one hash,
the margin rule, cancellation on both hops, counted rejections, and a random walk in which the hub never loses."""
import dataclasses
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.market import hub as hb
from node.market.channel import ChannelError
from node.market.wire import sha256

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, RESELLER_SK, key  # noqa: E402

PAYER_SK, HUB_SK, PAYEE_SK = BUYER_SK, RESELLER_SK, ISSUER_SK
PAYER, HUB, PAYEE = key(PAYER_SK), key(HUB_SK), key(PAYEE_SK)
CAP, REFUND, FEE = 1000, 200, 2
FUNDING = "cd" * 32 + ":0"
H0 = 10                                         # the PKT height the tests start at
EXPIRY = H0 + 2 * hb.CLOSE_WITHIN + 4           # an incoming expiry the hub can forward


class World:
    """Payer -> hub -> payee; messages are delivered at once unless a party is silent."""

    def __init__(self, fee=FEE, cap_in=CAP, cap_out=CAP):
        a = hb.open_hub_channel(PAYER_SK, b"A" * 16, HUB, cap_in, REFUND, FUNDING)
        b = hb.open_hub_channel(HUB_SK, b"B" * 16, PAYEE, cap_out, REFUND, FUNDING)
        self.payer = hb.HtlcSender(a, PAYER_SK)
        self.hub = hb.Hub(HUB_SK, fee=fee)
        self.hub.accept(a)
        self.hub.open(b)
        self.payee = hb.HtlcReceiver(b, PAYEE_SK)
        self.height = H0
        self.payer_silent = False               # the payer ignores the hub's fulfills (never settles)
        self.hub_must_close = False             # Hub.due said so: the walk ends with the hub's close

    def deliver(self, sends):
        for s in sends:
            if s.to == PAYEE:
                self.payee.receive(s.data, self.height)
            elif s.to == PAYER and not self.payer_silent:
                for state in self.payer.receive(s.data, self.height):
                    self.hub.receive(state, self.height)

    def pay(self, preimage, amount, expiry=EXPIRY):
        self.deliver(self.hub.receive(self.payer.add(sha256(preimage), amount, expiry, PAYEE, self.height),
                                      self.height))

    def reveal(self, preimage):
        self.deliver(self.hub.receive(self.payee.fulfill(preimage, self.height), self.height))

    def fail(self, preimage, reason="no_such_invoice"):
        self.deliver(self.hub.receive(self.payee.fail(sha256(preimage), reason), self.height))

    def advance(self, blocks):
        for _ in range(blocks):
            self.height += 1
            self.deliver(self.hub.tick(self.height))
            for state in self.payer.expire(self.height):
                self.hub.receive(state, self.height)
            if self.hub.due(self.height):
                self.hub_must_close = True
                return

    def hub_in(self):
        return self.hub.inbound[b"A" * 16]

    def hub_out(self):
        return self.hub.outbound[PAYEE]


def test_a_payment_through_the_hub_settles_on_both_hops():
    w = World()
    w.pay(b"p" * 32, 100)
    out = w.payee.htlcs[sha256(b"p" * 32)]
    assert (out.amount, out.expiry) == (100 - FEE, EXPIRY - hb.CLOSE_WITHIN)      # the fee and the margin rule
    assert w.hub_in().htlcs[sha256(b"p" * 32)].expiry == EXPIRY
    w.reveal(b"p" * 32)
    assert (w.payee.paid, w.payee.htlcs) == (100 - FEE, {})
    assert (w.hub_in().paid, w.hub_in().htlcs) == (100, {})
    assert (w.payer.paid, w.payer.htlcs) == (100, {}) and w.payer.preimages == {sha256(b"p" * 32): b"p" * 32}
    assert w.payee.close(w.height) == (100 - FEE, CAP - 100 + FEE)
    assert w.hub_in().close(w.height) == (100, CAP - 100)
    assert not (w.payer.rejected or w.payee.rejected or w.hub.rejected or w.hub_in().rejected)


def test_a_failed_payment_is_cancelled_on_both_hops():
    w = World()
    w.pay(b"p" * 32, 100)
    w.fail(b"p" * 32)
    assert (w.payee.paid, w.payee.htlcs, w.payee.seq) == (0, {}, 2)
    assert (w.hub_in().paid, w.hub_in().htlcs, w.payer.paid, w.payer.htlcs) == (0, {}, 0, {})


def test_an_expired_payment_is_cancelled_outgoing_first_then_incoming():
    w = World()
    w.pay(b"p" * 32, 100)
    w.advance(EXPIRY - hb.CLOSE_WITHIN - H0)            # the outgoing expiry: the hub cancels, fails back
    assert w.payee.htlcs == {} and w.payee.paid == 0 and w.payee.seq == 2
    assert w.payer.htlcs == {} and w.hub_in().htlcs == {}
    with pytest.raises(ChannelError):
        w.payee.fulfill(b"p" * 32, w.height)            # too late: nothing to reveal into


@pytest.mark.parametrize("amount,expiry,reason", [
    (FEE, EXPIRY, "forward_fee_too_low"),
    (CAP - 1, EXPIRY, None),                                            # fits (the fee stays with the hub)
    (100, H0 + hb.CLOSE_WITHIN + hb.CLOSE_WITHIN - 1, "forward_expired"),  # no room for the margin
])
def test_the_hub_forwards_only_what_the_rules_allow(amount, expiry, reason):
    w = World()
    w.pay(b"p" * 32, amount, expiry)
    if reason is None:
        assert sha256(b"p" * 32) in w.payee.htlcs
    else:
        assert w.hub.rejected == {reason: 1}
        assert w.payee.seq == 0 and w.payer.htlcs == {} and w.hub_in().htlcs == {}


def test_a_payment_over_the_outgoing_capacity_or_without_a_route_is_failed_back():
    w = World(cap_out=50)
    w.pay(b"p" * 32, 100)
    assert w.hub.rejected == {"forward_over_capacity": 1} and w.payer.htlcs == {}
    w = World()
    w.deliver(w.hub.receive(w.payer.add(sha256(b"q" * 32), 100, EXPIRY, HUB, w.height), w.height))
    assert w.hub.rejected == {"forward_no_route": 1} and w.payer.htlcs == {}


def test_a_hash_is_routed_once_so_a_second_payer_cannot_take_the_first_ones_preimage():
    w = World()
    other_sk = bytes(range(100, 132))
    c = hb.open_hub_channel(other_sk, b"C" * 16, HUB, CAP, REFUND, FUNDING)
    w.hub.accept(c)
    other = hb.HtlcSender(c, other_sk)
    w.pay(b"p" * 32, 100)
    sends = w.hub.receive(other.add(sha256(b"p" * 32), 100, EXPIRY, PAYEE, w.height), w.height)
    assert [s.to for s in sends] == [key(other_sk)] and w.hub.rejected == {"forward_duplicate_hash": 1}
    assert hb.HtlcFail.decode(sends[0].data).reason == "duplicate_hash"
    w.reveal(b"p" * 32)
    assert w.payer.paid == 100 and w.hub_in().paid == 100                # the first payer pays, as it should


def test_the_hub_never_loses_when_the_payer_does_not_settle():
    w = World()
    w.payer_silent = True
    w.pay(b"p" * 32, 100)
    w.reveal(b"p" * 32)
    assert w.payee.paid == 100 - FEE and w.hub_in().paid == 0          # the payer kept silent
    assert not w.hub.due(w.height)
    w.advance(EXPIRY - hb.CLOSE_WITHIN - w.height)
    assert w.hub.due(w.height) == [b"A" * 16]                          # close while the preimage still counts
    assert w.hub_in().close(w.height) == (100, CAP - 100)
    assert w.hub_in().close(EXPIRY) == (0, CAP)                          # too late: that is why `due` says when


def test_a_payee_that_claims_by_closing_pays_the_hub_through_learned():
    w = World()
    w.pay(b"p" * 32, 100)
    w.advance(EXPIRY - hb.CLOSE_WITHIN - H0 - 1)        # last block before the outgoing expiry
    b_recv, _ = hb.settle(w.payee.terms, [w.payee.latest], {sha256(b"p" * 32): b"p" * 32}, w.height)
    assert b_recv == 100 - FEE
    w.deliver(w.hub.learned(b"p" * 32, w.height))
    assert w.hub_in().paid == 100 and w.payer.paid == 100


def test_the_receiver_refuses_bad_states_and_counts_them():
    w = World()
    sender, receiver = w.payer, w.hub_in()
    good = sender.add(sha256(b"p" * 32), 100, EXPIRY, PAYEE, H0)
    state = hb.HubState.decode(good)
    cases = [
        (b"{", "malformed"),
        (dataclasses.replace(state, sig=bytes(64)).encode(), "bad_signature"),         # forged
        (dataclasses.replace(state, paid=5).signed(HUB_SK).encode(), "bad_signature"),  # signed by someone else
        (dataclasses.replace(state, channel=b"X" * 16).signed(PAYER_SK).encode(), "wrong_channel"),
        (dataclasses.replace(state, seq=2).signed(PAYER_SK).encode(), "out_of_order"),
        (dataclasses.replace(state, paid=5).signed(PAYER_SK).encode(), "bad_transition"),
        (dataclasses.replace(state, htlcs=(dataclasses.replace(state.htlcs[0], amount=CAP + 1),))
         .signed(PAYER_SK).encode(), "over_capacity"),
        (dataclasses.replace(state, htlcs=(dataclasses.replace(state.htlcs[0], expiry=H0 + 1),))
         .signed(PAYER_SK).encode(), "expired"),
        (dataclasses.replace(state, htlcs=(dataclasses.replace(state.htlcs[0], expiry=REFUND - 1),))
         .signed(PAYER_SK).encode(), "expiry_after_refund"),
        (dataclasses.replace(state, htlcs=state.htlcs * 2).signed(PAYER_SK).encode(), "duplicate_hash"),
    ]
    for data, code in cases:
        before = receiver.rejected[code]
        assert receiver.receive(data, H0) == []
        assert receiver.rejected[code] == before + 1, code
    assert receiver.receive(good, H0) != []
    assert receiver.receive(good, H0) == [] and receiver.rejected["replayed"] == 1
    assert receiver.seq == 1 and receiver.paid == 0


def test_a_sender_cannot_take_back_or_settle_an_htlc_on_its_own():
    w = World()
    h = sha256(b"p" * 32)
    w.payer.add(h, 100, EXPIRY, PAYEE, H0)
    w.hub_in().receive(hb.HubState(b"A" * 16, PAYER, 1, 0, (hb.Htlc(h, 100, EXPIRY, PAYEE),))
                       .signed(PAYER_SK).encode(), H0)
    cancel = hb.HubState(b"A" * 16, PAYER, 2, 0, ()).signed(PAYER_SK).encode()
    assert w.hub_in().receive(cancel, H0) == [] and w.hub_in().rejected == {"bad_transition": 1}   # not expired
    settle_unfulfilled = hb.HubState(b"A" * 16, PAYER, 2, 100, ()).signed(PAYER_SK).encode()
    assert w.hub_in().receive(settle_unfulfilled, H0) == [] and w.hub_in().rejected["bad_transition"] == 2
    assert w.hub_in().receive(cancel, EXPIRY) == [] and w.hub_in().htlcs == {}      # at its expiry: accepted
    assert w.hub_in().rejected["bad_transition"] == 2


def test_fulfills_and_fails_are_checked_by_the_sender():
    w = World()
    w.pay(b"p" * 32, 100)
    out = w.hub_out()
    good = w.payee.fulfill(b"p" * 32, w.height)
    wrong = hb.HtlcFulfill(b"B" * 16, PAYEE, sha256(b"p" * 32), b"x" * 32).signed(PAYEE_SK).encode()
    unknown = hb.HtlcFail(b"B" * 16, PAYEE, sha256(b"z" * 32), "nope").signed(PAYEE_SK).encode()
    forged = hb.HtlcFail(b"B" * 16, PAYEE, sha256(b"p" * 32), "nope").signed(PAYER_SK).encode()
    for data in (wrong, unknown, forged):
        assert out.receive(data, w.height) == []
    assert out.rejected == {"wrong_hash": 2, "bad_signature": 1}
    assert len(out.receive(good, w.height)) == 1
    assert out.receive(good, w.height) == [] and out.rejected["replayed"] == 1


def test_a_stale_state_loses_at_close():
    w = World()
    w.pay(b"p" * 32, 100)
    first = w.payee.latest
    w.reveal(b"p" * 32)
    assert hb.settle(w.payee.terms, [first, w.payee.latest], {}, w.height) == (100 - FEE, CAP - 100 + FEE)
    assert hb.settle(w.payee.terms, [], {}, w.height) == (0, CAP)


def test_the_hub_refuses_a_margin_below_the_close_latency():
    with pytest.raises(ChannelError, match="margin"):
        hb.Hub(HUB_SK, margin=hb.CLOSE_WITHIN - 1)


def test_messages_round_trip_and_are_signed_over_their_type():
    w = World()
    data = w.payer.add(sha256(b"p" * 32), 100, EXPIRY, PAYEE, H0)
    s = hb.HubState.decode(data)
    assert s.encode() == data and s.signature_ok() and s.htlcs[0].to == PAYEE
    as_fulfill = hb.HtlcFulfill(b"A" * 16, PAYER, sha256(b"p" * 32), b"p" * 32, s.sig)
    assert not as_fulfill.signature_ok()


# -- random walks: balances are conserved and the hub never loses ------------------------------------------------

step = st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 400), st.integers(0, 30)),
    st.tuples(st.just("reveal"), st.integers(0, 7)),
    st.tuples(st.just("fail"), st.integers(0, 7)),
    st.tuples(st.just("advance"), st.integers(1, 8)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=30), st.booleans(), st.booleans(), st.integers(0, hb.CLOSE_WITHIN - 1),
       st.integers(0, 40))
def test_random_payments_keep_balances_and_the_hub_never_loses(steps, payer_silent, payee_closes, delay, end):
    """Any sequence of payments, reveals, fails and blocks; a payer that may never settle; a payee that may claim
    by closing its channel at any height (the hub learns the preimages then and closes ``delay`` < margin blocks
    later). Each channel's close splits exactly its capacity; the hub never ends below zero and earns at most its
    fees."""
    w = World()
    w.payer_silent = payer_silent
    preimages = []
    for s in steps:
        if s[0] == "pay":
            p = bytes([len(preimages)]) * 32
            expiry = w.height + 2 * hb.CLOSE_WITHIN + s[2]
            if w.payer.refusal(sha256(p), s[1], expiry, w.height) is None and expiry + hb.CLOSE_WITHIN <= REFUND:
                preimages.append(p)
                w.pay(p, s[1], expiry)
        elif s[0] in ("reveal", "fail") and preimages:
            p = preimages[s[1] % len(preimages)]
            h = sha256(p)
            if h in w.payee.htlcs and h not in w.payee.preimages and h not in w.payee.failed \
                    and w.height < w.payee.htlcs[h].expiry:
                if s[0] == "fail":
                    w.fail(p)
                elif not payee_closes:
                    w.reveal(p)
        elif s[0] == "advance":
            w.advance(s[1])
            if w.hub_must_close:
                break
        for end_ in (w.payer, w.hub_out()):             # the exposure invariant on both channels, every step
            assert end_.paid + end_.pending <= end_.terms.capacity
        assert w.payee.paid + w.payee.pending <= CAP and w.hub_in().paid + w.hub_in().pending <= CAP
        assert w.payee.paid + FEE * len(w.payee.preimages) == w.hub_in().paid or payer_silent
    # the end: the payee closes at a height of its choice; one that withheld its preimages claims with them, at
    # best in one of the last blocks before an outgoing expiry (the hub learns them there, closes ``delay`` later)
    close_at = w.height + end
    if payee_closes and w.payee.htlcs:
        close_at = max(w.height, min(h.expiry for h in w.payee.htlcs.values()) - 1 - end % 3)
        payee_preimages = {k: v for k, v in ((sha256(p), p) for p in preimages)    # a claim past its expiry is
                           if k in w.payee.htlcs and close_at < w.payee.htlcs[k].expiry}    # never mined
    else:
        payee_preimages = dict(w.payee.preimages)
    b_recv, b_send = hb.settle(w.payee.terms, [w.payee.latest] if w.payee.latest else [], payee_preimages, close_at)
    for p in payee_preimages.values():
        w.deliver(w.hub.learned(p, close_at))
    hub_close = next((h for h in range(w.height, close_at + 1) if w.hub.due(h)), close_at)    # the hub watches due
    a_recv, a_send = w.hub_in().close(close_at + delay if payee_closes else hub_close)
    assert a_recv + a_send == CAP and b_recv + b_send == CAP
    assert 0 <= a_recv - b_recv <= FEE * len(preimages)           # the hub never loses, and earns only its fees
