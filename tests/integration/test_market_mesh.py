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

from testbed import market_view, services
from testbed.market_view import MarketViewError
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


def test_a_double_issuer_is_discredited_and_a_market_that_saw_one_update_verifies_the_proof(mesh):
    """m1's market double-issues (the service setting double_issue): each update also gets a twin at its height,
    given only to its first peer, c3. c3's replicator holds both and makes the double_update proof, and gossips it;
    m2, which got only the update, verifies the proof on its own and refuses m1 from then on (its /status, `pktlab
    market issuers`, a purchase)."""
    faulty, detector, witness = "m1", "c3", "m2"
    for n in (faulty, detector, witness):
        mesh.wait_until(lambda n=n: _answers(mesh, n), 120, f"the market of {n} answers")
    cfg_path = Path(mesh.run.path("nodes", faulty, "issuer.json"))
    cfg = json.loads(cfg_path.read_text())
    assert cfg["settings"]["peers"][0] == f"http://[{mesh.ip6(detector)}]:64780"       # its first peer
    mesh.stop_service(faulty, "issuer")
    cfg["settings"]["double_issue"] = True
    cfg_path.write_text(json.dumps(cfg))
    services.status_file(mesh.run, faulty, "issuer").unlink(missing_ok=True)
    mesh.start_service(faulty, "issuer")
    mesh.wait_until(lambda: _answers(mesh, faulty), 120, f"the market of {faulty} answers again")
    key = mesh.market_status(faulty)["key"]

    offer = mesh.market_sell(faulty, "m1_lease", PRICE, 600, link="m1--r1", kbps=1000)

    def refused_by(n):
        return next((i for i in mesh.market_status(n)["issuers"] if i["issuer"] == key and i["discredited"]), None)
    mesh.wait_until(lambda: refused_by(witness), 90, f"{witness} refuses {faulty}")
    st = {n: mesh.market_status(n) for n in (faulty, detector, witness)}
    assert st[faulty]["counters"]["twin_issued"] >= 1
    assert refused_by(detector)["fault"] == refused_by(witness)["fault"] == "double_update"
    # the witness held only the update, never its twin: its copy of m1's chain is m1's own
    held = _updates(mesh, witness, key)
    assert held and held == _updates(mesh, faulty, key)[:len(held)]
    assert refused_by(witness)["updates"] == len(held)
    assert st[witness]["counters"]["discredit_accepted"] == 1
    # from then on the witness refuses m1: a purchase of its token
    with pytest.raises(MarketViewError, match="issuer_discredited"):
        mesh.market_buy(witness, faulty, offer["token"], PRICE)
    # and `pktlab market issuers` shows it
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    got = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "issuers", "--run", mesh.run.name, "--json"],
                         capture_output=True, text=True, check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    rows = {(r["market"], r["issuer"]): r for r in json.loads(got.stdout)}
    assert rows[(witness, faulty)]["discredited"] and rows[(witness, faulty)]["fault"] == "double_update"
    assert not any(r["discredited"] for r in rows.values() if r["issuer"] != faulty)


def _answers(mesh, node):
    try:
        return mesh.market_status(node)
    except (MarketViewError, OSError):
        return None


def _updates(mesh, node, issuer):
    return market_view.rpc(mesh.run, mesh.topo, node, f"/updates?issuer={issuer}&from=0")["updates"]
