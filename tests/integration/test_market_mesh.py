"""The bandwidth market on a real mesh (tests/integration/topologies/market-small.yaml): c3's market sells a lease
token, m1's market buys it by atomic swap; the swap's messages, the issuer chain's updates and the chain
transactions all cross the emulated links, blocks are mined by the run's pool and block miner. Checked on the
chain (the seller's wallet holds the price less its claim fee) and in both markets' issuer chain replicas."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.mesh import Mesh

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
TOPOLOGY = str(Path(__file__).parent / "topologies" / "market-small.yaml")
PRICE = 1 << 30                     # 1 PKT
FEE = 10_000


@pytest.fixture(scope="module")
def mesh():
    with Mesh.up(TOPOLOGY, name="t-market-small") as m:
        yield m


def test_a_lease_token_is_bought_by_atomic_swap_over_the_mesh(mesh):
    mesh.wait_until(lambda: mesh.wallet("m1")["balance"]["spendable"] >= 2 * PRICE, 300,
                    "the buyer m1 earned 2 PKT of mature payouts")
    assert mesh.wallet("c3")["balance"] == {"spendable": 0, "immature": 0, "burned": 0}
    offer = mesh.market_sell("c3", "c3_lease", PRICE, 600, link="c2--c3", kbps=2000)
    assert (offer["token"], offer["link"], offer["kbps"], offer["price"]) == ("c3.c3_lease", "c2--c3", 2000, PRICE)
    offers = mesh.market_offers()
    assert [(o["seller"], o["token"], o["source"]) for o in offers] == [("c3", "c3.c3_lease", "market API of c3")]
    assert offers[0]["measured"]["loss"] == 0 and offers[0]["measured"]["rtt_ms"] > 0
    done = mesh.market_buy("m1", "c3", "c3.c3_lease", wait=300)
    assert done["outcome"] == "completed", done
    seller_key, buyer_key = mesh.market_status("c3")["key"], mesh.market_status("m1")["key"]
    for node in ("c3", "m1"):
        token = next(t for t in mesh.market_tokens(node) if t["token"] == "c3.c3_lease")
        assert (token["issuer"], token["owner"], token["locked"]) == (seller_key, buyer_key, False)
    b = mesh.wallet("c3")["balance"]
    assert b["spendable"] + b["immature"] == PRICE - FEE
    mesh.wait_until(lambda: mesh.market_swap("c3", done["swap"])["outcome"], 60, "the seller saw it completed")
    # the CLI shows the same
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    cli = [sys.executable, "-m", "testbed.cli", "market"]
    got = subprocess.run(cli + ["tokens", "m1", "--run", mesh.run.name, "--json"], capture_output=True, text=True,
                         check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    assert any(t["token"] == "c3.c3_lease" and t["mine"] for t in json.loads(got.stdout))
    bad = subprocess.run(cli + ["buy", "m1", "c3", "no.such", "--run", mesh.run.name], capture_output=True,
                         text=True, check=False, env=env, timeout=60)
    assert bad.returncode != 0 and "c3 offers no token no.such" in bad.stderr and "Traceback" not in bad.stderr
