"""pktlab's offer vectors (tests/vectors/offers.json) through the conformance runner (node/route_server/vectors.py)."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.conformance import run_vector
from node.route_server import vectors

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "tests" / "vectors" / "offers.json"
ALL = json.loads(FILE.read_text())["vectors"]


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v["id"])
def test_vector(vector):
    assert run_vector(vector) == ("PASS", "")


def test_every_kind_has_vectors_and_a_check():
    assert {v["kind"] for v in ALL} == set(vectors.CHECKS)


def test_the_runner_runs_the_file_and_the_file_is_what_the_generator_writes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "node.conformance", str(FILE)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith(f"{len(ALL)} passed, 0 failed"), r.stdout[-500:]
    out = tmp_path / "offers.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "vectors" / "make_offers.py"), str(out)], check=True,
                   env=env, capture_output=True)
    assert out.read_bytes() == FILE.read_bytes()


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
