"""Every cjdns.* vector of the shared public vector file passes through node.cjdns.vectors."""
from testbed.paths import VECTORS
import json

import pytest

from node.conformance import Mismatch, run_vector
from node.cjdns import vectors

PUBLIC = VECTORS
ALL = json.loads(PUBLIC.read_text())["vectors"] if PUBLIC.exists() else []
CJDNS = [v for v in ALL if v["kind"].startswith("cjdns.")]


@pytest.mark.skipif(not CJDNS, reason="shared vector file not available")
@pytest.mark.parametrize("vector", CJDNS, ids=lambda v: v["id"])
def test_public_vector(vector):
    assert run_vector(vector) == ("PASS", "")


def test_every_documented_kind_has_a_check():
    kinds = {"address", "base32", "splice", "splice_path", "unsplice", "routes_through", "is_one_hop",
             "convert_label", "build_label", "scheme_serialize", "number_compress", "switch_header",
             "switch_forward", "announcement", "auth_lookup"}
    assert set(vectors.CHECKS) == {f"cjdns.{k}" for k in kinds}


def test_checks_can_fail():
    bad = {"id": "x", "kind": "cjdns.splice", "go_here": "0x4", "via_here": "0x4", "result": "0x11"}
    with pytest.raises(Mismatch):
        vectors.CHECKS["cjdns.splice"](bad)
    bad = {"id": "y", "kind": "cjdns.switch_forward", "scheme": "V358", "source_interface": 40, "label": "0x13",
           "error": "MALFORMED_ADDRESS"}
    vectors.CHECKS["cjdns.switch_forward"](bad)
    bad["error"] = "RETURN_PATH_INVALID"
    with pytest.raises(Mismatch):
        vectors.CHECKS["cjdns.switch_forward"](bad)
    vectors.CHECKS["cjdns.base32"]({"hex": "00ff10", "text": "" + __import__("node.cjdns.keys",
                                    fromlist=["x"]).base32_encode(bytes.fromhex("00ff10"))})
    with pytest.raises(Mismatch):
        vectors.CHECKS["cjdns.address"]({"public_key": "xpr2z2s3hnr0qzpk2u121uqjv15dc335v54pccqlqj6c5p840yy0.k",
                                         "ip6": "fc00:0000:0000:0000:0000:0000:0000:0000"})
