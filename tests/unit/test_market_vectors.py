"""pktlab's market vectors (tests/vectors/market.json) through the conformance runner (node/market/vectors.py)."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.conformance import run_vector
from node.market import vectors

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "tests" / "vectors" / "market.json"
ALL = json.loads(FILE.read_text())["vectors"]


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v["id"])
def test_vector(vector):
    assert run_vector(vector) == ("PASS", "")


def test_every_kind_has_vectors_and_a_check():
    assert {v["kind"] for v in ALL} == set(vectors.CHECKS)


def test_the_runner_runs_the_file():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "node.conformance", str(FILE)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith(f"{len(ALL)} passed, 0 failed"), r.stdout[-500:]


def test_the_file_is_what_the_generator_writes(tmp_path):
    out = tmp_path / "market.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "vectors" / "make_market.py"), str(out)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert out.read_bytes() == FILE.read_bytes()


def _by_id(vid):
    return copy.deepcopy(next(v for v in ALL if v["id"] == vid))


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
    v = _by_id(vid)
    change(v)
    status, detail = run_vector(v)
    assert status == "FAIL", detail
