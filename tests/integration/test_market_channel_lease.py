"""A lease bought pay-as-you-go over a payment channel on a real mesh (issue 16 item 4;
tests/integration/topologies/market-lease.yaml, as test_market_lease_traffic.py): m1's market funds a channel on the
PKT chain to core1's market and opens it; core1's market grants its lease "up" to m1 at both ends of m1--core1,
meters the bytes the lease carries there (the agents' counters) and lets unit after unit start while m1 pays
them; m1 floods sink over the lease; m1 stops paying, and core1 withdraws the lease one unit later (m1's traffic is
on the free tier again) and closes the channel on chain with the latest payment: core1 is paid exactly the units
m1 paid for, m1 gets the rest back. The exposure invariant held at every update. m1 sends below the link's rate:
its market's payments cross the same link, and a flood that fills it would delay them past the unit they pay for.
Needs root.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.backends import exec_in
from testbed.labs.checking import FLOOD_PORT, SENDER

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN"),
              pytest.mark.mesh(str(Path(__file__).parent / "topologies" / "market-lease.yaml"))]

PRICE = 1 << 30                 # the term's price: the seller's least unit price follows from it
TERM_S = 600
UNIT_BYTES = 512 * 1024         # ~4 s of m1's traffic: the payment of a unit has that long to arrive
PPS = 120                       # 900-byte datagrams: ~1 mbit/s, under the guarantee and the link's 2 mbit/s
SEND_S = 60
UNITS = 40
FEE = 10_000


def carried(mesh, node: str, lease: str) -> int:
    """The bytes the node's agent counted coming in on the lease."""
    ingress = mesh.agent(node).call("leases")["ingress"]
    return sum(c["bytes"] for k, c in ingress.items() if k.rsplit("/", 1)[1] == lease)


def up_lease(mesh, node: str) -> dict:
    """The lease "up" as the node's agent has it."""
    links = mesh.agent(node).call("leases")["links"].values()
    return next(l for link in links for l in link["leases"] if l["id"] == "up")


def test_a_lease_paid_per_unit_over_a_channel_is_withdrawn_when_the_payments_stop(mesh):
    rec = next(r for r in mesh.run.state["links"] if {r["a"], r["b"]} == {"m1", "core1"})
    up_if = rec["a_if"] if rec["a"] == "m1" else rec["b_if"]
    mesh.wait_until(lambda: mesh.wallet("m1")["balance"]["spendable"] >= PRICE // 4, 120,
                    "the buyer m1 earned a quarter PKT of mature payouts")
    offer = mesh.market_sell("core1", "up", PRICE, TERM_S)
    c = mesh.market_open("m1", "core1", offer["token"], UNITS, UNIT_BYTES, wait=60)
    assert (c["state"], c["delivered"], c["lease"]) == ("open", 1, "up"), c
    unit_price = c["unit_price"]
    assert c["capacity"] == UNITS * unit_price + FEE
    cid = c["channel"]
    m1_key = mesh.identity("m1").pubkey_text
    assert {n: (up_lease(mesh, n)["holder"], up_lease(mesh, n)["expired"]) for n in ("m1", "core1")} == \
        {"m1": (m1_key, False), "core1": (m1_key, False)}                   # granted by core1's market
    mesh.wait_until(lambda: mesh.route("m1", "sink")[0][1] == f"{up_if}:up", 20, "m1's path to sink over the lease")

    rx = exec_in(mesh.run, "sink", [sys.executable, "-m", "testbed.udp_receiver", str(FLOOD_PORT), str(SEND_S)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tx = exec_in(mesh.run, "m1", [sys.executable, "-c", SENDER, mesh.ip6("sink"), str(FLOOD_PORT), str(PPS),
                                  str(SEND_S)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # m1's traffic goes over the lease and m1 pays unit after unit as core1 reports them delivered
        views = {}

        def paid_4():
            views.update((n, mesh.market_channel(n, cid)) for n in ("m1", "core1"))
            return views["m1"]["paid_units"] >= 4
        assert mesh.wait_until(paid_4, 40), json.dumps(views)
        s = mesh.market_channel("core1", cid)
        assert s["state"] == "open" and s["violations"] == 0 and s["exposure"] <= unit_price, s

        mesh.market_stop("m1", cid)
        stopped_paid = mesh.market_channel("m1", cid)["paid_units"]
        s = mesh.wait_until(lambda: (x := mesh.market_channel("core1", cid))["state"] != "open" and x, 20,
                            "core1 withdrew the lease")
        # one unit after the payments stopped: the unit m1 may owe, never more
        assert s["reason"] == "buyer_behind", s
        # (a payment m1 signed just before it stopped may still be on its way)
        assert stopped_paid - 1 <= s["paid_units"] <= stopped_paid, (stopped_paid, s)
        assert s["delivered"] == s["paid_units"] + 1 and s["metered"] <= s["delivered"], s
        assert s["violations"] == 0 and s["checks"] >= 2 * s["paid_units"], s     # every payment and metering
        # the lease is the free tier's again: it carries (almost) nothing more of the flood still running
        assert up_lease(mesh, "m1")["expired"] and up_lease(mesh, "core1")["expired"]
        before = carried(mesh, "core1", "up")
        time.sleep(3)
        assert carried(mesh, "core1", "up") - before < UNIT_BYTES // 4
    finally:                                    # the flood has served: stop it rather than wait out SEND_S
        for p in (tx, rx):
            p.terminate()
            p.communicate(timeout=20)
    print("channel at the withdrawal:", s)

    # closed on chain with the latest payment: core1 paid exactly the units m1 paid for, m1 the rest less the fee
    s = mesh.wait_until(lambda: (x := mesh.market_channel("core1", cid))["state"] == "closed" and x, 60,
                        "core1's close of the channel mined")
    b = mesh.wait_until(lambda: (x := mesh.market_channel("m1", cid))["state"] == "closed" and x, 20,
                        "m1 saw the close")
    assert s["close_txid"] == b["close_txid"] and s["paid"] == b["paid"] == s["paid_units"] * unit_price
    txid = s["close_txid"]
    assert [c["value"] for c in mesh.coins("core1") if c["txid"] == txid] == [s["paid"]]
    assert [c["value"] for c in mesh.coins("m1") if c["txid"] == txid] == [s["capacity"] - FEE - s["paid"]]

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    got = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "channels", "--run", mesh.run.name,
                          "--json"], capture_output=True, text=True, check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    assert {(c["node"], c["role"], c["state"], c["paid"]) for c in json.loads(got.stdout)} == \
        {("core1", "seller", "closed", s["paid"]), ("m1", "buyer", "closed", s["paid"])}
