"""Hostile lease configuration requests (issue 13 items 6 and 7).

Item 6: after the device's clock steps back, or the agent restarts, an old request must not be accepted again:
per signer the newest accepted timestamp (a high-water mark) and the nonces near it are kept in
node/replay_state.py, independent of the device clock.
Item 7: numbers no float can hold (400 digits) are a clear error naming the field, never an OverflowError."""
import json

import pytest

from node.replay_state import ReplayState
from node.leases import requests as cr
from node.cjdns import keys
from node.leases.table import Lease, LeaseError, LeaseTable, check_max_priority_bandwidth

HOLDER_SK = bytes(range(1, 33))
HOLDER = keys.public_key_for(HOLDER_SK)
T0 = 1_700_000_000.0


def device(replay_state=None):
    t = LeaseTable()
    t.add_link("eth1", 10000)
    t.add_lease(Lease("L1", "eth1", guarantee_bps=1_000_000, holder=HOLDER))
    t.add_lease(Lease("L2", "eth1", guarantee_bps=1_000_000, holder=HOLDER))
    return t, cr.ConfigRequestHandler(t, replay_state=replay_state)


def req(ts, nonce, lease="L1", changes=None):
    return cr.make_request(HOLDER_SK, lease, changes or {"max_priority_bandwidth": 500}, ts, bytes([nonce]) * 16)


def test_an_old_request_is_not_accepted_again_after_the_clock_steps_back():
    t, h = device()
    old = req(T0, 1)
    assert h.handle(old, 10, T0)["ok"]
    assert h.handle(req(T0 + 40, 2, changes={"max_priority_bandwidth": 9}), 50, T0 + 40)["ok"]
    # the device's clock steps back 40 s: the old request is fresh again by the clock
    answer = h.handle(old, 51, T0)
    assert answer["ok"] is False and answer["error"] == cr.STALE, answer
    assert t.find("L1").max_priority_bandwidth == 9.0               # nothing was undone


def test_an_old_request_is_not_accepted_again_after_a_restart(tmp_path):
    path = str(tmp_path / "replay.sqlite")
    t, h = device(ReplayState(path))
    old = req(T0, 1)
    assert h.handle(old, 10, T0)["ok"]
    t, h = device(ReplayState(path))                                # a new process, the same state directory
    assert h.handle(old, 10, T0 + 1)["error"] == cr.REPLAYED_NONCE
    assert t.find("L1").max_priority_bandwidth is None


def test_requests_of_one_signer_may_arrive_out_of_order_within_the_window():
    _, h = device()
    assert h.handle(req(T0 + 5, 1), 10, T0 + 5)["ok"]
    assert h.handle(req(T0, 2, lease="L2"), 10, T0 + 5)["ok"]       # made earlier, arrives later: fine
    assert h.handle(req(T0, 2, lease="L2"), 10, T0 + 5)["error"] == cr.REPLAYED_NONCE
    # older than the signer's newest accepted request by more than the window: refused whatever the clock says
    assert h.handle(req(T0 + 5 - 31, 3), 10, T0 - 20)["error"] == cr.STALE


def test_nonces_are_forgotten_by_the_signers_high_water_mark_not_by_the_device_clock():
    _, h = device()
    for i in range(10):
        assert h.handle(req(T0 + 40 * i, i + 1), 10, T0 + 40 * i)["ok"]
    state = h.replay_state
    assert sum(state.seen(cr.REPLAY_SCOPE, bytes.fromhex(json.loads(req(T0, 1))["signer"]), bytes([n]) * 16)
               for n in range(1, 11)) == 1                           # only the newest is still needed


BIG = 10**400


@pytest.mark.parametrize("value", [BIG, -BIG])
def test_huge_timestamps_are_malformed_naming_the_field(value):
    _, h = device()
    answer = h.handle(req(value, 1), 10, T0)            # signed by the holder: it gets past the signature
    assert answer["ok"] is False and answer["error"] == cr.MALFORMED and "timestamp" in answer["detail"]


@pytest.mark.parametrize("value", [BIG, -BIG, float("inf")])
def test_huge_bandwidths_are_bad_values_naming_the_field(value):
    _, h = device()
    answer = h.handle(req(T0, 1, changes={"max_priority_bandwidth": value}), 10, T0)
    assert answer["ok"] is False and answer["error"] == cr.BAD_VALUE, answer
    assert "max_priority_bandwidth" in answer["detail"]


def test_the_lease_checks_name_the_field_for_huge_numbers():
    with pytest.raises(LeaseError, match="max_priority_bandwidth"):
        check_max_priority_bandwidth(BIG)
    with pytest.raises(LeaseError, match="guarantee_bps"):
        Lease("L", "eth1", guarantee_bps=BIG)
