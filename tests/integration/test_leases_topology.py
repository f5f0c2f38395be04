"""A topology that declares bandwidth leases comes up with them: `pktlab leases NODE --json` shows the leases
(both ends of each leased link), the HTB class per lease on the rated link end, paths over the holder's lease,
and a signed `pktlab lease-config` request from the holder changes a lease live (a wrong holder is rejected)."""
import json
import os
import re
import subprocess
import sys

import pytest

from node.tun_switch.lease_plane import AGENT_PACE
from testbed.topology.leases import LEASE_PORT_BASE
from testbed.mesh import Mesh

from .leaks import assert_gone

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]


def pktlab(*args, env):
    r = subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True, env=env,
                       timeout=30)
    return r


def test_declared_leases_come_up_and_show(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    env = dict(os.environ)
    mesh = Mesh.up("leases", name="leases", routing="static")  # static paths go over the leases
    state, run_dir = json.loads(mesh.run.journal.read_text()), mesh.run.dir
    try:
        r = pktlab("leases", "core1", "--json", env=env)
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        ifname = {l: next(rec["a_if"] if rec["a"] == "core1" else rec["b_if"] for rec in state["links"]
                          if {rec["a"], rec["b"]} == {"core1", peer}) for l, peer in
                  (("a_in", "a1"), ("b_in", "b1"), ("p_in", "p1"), ("uplink", "sink"))}
        got = {l["id"]: l for ll in d["links"].values() for l in ll["leases"] if l["id"] != "free"}
        assert set(got) == {"a_in", "b_in", "p_in", "uplink"}
        for lid, name in ifname.items():
            assert got[lid]["link"] == name
        assert got["a_in"]["max_priority_bandwidth"] == 2000 and got["b_in"]["max_priority_bandwidth"] == 200
        assert got["a_in"]["deprioritize_non_customer"] == 4 and not got["a_in"]["clear_customer_bit"]
        assert got["p_in"]["clear_customer_bit"] and got["p_in"]["deprioritize_non_customer"] is None
        assert got["uplink"]["guarantee_bps"] == 500_000 and 86000 < got["uplink"]["expires_in_s"] <= 86400
        assert d["links"][ifname["uplink"]]["capacity_bps"] == 2_000_000
        assert d["htb_plans"][ifname["uplink"]]["classes"][-1]["lease"] == "uplink"

        # the far end has the same lease; a1's paths go over the lease its isp holds
        far = json.loads(pktlab("leases", "a1", "--json", env=env).stdout)
        assert [l["id"] for ll in far["links"].values() for l in ll["leases"]] == ["free", "a_in"]
        a1_cfg = json.loads(mesh.run.path("nodes", "a1", "agent.json").read_text())
        port = a1_cfg["leases"]["links"][next(iter(a1_cfg["leases"]["links"]))]["leases"][0]["udp_port"]
        assert port == LEASE_PORT_BASE
        a_in_if = a1_cfg["leases"]["links"][next(iter(a1_cfg["leases"]["links"]))]["leases"][0]["interface"]
        assert mesh.ping("a1", "sink", count=2) is not None
        d = json.loads(pktlab("leases", "core1", "--json", env=env).stdout)
        assert d["ingress"][f"{ifname['a_in']}/a_in"]["packets"] > 0     # a1 -> core1 came in over a_in
        assert d["egress"][ifname["uplink"]]["pace_bps"] == 2_000_000 * AGENT_PACE       # the agent's pace
        assert a_in_if == 256

        # HTB: one class per lease on core1's rated end, the free lease as default
        tc = mesh.exec("core1", f"tc class show dev {ifname['uplink']}").stdout
        assert "1:a" in tc and "1:b" in tc, tc
        # backbone holds the uplink lease: core1's packets to sink leave from its socket, SO_PRIORITY = class 1:b
        assert mesh.ping("core1", "sink", count=3) is not None
        stats = mesh.exec("core1", f"tc -s class show dev {ifname['uplink']} classid 1:b").stdout
        assert int(re.search(r"Sent (\d+) bytes", stats).group(1)) > 0, stats

        # the holder (shopa) changes its lease; another isp's key is rejected
        r = pktlab("lease-config", "core1", "a_in", "max_priority_bandwidth=500", "--holder", "shopa", "--json",
                   env=env)
        assert r.returncode == 0 and json.loads(r.stdout)["lease"]["max_priority_bandwidth"] == 500, r.stderr
        r = pktlab("lease-config", "core1", "a_in", "max_priority_bandwidth=1", "--holder", "shopb", env=env)
        assert r.returncode == 1 and "wrong_key" in r.stderr, r.stderr
    finally:
        mesh.down()
    assert_gone(state, run_dir)
