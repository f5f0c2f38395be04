"""One-way payment channel accounting (node/market/channel.py): BTT-T13 per-unit commitments, T14 stale
commitments lose, T15 the exposure invariant at every update."""
import dataclasses
import os
import sys

import pytest
from hypothesis import given, settings, strategies as st

from node.market import channel as ch

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, ISSUER_SK, RESELLER_SK, key  # noqa: E402

PRICE, CAPACITY = 7, 70
FUNDING = "ab" * 32 + ":1"


def pair(capacity=CAPACITY):
    terms = ch.open_channel(BUYER_SK, b"c" * 16, key(ISSUER_SK), capacity, PRICE, 16384, 500, FUNDING)
    return ch.PayerChannel(terms, BUYER_SK), ch.PayeeChannel(terms)


def test_pay_per_unit_and_close_pays_the_latest():
    payer, payee = pair()
    for _ in range(4):
        assert payee.may_send()
        payee.sent()
        assert payee.exposure == PRICE and not payee.may_send()
        assert payee.receive(payer.unit_verified())
        assert payee.exposure == 0
    assert payee.latest.seq == 4 and payee.latest.paid == 4 * PRICE and payee.latest.signature_ok()
    assert ch.settle(payee.terms, [payee.latest]) == (4 * PRICE, CAPACITY - 4 * PRICE)


def test_a_payment_carries_only_the_increment_and_a_signature():
    payer, payee = pair()
    payee.sent()
    msg = ch.ChannelPay.decode(payer.unit_verified())
    assert (msg.seq, msg.increment) == (1, PRICE) and set(ch.ChannelPay.WIRE) == {"channel", "seq", "increment", "sig"}


def test_sending_beyond_one_unit_of_exposure_is_refused():
    _, payee = pair()
    payee.sent()
    with pytest.raises(ch.ChannelError, match="exposure"):
        payee.sent()


def test_the_channel_never_pays_beyond_its_capacity():
    payer, payee = pair(capacity=2 * PRICE)
    for _ in range(2):
        payee.sent()
        payee.receive(payer.unit_verified())
    assert not payee.may_send()
    with pytest.raises(ch.ChannelError, match="capacity"):
        payer.unit_verified()


def test_bad_payments_are_counted():
    payer, payee = pair()
    payee.sent()
    first = payer.unit_verified()
    assert payee.receive(first)
    payee.sent()
    second = payer.unit_verified()
    other_payer = ch.PayerChannel(payee.terms, RESELLER_SK)
    other_payer.seq, other_payer.paid = 1, PRICE
    cases = {
        "replayed": first,
        "out_of_order": dataclasses.replace(ch.ChannelPay.decode(second), seq=3).encode(),
        "pays_undelivered": dataclasses.replace(ch.ChannelPay.decode(second), increment=2 * PRICE).encode(),
        "zero_increment": dataclasses.replace(ch.ChannelPay.decode(second), increment=0).encode(),
        "wrong_channel": dataclasses.replace(ch.ChannelPay.decode(second), channel=b"d" * 16).encode(),
        "bad_signature": other_payer.unit_verified(),
        "malformed": b'{"v":1,"type":"channel_pay","seq":2}',
    }
    for reason, data in cases.items():
        assert not payee.receive(data), reason
        assert payee.rejected[reason] == 1, (reason, payee.rejected)
    assert payee.paid == PRICE and payee.seq == 1
    assert payee.receive(second) and payee.paid == 2 * PRICE


def test_over_capacity_is_refused():
    payer, payee = pair(capacity=PRICE)
    payee.sent()
    big = ch.Commitment(payee.terms.channel, payee.terms.payer, 1, PRICE + 1).signed(BUYER_SK)
    assert not payee.receive(ch.ChannelPay(payee.terms.channel, 1, PRICE + 1, big.sig).encode())
    assert payee.rejected == {"over_capacity": 1}


def test_stale_commitment_loses_to_the_latest():
    payer, payee = pair()
    commitments = []
    for _ in range(3):
        payee.sent()
        payee.receive(payer.unit_verified())
        commitments.append(payee.latest)
    stale, latest = commitments[0], commitments[-1]
    assert ch.settle(payee.terms, [stale]) == (PRICE, CAPACITY - PRICE)      # alone, the stale one would pay less
    assert ch.settle(payee.terms, [stale, latest]) == (3 * PRICE, CAPACITY - 3 * PRICE)
    forged = dataclasses.replace(latest, seq=9, paid=CAPACITY)                # not signed by the payer
    assert ch.settle(payee.terms, [stale, forged]) == (PRICE, CAPACITY - PRICE)
    assert ch.settle(payee.terms, []) == (0, CAPACITY)                         # the refund path: all back


def test_open_is_checked():
    terms = pair()[1].terms
    with pytest.raises(ch.ChannelError, match="signed"):
        ch.PayeeChannel(dataclasses.replace(terms, capacity=CAPACITY + 1))
    with pytest.raises(ch.ChannelError):
        ch.open_channel(BUYER_SK, b"c" * 16, key(ISSUER_SK), PRICE - 1, PRICE, 1, 5, FUNDING)
    assert ch.ChannelOpen.decode(terms.encode()) == terms


def test_refund_height_follows_t13():
    # k x expected time plus two hours, in 60 s blocks: 2 x 600 s + 7200 s = 140 blocks
    assert ch.refund_height(1000, expected_s=600) == 1140
    assert ch.refund_height(0, 600, block_s=6, k=3, extra_s=0) == 300
    with pytest.raises(ValueError):
        ch.refund_height(0, 600, k=0.5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["send", "verify", "lose", "replay"]), max_size=40))
def test_exposure_invariant_at_every_update(script):
    """Whatever the order of events, delivered - paid <= one unit and nothing unverified is paid for."""
    payer, payee = pair()
    in_flight, sent_payments = 0, []
    for event in script:
        if event == "send" and payee.may_send():
            payee.sent()
            in_flight += 1
        elif event == "verify" and in_flight:
            in_flight -= 1
            data = payer.unit_verified()
            sent_payments.append(data)
            payee.receive(data)
        elif event == "lose" and in_flight:
            in_flight -= 1                          # failed verification: never paid, so the payee sends no more
        elif event == "replay" and sent_payments:
            assert not payee.receive(sent_payments[0])
        assert 0 <= payee.exposure <= PRICE
        assert payer.paid == payer.verified * PRICE and payee.paid == payer.paid
