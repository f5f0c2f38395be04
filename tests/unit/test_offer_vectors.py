"""What each check of the offer vectors (tests/vectors/offers.json, node/route_server/vectors.py) refuses: a
vector changed so that it is wrong fails. The files themselves: test_pktlab_vectors.py."""
import copy
import json
from pathlib import Path

import pytest

from node.conformance import run_vector

FILE = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "offers.json"
ALL = json.loads(FILE.read_text())["vectors"]


@pytest.mark.parametrize("vid,change", [
    ("offer_entity", lambda v: v.update(entity=v["entity"][:-2] + "00")),
    ("offer_entity", lambda v: v.update(kbps=1501)),
    ("offer_entity_bad_name", lambda v: v.update(token="m1.up")),            # valid now: encoded, not refused
    ("offers_kept", lambda v: v.update(now_ms=v["now_ms"] + 600_000)),         # every term over
    ("offers_refused", lambda v: v["refused"].update(forged=0)),
    ("offers_too_many", lambda v: v["offers"].pop()),
    ("offers_bad_signature", lambda v: v.update(rejected="malformed")),
])
def test_checks_can_fail(vid, change):
    v = copy.deepcopy(next(v for v in ALL if v["id"] == vid))
    change(v)
    status, detail = run_vector(v)
    assert status == "FAIL", detail
