"""Leases on a mesh routed by route servers (real namespaces): the route server hands a1, whose isp holds two
leases, a path to sink over both (labels through the leases' interfaces, not the free tier's), a1's traffic
really leaves on the leases (the lease links' counters and the uplink lease's HTB class rise, the free
interfaces' do not), alone on the link it gets as much as the free tier gets alone (its packets beyond the
guarantee are neither lost nor reordered), and under a free-tier flood from f1 on the same 2 mbit/s link a1
keeps its 1 mbit/s guarantee. Needs root.

    a1 (shop) --lease a_in-- core1 (route server) --lease up: 1 mbit/s of 2 mbit/s-- sink
                      f1 --free--/
"""
import os
import re
from pathlib import Path

import pytest

from testbed.labs.checking import flood
from testbed.waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN"),
              pytest.mark.mesh(str(Path(__file__).parent / "topologies" / "leases-route-servers.yaml"))]

GUARANTEE_KBIT = 1000           # the flood measurement is in kbit/s


def ifname(mesh, node, peer):
    rec = next(r for r in mesh.run.state["links"] if {r["a"], r["b"]} == {node, peer})
    return rec["a_if"] if rec["a"] == node else rec["b_if"]


def interface_tx(mesh, node):
    return {name: c["tx_packets"] for name, c in mesh.agent(node).call("counters")["interfaces"].items()}


def test_route_server_paths_go_over_the_holders_leases_and_keep_the_guarantee(mesh):
    a_in, up = f"{ifname(mesh, 'a1', 'core1')}:a_in", f"{ifname(mesh, 'core1', 'sink')}:up"
    assert mesh.ping("a1", "sink", count=2) is not None
    hops = wait_until(lambda: (lambda h: h if [x[1] for x in h] == [a_in, up] else None)(mesh.route("a1", "sink")),
                      15, "a1's path to sink over its isp's leases")
    assert [h[0] for h in hops] == ["a1", "core1"]
    # f1 holds nothing: the free tier
    assert [h[1] for h in mesh.route("f1", "sink")] == [ifname(mesh, "f1", "core1"), ifname(mesh, "core1", "sink")]
    assert mesh.agent("core1").call("rs_status")["counters"]["path_over_leases"] >= 1

    alone = {s: flood(mesh, [s], "sink")[s] for s in ("f1", "a1")}
    print("kbit/s alone:", alone)
    assert alone["a1"] >= 0.9 * alone["f1"], alone          # the lease's excess is not lost (nor reordered)

    before = {n: interface_tx(mesh, n) for n in ("a1", "core1")}
    htb = f"tc -s class show dev {ifname(mesh, 'core1', 'sink')} classid 1:b"          # the lease "up"'s class
    sent_before = int(re.search(r"Sent (\d+) bytes", mesh.exec("core1", htb).stdout).group(1))
    got = flood(mesh, ["a1", "f1"], "sink")
    print("kbit/s under contention:", got)
    after = {n: interface_tx(mesh, n) for n in ("a1", "core1")}
    rise = {(n, i): after[n][i] - before[n].get(i, 0) for n in after for i in after[n]}
    assert rise[("a1", a_in)] > 1000 and rise[("core1", up)] > 1000, rise           # a1's flood left on the leases
    assert rise[("a1", ifname(mesh, "a1", "core1"))] < 100, rise                     # not a1's free interface
    assert int(re.search(r"Sent (\d+) bytes", mesh.exec("core1", htb).stdout).group(1)) - sent_before > 500_000

    assert got["a1"] >= 0.9 * GUARANTEE_KBIT, got                                   # the guarantee holds
    assert got["f1"] < got["a1"], got                                                # the free tier gets what is idle
    leases = mesh.agent("sink").call("leases")
    assert leases["ingress"][f"{ifname(mesh, 'sink', 'core1')}/up"]["packets"] > 1000
