"""BitTorrent Token bids for priority on a running mesh (issue 16 item 6; topologies/market-bids.yaml): core1's
market auctions its link m1--core1 in rounds of ROUND_S: lease "up" to the highest bid, lease "opt" as the
optimistic slot. m1 bids 30 and m2 bids 20 atomic units per KiB, each over a payment channel it funds on the PKT
chain; m1 wins every round both take part in, at the clearing price 20 (m2's losing bid), and its lease is granted
at both ends of the link; m2 gets the optimistic slot once, auctioned at the reserve; c3, with no money, only says
it wants the link and gets the optimistic slot free within FREE_EVERY rounds. m1 and f1 (behind m1, no lease)
flood sink over the link at once: on the free tier they share it; once m1 holds the lease its flood gets the
guarantee. core1 bills m1 20 x the KiB the lease carried per round and m1 pays the bills over its channel: the
channel's paid total on both sides is the sum of its bills. Forged and malformed bids are refused over HTTP with a
counted reason. Needs root.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.market.bids import make_bid
from testbed import services
from testbed.labs.checking import flood

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN"),
              pytest.mark.mesh(str(Path(__file__).parent / "topologies" / "market-bids.yaml"))]

ROUND_S = 5
RESERVE = 5
FREE_EVERY = 2
CAPACITY = 1 << 21              # atomic units per bidder's channel: ~100 rounds of m1's flood at 20/KiB
FEE = 10_000
SEND_FEE = 0.0001               # PKT, b1's payment to a bidder
GUARANTEED_MIN = 1300          # kbit/s of m1's flood beside f1's with the lease (it guarantees 1500)


def lease(mesh, node: str, lease_id: str) -> dict:
    links = mesh.agent(node).call("leases")["links"].values()
    return next(x for link in links for x in link["leases"] if x["id"] == lease_id)


def fund(mesh, bidder: str) -> None:
    """Until the bidder can fund its channel: paid by the pool for its announcements, or else (announcement mining
    is slow on a loaded machine) by the block miner b1, whom every block pays."""
    need = CAPACITY + 2 * FEE

    def spendable(node):
        return mesh.wallet(node)["balance"]["spendable"]
    mesh.wait_until(lambda: spendable(bidder) >= need or spendable("b1") >= 2 * need + SEND_FEE * 2 ** 30, 180,
                    f"{bidder} or the block miner b1 earned {bidder}'s channel capacity")
    if spendable(bidder) < need:
        mesh.send("b1", bidder, 2 * need / 2 ** 30, SEND_FEE)
    mesh.wait_until(lambda: spendable(bidder) >= need, 60, f"{bidder} can fund its channel")


def rounds(mesh) -> dict:
    return mesh.market_rounds("core1", "prio")[0]


def test_the_higher_bid_wins_priority_pays_the_losing_bid_per_kib_and_a_non_bidder_gets_the_optimistic_slot(mesh):
    rec = next(r for r in mesh.run.state["links"] if {r["a"], r["b"]} == {"m1", "core1"})
    up_if = rec["a_if"] if rec["a"] == "m1" else rec["b_if"]
    fund(mesh, "m1")
    # the free tier, while m2's money comes (a flood on m1--core1 would delay m1's announcements to the pool)
    free = flood(mesh, ["m1", "f1"], "sink")
    fund(mesh, "m2")
    mesh.market_auction("core1", "prio", ["up", "opt"], 1, RESERVE, ROUND_S, FREE_EVERY)
    mesh.market_bid("m1", "core1", "prio", 30, capacity=CAPACITY)
    mesh.market_bid("m2", "core1", "prio", 20, capacity=CAPACITY)

    def contested():
        a = rounds(mesh)
        return next((r for r in a["rounds"] if r["winners"] == ["m1"] and not r["ineligible"]
                     and set(r["bids"]) == {"m1", "m2"}), None)
    won = mesh.wait_until(contested, 60, "a round both bidders took part in")
    assert won["price"] == 20 and won["holders"]["up"] == {"bidder": "m1", "price": 20}, won
    m1_key, c3_key = mesh.identity("m1").pubkey_text, mesh.identity("c3").pubkey_text
    mesh.wait_until(lambda: all(lease(mesh, n, "up")["holder"] == m1_key and not lease(mesh, n, "up")["expired"]
                                for n in ("m1", "core1")), 20, "up granted to m1 at both ends")
    # m2 is a fresh bidder: it gets the optimistic slot once, auctioned (alone: at the reserve)
    opt_m2 = mesh.wait_until(lambda: next((r for r in rounds(mesh)["rounds"] if r["optimistic"] == "m2"), None),
                             30, "m2 got the optimistic slot")
    assert opt_m2["optimistic_price"] == RESERVE, opt_m2

    mesh.market_bid("c3", "core1", "prio", 0)      # no bid: c3 only wants the link
    first = rounds(mesh)["round"] + 1              # the first round c3 can take part in
    got = mesh.wait_until(lambda: next((r for r in rounds(mesh)["rounds"] if r["optimistic"] == "c3"), None),
                          30, "c3 got the optimistic slot")
    assert got["optimistic_price"] == 0 and got["round"] <= first + FREE_EVERY, got
    mesh.wait_until(lambda: all(lease(mesh, n, "opt")["holder"] == c3_key for n in ("m1", "core1")), 20,
                    "opt granted to c3 at both ends")

    # m1's traffic crosses its lease and gets priority: billed 20 x KiB per round, paid over its channel
    mesh.route_over_lease("up", m1_key)
    mesh.wait_until(lambda: mesh.route("m1", "sink")[0][1] == f"{up_if}:up", 20, "m1's path to sink over the lease")
    prio = flood(mesh, ["m1", "f1"], "sink", seconds=10)
    # the free tier shares the link (not evenly on a loaded machine); with the lease m1 gets its guarantee and f1
    # what is left
    assert prio["m1"] >= GUARANTEED_MIN and prio["m1"] > free["m1"] and prio["f1"] < free["f1"] / 2, (free, prio)
    print("m1 beside f1, kbit/s: free tier", free, "with the lease", prio)
    end = rounds(mesh)["round"]

    def settled():          # every bidder's bills paid (m2 may hold a lease in a round m1 was not eligible for)
        a = rounds(mesh)
        accounts = [acc for acc in a["accounts"].values() if acc is not None]
        return a if a["round"] > end and a["accounts"]["m1"]["billed"] > 0 \
            and all(acc["owed"] == 0 for acc in accounts) else None
    a = mesh.wait_until(settled, 30, "m1 and m2 paid every bill")
    ended = [r for r in a["rounds"] if r["bills"] is not None]
    carried = [r for r in ended if r["holders"].get("up", {}).get("bidder") == "m1" and r["carried"]["up"] >= 10240]
    assert len(carried) >= 2, ended
    for r in carried:       # every round with both bidders in: the clearing price is m2's losing bid
        if set(r["bids"]) >= {"m1", "m2"} and not r["ineligible"]:
            assert r["price"] == 20 and r["bills"]["m1"] == 20 * (r["carried"]["up"] // 1024), r
    bills = {b: sum(r["bills"].get(b, 0) for r in ended) for b in ("m1", "m2", "c3")}
    acc = a["accounts"]
    assert acc["m1"]["billed"] == acc["m1"]["paid"] == bills["m1"] > 0, (acc, bills)
    assert acc["m2"]["billed"] == acc["m2"]["paid"] == bills["m2"] and bills["c3"] == 0 and acc["c3"] is None
    buyer = mesh.market_channel("m1", acc["m1"]["channel"])
    assert (buyer["paid"], buyer["capacity"], buyer["unit_price"]) == (bills["m1"], CAPACITY + FEE, 1), buyer
    assert all(r["winners"] == ["m1"] for r in a["rounds"] if set(r["bids"]) >= {"m1", "m2"} and not r["ineligible"])

    # bad bids over HTTP: a forged signature, a malformed body, a replayed old round
    sock = mesh.run.path("nodes", "core1", "market.sock")
    seller = bytes.fromhex(mesh.market_status("core1")["key"])
    good = make_bid(mesh.identity("m2").private_key, seller, "prio", a["round"] + 1, 99)
    forged = dict(good.body(), price=1000)
    assert services.unix_http(sock, "/bid", forged)[1]["error"] == "bad_signature"
    assert services.unix_http(sock, "/bid", {"v": 1, "type": "bid", "price": -1})[1]["error"] == "malformed"
    old = make_bid(mesh.identity("m2").private_key, seller, "prio", 2, 99).body()
    assert services.unix_http(sock, "/bid", old)[1]["error"] == "old_round"
    st = mesh.market_status("core1")
    assert st["rejected"]["api_bad_signature"] == 1 and st["rejected"]["api_malformed"] == 1, st["rejected"]
    assert rounds(mesh)["rejected"]["bad_signature"] == 1

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    got = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "rounds", "core1", "--run", mesh.run.name,
                          "--last", "3", "--json"], capture_output=True, text=True, check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)[0]
    assert shown["name"] == "prio" and len(shown["rounds"]) == 3 and shown["accounts"]["m1"]["paid"] >= bills["m1"]
    table = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "rounds", "core1", "--run",
                            mesh.run.name, "--last", "2"], capture_output=True, text=True, check=False, env=env,
                           timeout=60)
    assert table.returncode == 0 and "auction rounds" in table.stdout and "m1" in table.stdout, table
