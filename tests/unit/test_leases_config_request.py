"""Signed lease configuration requests (config_request.py): holder, signature, freshness, replay, expiry."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from node.leases import requests as cr
from node.cjdns import keys
from node.leases.table import Lease, LeaseTable, VirtualRouter

ALICE_SK = bytes(range(1, 33))
MALLORY_SK = bytes(range(101, 133))
ALICE = keys.public_key_for(ALICE_SK)
T0 = 1_700_000_000.0            # wall clock of the device


def device():
    t = LeaseTable()
    t.add_link("eth1", 10000)
    t.add_lease(Lease("L1", "eth1", guarantee_bps=1_000_000, holder=ALICE, expires=100.0))
    t.add_virtual_router(VirtualRouter("vrA", holder=ALICE))
    return t, cr.ConfigRequestHandler(t)


def req(sk=ALICE_SK, lease="L1", changes=None, ts=T0, nonce=None):
    return cr.make_request(sk, lease, changes if changes is not None else {"max_priority_bandwidth": 500},
                           ts, nonce)


def test_holder_request_is_applied():
    t, h = device()
    ans = h.handle(req(changes={"max_priority_bandwidth": 500, "clear_customer_bit": True,
                                "deprioritize_non_customer": 3, "virtual_router": "vrA"}), now=10, wall_time=T0)
    assert ans["ok"], ans
    lease = t.find("L1")
    assert (lease.max_priority_bandwidth, lease.clear_customer_bit, lease.deprioritize_non_customer,
            lease.virtual_router) == (500.0, True, 3, "vrA")
    assert ans["lease"]["max_priority_bandwidth"] == 500.0


def test_wrong_key_is_rejected():
    t, h = device()
    ans = h.handle(req(sk=MALLORY_SK), now=10, wall_time=T0)
    assert ans == {"ok": False, "error": cr.WRONG_KEY, "detail": ans["detail"]}
    assert t.find("L1").max_priority_bandwidth is None


def test_forged_signature_is_rejected():
    _, h = device()
    body = json.loads(req())
    body["set"]["max_priority_bandwidth"] = 99999           # tampered after signing
    assert h.handle(json.dumps(body).encode(), 10, T0)["error"] == cr.BAD_SIGNATURE


def test_replayed_nonce_is_rejected():
    _, h = device()
    r = req(nonce=bytes(16))
    assert h.handle(r, 10, T0)["ok"]
    assert h.handle(r, 11, T0 + 1)["error"] == cr.REPLAYED_NONCE
    # a new nonce passes; the old request stays dead once out of the window (stale)
    assert h.handle(req(nonce=bytes([1]) * 16), 12, T0 + 2)["ok"]
    assert h.handle(r, 50, T0 + 40)["error"] == cr.STALE


def test_stale_or_future_timestamp_is_rejected():
    _, h = device()
    assert h.handle(req(ts=T0 - 31), 10, T0)["error"] == cr.STALE
    assert h.handle(req(ts=T0 + 31), 10, T0)["error"] == cr.STALE


def test_request_after_expiry_is_rejected():
    t, h = device()
    ans = h.handle(req(), now=100.0, wall_time=T0)
    assert ans["error"] == cr.LEASE_EXPIRED
    assert t.find("L1").max_priority_bandwidth is None


def test_unknown_lease_and_free_lease_are_rejected():
    _, h = device()
    assert h.handle(req(lease="nope"), 10, T0)["error"] == cr.UNKNOWN_LEASE
    assert h.handle(req(lease="free"), 10, T0)["error"] == cr.UNKNOWN_LEASE


@pytest.mark.parametrize("changes", [{"deprioritize_non_customer": 16}, {"max_priority_bandwidth": -1},
                                     {"clear_customer_bit": 1}, {"virtual_router": "missing"},
                                     {"virtual_router": "free"}, {"max_priority_bandwidth": 5, "virtual_router": 7}])
def test_bad_values_are_rejected_and_nothing_is_applied(changes):
    t, h = device()
    ans = h.handle(req(changes=changes), 10, T0)
    assert ans["error"] == cr.BAD_VALUE, ans
    assert t.find("L1").max_priority_bandwidth is None and t.find("L1").virtual_router is None


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b"\xff\xfe", json.dumps({"v": 1}).encode(),
                                  b"1" * 100, b"[" * 5000])
def test_malformed_requests_are_rejected(data):
    _, h = device()
    assert h.handle(data, 10, T0)["error"] == cr.MALFORMED


def test_unknown_fields_in_set_are_malformed():
    _, h = device()
    assert h.handle(req(changes={"guarantee_bps": 10**9}), 10, T0)["error"] == cr.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=8),
                    max_leaves=20))
def test_any_json_gets_an_answer_never_an_exception(value):
    _, h = device()
    ans = h.handle(json.dumps(value).encode(), 10, T0)
    assert ans["ok"] is False and ans["error"] == cr.MALFORMED


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer(data):
    _, h = device()
    assert h.handle(data, 10, T0)["ok"] is False
