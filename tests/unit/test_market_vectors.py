"""What each check of the market vectors (tests/vectors/market.json, node/market/vectors.py) refuses: a vector
changed so that it is wrong fails. The files themselves: test_pktlab_vectors.py."""
import copy
import json
from pathlib import Path

import pytest

from node.conformance import run_vector

FILE = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "market.json"
ALL = json.loads(FILE.read_text())["vectors"]


@pytest.mark.parametrize("vid,change", [
    ("update1", lambda v: v.update(digest="00" * 32)),
    ("update1", lambda v: v.update(sign_random="01" * 32)),                 # another nonce: another signature
    ("update1", lambda v: v.update(encoding=v["encoding"].replace('"height":1', '"height":2'))),
    ("lock_request", lambda v: v.update(lock_id="00" * 16)),
    ("reveal_float", lambda v: v.update(error="bad_signature")),
    ("chain_replay", lambda v: v["locks"].update({k: "pending" for k in v["locks"]})),
    ("chain_replay", lambda v: v["tokens"]["lease-eth1-1"].update(lock="00" * 16)),
    ("chain_bad_transfer", lambda v: v["error"].update(height=1)),
    ("fault4_unlock_after_reveal", lambda v: v.update(fault="refused_request")),
    ("fault4_unlock_after_reveal", lambda v: v.update(quorum=3)),
    ("fault5_too_early", lambda v: v.update(error="not_a_fault")),
    ("auction_uniform_price", lambda v: v.update(price=40)),
    ("auto_bid_half", lambda v: v.update(bid=171)),
    ("channel_sequence", lambda v: v.update(paid=40)),
    ("swap_timeouts", lambda v: v.update(lock_timeout=110)),
    ("hub_channel_sequence", lambda v: v.update(close=[0, 1000])),
    ("hub_channel_sequence", lambda v: v["results"].__setitem__(1, "ok")),
])
def test_checks_can_fail(vid, change):
    v = copy.deepcopy(next(v for v in ALL if v["id"] == vid))
    change(v)
    status, detail = run_vector(v)
    assert status == "FAIL", detail
