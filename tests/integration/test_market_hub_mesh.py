"""Payments routed through a hub on a real mesh (issue 16 item 4; tests/integration/topologies/hub-small.yaml): h1's
market is a hub (the topology's node attribute market: {hub: true}); the payer p1 funds a hub channel to h1, h1 one to the payee q1, each on
the PKT chain; payments are HTLCs forwarded over HTTP between the markets and settled by q1's preimage; forged and
replayed messages are refused with a counted reason; q1's market is killed (SIGKILL, by the PID the run keeps) with
an HTLC pending, which is cancelled on both hops at its expiry, and q1's restarted market takes the cancel; the
receivers close on chain: q1 gets exactly what was paid to it, p1 the rest of its capacity, and the hub earns its
fees less its chain fees, never less than nothing. A second test buys q1's lease on p1--q1 pay-as-you-go with
each unit paid through h1 (open --via). Each test about 100-150 s with its mesh (the held HTLC's expiry is 10 blocks
of 2 s; longer on a loaded machine), so marked slow; tests/unit/test_market_hubs.py is the CI-sized one (three
markets and a chain node, ~25 s). Needs root.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.market.hub_chain import HubChainState
from testbed import market_view, services
from testbed.market_view import MarketViewError

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN"),
              pytest.mark.mesh(str(Path(__file__).parent / "topologies" / "hub-small.yaml"))]

PKT = 1 << 30
FEE, HUB_FEE = 10_000, 10_000           # the markets' chain fee (their default) and the hub's fee per payment
AMOUNT = PKT // 100
CAP_IN, CAP_OUT = 10 * AMOUNT, 8 * AMOUNT
PAYMENTS = 4
LEASE_TERM_S = 60
LEASE_PRICE = PKT // 20         # a unit of 1 MiB then costs ~0.007 PKT, within the hub channels' capacities
EXPIRY = 16              # blocks to the held HTLC's expiry at p1: the least the hub forwards (2 x 6), and lag


def _market_up(mesh, node):
    def answers():
        try:
            return mesh.market_status(node)
        except (MarketViewError, OSError):
            return None
    return mesh.wait_until(answers, 120, f"the market of {node} answers")


def _start_market(mesh, node):
    services.status_file(mesh.run, node, "issuer").unlink(missing_ok=True)
    mesh.start_service(node, "issuer")
    _market_up(mesh, node)


def _total(mesh, node):
    b = mesh.wallet(node)["balance"]
    return b["spendable"] + b["immature"]


def test_payments_through_a_hub_settle_fail_at_expiry_when_the_payee_dies_and_close_on_chain(mesh):
    hub_before = _hub_up(mesh)
    cin = mesh.market_hub_open("p1", "h1", CAP_IN, wait=60)["channel"]
    cout = mesh.market_hub_open("h1", "q1", CAP_OUT, wait=60)["channel"]

    paid = [mesh.market_hub_pay("p1", "h1", "q1", AMOUNT, wait=60) for _ in range(PAYMENTS)]
    assert [p["state"] for p in paid] == ["settled"] * PAYMENTS, paid
    want = {("p1", cin): (PAYMENTS * (AMOUNT + HUB_FEE), 0), ("h1", cin): (PAYMENTS * (AMOUNT + HUB_FEE), 0),
            ("h1", cout): (PAYMENTS * AMOUNT, 0), ("q1", cout): (PAYMENTS * AMOUNT, 0)}
    views = {}

    def settled_everywhere():       # the payer's settle reaches the hub a tick after the fulfill reached the payer
        views.update(((n, c), mesh.market_hub_channel(n, c)) for n, c in want)
        return {k: (v["paid"], v["pending"]) for k, v in views.items()} == want
    assert mesh.wait_until(settled_everywhere, 30), views

    # forged and replayed messages, over HTTP to the hub's market: refused, counted, nothing changes
    st = mesh.market_hub_channel("h1", cin)
    latest = market_view.rpc(mesh.run, mesh.topo, "h1", "/status")["hub"]
    replay = _last_state_from(mesh, "h1", cin)
    tampered = HubChainState.decode(replay)
    tampered = HubChainState(tampered.channel, tampered.sender, tampered.seq + 1, tampered.paid + AMOUNT,
                             tampered.htlcs, tampered.sig, tampered.close_sig).encode()
    for data, code in ((replay, "replayed"), (tampered, "bad_close_sig"), (b'{"v":1,"type":"nope"}', "malformed")):
        got = _post(mesh, "q1", "h1", "/hub_msg", data)
        assert got["error"] == code, got
    after = market_view.rpc(mesh.run, mesh.topo, "h1", "/status")["hub"]
    for code in ("replayed", "bad_close_sig", "malformed"):
        assert after["rejected"].get(code, 0) == latest["rejected"].get(code, 0) + 1, after
    now = mesh.market_hub_channel("h1", cin)
    assert now.pop("rejected") == {"replayed": 1}, now
    assert {k: v for k, v in st.items() if k != "rejected"} == now

    # the fault: q1 holds a payment (a hold invoice) and its market is killed; at the outgoing HTLC's expiry the
    # hub cancels it and fails the incoming one back; q1's restarted market takes the cancel
    held = mesh.market_hub_pay("p1", "h1", "q1", AMOUNT, hold=True, expiry_blocks=EXPIRY)
    mesh.wait_until(lambda: mesh.market_hub_channel("q1", cout)["pending"] == 1, 60, "q1 holds the HTLC")
    mesh.stop_service("q1", "issuer", sig=signal.SIGKILL)
    try:
        failed = mesh.wait_until(lambda: (p := mesh.market_hub_payment("p1", held["hash"]))["state"] != "pending"
                                 and p, 120, "the held payment ended at p1")
    except Exception:
        for n in ("p1", "h1"):
            st = mesh.market_status(n)
            print(n, st["pkt_height"], json.dumps(st["hub"]), json.dumps(st["hub_channels"]), st["counters"])
            print(Path(mesh.run.path("nodes", n, "issuer.log")).read_text()[-3000:])
        raise
    assert (failed["state"], failed["reason"]) == ("failed", "expired"), failed
    mesh.wait_until(lambda: mesh.market_hub_channel("h1", cout)["pending"] == mesh.market_hub_channel("h1", cin)
                    ["pending"] == 0, 30, "the HTLC cancelled on both hops at the hub")
    assert mesh.market_status("h1")["hub"]["outbox"][market_view.market_url(mesh.run, "q1")] == 1
    _start_market(mesh, "q1")
    mesh.wait_until(lambda: mesh.market_hub_channel("q1", cout)["pending"] == 0, 60, "q1 took the cancel")

    # the receivers close on chain: exactly what was paid, the hub never loses
    mesh.market_hub_close("q1", cout)
    mesh.market_hub_close("h1", cin)

    def closed():
        v = {(n, c): mesh.market_hub_channel(n, c) for n, c in (("p1", cin), ("h1", cin), ("h1", cout),
                                                                ("q1", cout))}
        return v if {x["state"] for x in v.values()} == {"closed"} else None
    v = mesh.wait_until(closed, 90, "both hub channels closed on chain, seen by both ends")
    t_in, t_out = v[("h1", cin)]["close_txid"], v[("h1", cout)]["close_txid"]
    assert v[("p1", cin)]["close_txid"] == t_in and v[("q1", cout)]["close_txid"] == t_out

    def outputs(node, txid):
        return [c["value"] for c in mesh.coins(node) if c["txid"] == txid]
    assert outputs("q1", t_out) == [PAYMENTS * AMOUNT]
    assert outputs("h1", t_out) == [CAP_OUT - PAYMENTS * AMOUNT]
    assert outputs("h1", t_in) == [PAYMENTS * (AMOUNT + HUB_FEE)]
    assert outputs("p1", t_in) == [CAP_IN - PAYMENTS * (AMOUNT + HUB_FEE)]
    gain = _total(mesh, "h1") - hub_before
    assert gain == PAYMENTS * HUB_FEE - 2 * FEE >= 0        # its fees less its funding's fee and its close's fee

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    got = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "hubs", "--run", mesh.run.name, "--json"],
                         capture_output=True, text=True, check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    assert {(c["node"], c["role"], c["hub"], c["state"], c["paid"]) for c in json.loads(got.stdout)} == {
        ("p1", "sender", False, "closed", PAYMENTS * (AMOUNT + HUB_FEE)),
        ("h1", "receiver", True, "closed", PAYMENTS * (AMOUNT + HUB_FEE)),
        ("h1", "sender", True, "closed", PAYMENTS * AMOUNT), ("q1", "receiver", False, "closed", PAYMENTS * AMOUNT)}


def test_a_lease_paid_by_the_unit_through_the_hub_is_granted_and_withdrawn_at_its_end(mesh):
    """`pktlab market open ... --via HUB` (Mesh.market_open(via=)): p1 buys q1's lease "up" on p1--q1 pay-as-you-go,
    each unit paid through h1; q1's market grants the lease to p1 at both ends as for a direct channel, counts
    unit 1 paid once it fulfilled its invoice's HTLC, and withdraws the lease at the end of the term."""
    _hub_up(mesh)
    mesh.market_hub_open("p1", "h1", CAP_IN, wait=60)
    cout = mesh.market_hub_open("h1", "q1", CAP_OUT, wait=60)["channel"]
    offer = mesh.market_sell("q1", "up", LEASE_PRICE, LEASE_TERM_S)
    c = mesh.market_open("p1", "q1", offer["token"], 4, 1 << 20, via="h1", wait=60)
    assert (c["state"], c["via"], c["lease"]) == ("open", market_view.market_url(mesh.run, "h1"), "up"), c
    unit_price, cid = c["unit_price"], c["channel"]
    p1_key = mesh.identity("p1").pubkey_text
    for n in ("p1", "q1"):
        lease = _up_lease(mesh, n)
        assert (lease["holder"], lease["expired"]) == (p1_key, False), lease
    s = mesh.wait_until(lambda: (x := mesh.market_channel("q1", cid))["paid_units"] == 1 and x, 60,
                        "unit 1 paid through the hub")
    assert (s["delivered"], s["invoices"], s["violations"]) == (1, [], 0), s
    mesh.wait_until(lambda: mesh.market_hub_channel("q1", cout)["paid"] == unit_price, 30, "q1's hub channel paid")
    s = mesh.wait_until(lambda: (x := mesh.market_channel("q1", cid))["state"] == "closed" and x, LEASE_TERM_S + 60,
                        "the lease withdrawn at the term's end")
    assert (s["reason"], s["paid_units"], s["violations"]) == ("term_end", 1, 0), s
    assert _up_lease(mesh, "p1")["expired"] and _up_lease(mesh, "q1")["expired"]
    mesh.wait_until(lambda: mesh.market_channel("p1", cid)["state"] == "closed", 30, "p1 saw the withdrawal")
    assert mesh.market_channel("p1", cid)["paid"] == unit_price
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), COLUMNS="200")
    got = subprocess.run([sys.executable, "-m", "testbed.cli", "market", "channels", "--run", mesh.run.name],
                         capture_output=True, text=True, check=False, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    assert "payment channels" in got.stdout and "hub channels" in got.stdout, got.stdout


def _hub_up(mesh):
    """h1's market restarted as a hub, and funded by p1 (the block miner): its wallet's total from then on."""
    for n in ("p1", "h1", "q1"):
        _market_up(mesh, n)
    hub = mesh.market_status("h1")["hub"]
    assert hub["hub"] is True and hub["fee"] == HUB_FEE          # the topology's attrs: {market: {hub: true, ...}}
    # the hub's funds come from the payer's mining, so the hub's wallet moves only by its channels from here
    mesh.wait_until(lambda: mesh.wallet("p1")["balance"]["spendable"] >= CAP_IN + PKT // 4, 180,
                    "the block miner p1 has mature coins")
    mesh.send("p1", "h1", (CAP_OUT + 3 * FEE) / PKT, FEE / PKT)
    mesh.wait_until(lambda: mesh.wallet("h1")["balance"]["spendable"] >= CAP_OUT + 2 * FEE, 60, "h1 is funded")
    return _total(mesh, "h1")


def _up_lease(mesh, node):
    links = mesh.agent(node).call("leases")["links"].values()
    return next(l for link in links for l in link["leases"] if l["id"] == "up")


def _last_state_from(mesh, hub, channel):
    """The last hub_chain_state the hub's market accepted on the channel, from its journal (what the payer sent and
    an eavesdropper on the link saw)."""
    path = Path(mesh.run.path("nodes", hub, "market", "hubs.jsonl"))
    msgs = [r["data"] for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "msg"]
    return next(m for m in reversed(msgs) if json.loads(m)["type"] == "hub_chain_state"
                and json.loads(m)["channel"] == channel).encode()


def _post(mesh, from_node, to_node, path, data):
    """POST data to a market's API from another node's namespace, over the mesh."""
    from testbed.backends import exec_in
    url = market_view.market_url(mesh.run, to_node) + path
    code = ("import sys, urllib.request, urllib.error\n"
            "req = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method='POST')\n"
            "try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n    print(e.read().decode())\n")
    p = exec_in(mesh.run, from_node, [sys.executable, "-c", code, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
    out, err = p.communicate(data, timeout=30)
    assert p.returncode == 0, err
    return json.loads(out)
