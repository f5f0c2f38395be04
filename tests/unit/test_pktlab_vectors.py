"""pktlab's own vector files (tests/vectors/market.json, offers.json) through the conformance runner: every vector
passes, every kind has a check, `python -m node.conformance FILE` passes them all, and each file is what its
generator writes. What each check refuses is tested beside its module (test_market_vectors.py,
test_offer_vectors.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.conformance import run_vector
from node.market import vectors as market_vectors
from node.route_server import vectors as offer_vectors

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
FILES = {"market": market_vectors, "offers": offer_vectors}      # file stem -> the module with its checks
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _vectors(stem: str) -> list[dict]:
    return json.loads((VECTORS / f"{stem}.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", [v for stem in FILES for v in _vectors(stem)], ids=lambda v: v["id"])
def test_vector(vector):
    assert run_vector(vector) == ("PASS", "")


@pytest.mark.parametrize("stem", FILES)
def test_every_kind_has_vectors_and_a_check(stem):
    assert {v["kind"] for v in _vectors(stem)} == set(FILES[stem].CHECKS)


@pytest.mark.parametrize("stem", FILES)
def test_the_runner_runs_the_file_and_the_file_is_what_the_generator_writes(stem, tmp_path):
    path, n = VECTORS / f"{stem}.json", len(_vectors(stem))
    r = subprocess.run([sys.executable, "-m", "node.conformance", str(path)], capture_output=True, text=True,
                       env=ENV, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith(f"{n} passed, 0 failed"), r.stdout[-500:]
    out = tmp_path / path.name
    subprocess.run([sys.executable, str(VECTORS / f"make_{stem}.py"), str(out)], check=True, env=ENV,
                   capture_output=True)
    assert out.read_bytes() == path.read_bytes()
