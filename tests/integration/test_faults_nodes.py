"""Partition, node crash / pause / restart and malformed-frame faults on real namespaces, the run-wide fault
record (`pktlab faults` from another process) and the event log. One 2x2 grid shared by the module (the pytest
plugin's `mesh` fixture: it heals what a test leaves behind)."""
import json
import os
import subprocess
import sys

import pytest

from testbed import faults as F, runs
from testbed.faults import measure
from testbed.events import read_events
from testbed.waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces"),
              pytest.mark.mesh("grid:2x2", scope="module", seed=22)]


def reach(mesh, pairs):
    return mesh.reachability(pairs, count=2, timeout=1)


def test_partition_and_heal(mesh):
    across = [("r1c1", "r2c1"), ("r1c2", "r2c2"), ("r1c1", "r2c2")]
    f = F.apply_fault(mesh, "partition r1c1,r1c2")        # the first row against the rest
    assert sorted(f.state["links"]) == ["r1c1--r2c1", "r1c2--r2c2"]
    assert not any(reach(mesh, across).values())
    assert all(reach(mesh, [("r1c1", "r1c2"), ("r2c1", "r2c2")]).values())   # each side keeps itself
    F.heal(mesh, f.id)
    assert all(reach(mesh, across).values())


def test_crash_and_restart_same_identity(mesh):
    old = dict(mesh.run.state["agents"]["r2c2"])
    f = F.apply_fault(mesh, "crash r2c2")
    assert not runs.alive(old["pid"], old["start"])
    assert mesh.ping("r1c2", "r2c2", timeout=1) is None
    F.heal(mesh, f.id)
    new = mesh.run.state["agents"]["r2c2"]
    assert new["pid"] != old["pid"]
    assert mesh.agent("r2c2").call("status")["ip6"] == mesh.ip6("r2c2")
    assert mesh.ping("r1c2", "r2c2") is not None
    assert mesh.ping("r1c1", "r2c2") is not None      # the far node: its old session was renewed (heal waits)
    kinds = [e["kind"] for e in read_events(mesh.run.path("events.jsonl"), node="r2c2", kind=("fault", "heal"))]
    assert kinds[-2:] == ["fault", "heal"], kinds
    # the run monitor (one sample a second) notices the restart by the agent's uptime going back
    assert wait_until(lambda: any(e["kind"] == "agent_restart" for e in
                                    read_events(mesh.run.path("events.jsonl"), node="r2c2")), 5)


def test_pause_and_continue(mesh):
    f = F.apply_fault(mesh, "pause r2c1")
    pid = mesh.run.state["agents"]["r2c1"]["pid"]
    assert measure.proc_state(pid) == "T"
    assert mesh.ping("r1c1", "r2c1", timeout=1) is None
    F.heal(mesh, f.id)
    assert measure.proc_state(pid) in ("S", "R")
    assert mesh.ping("r1c1", "r2c1") is not None


def test_restart_is_instant(mesh):
    pid = mesh.run.state["agents"]["r1c2"]["pid"]
    f = F.apply_fault(mesh, "restart r1c2")
    assert f.instant and F.active_faults(mesh) == []
    assert mesh.run.state["agents"]["r1c2"]["pid"] != pid
    assert mesh.ping("r1c1", "r1c2") is not None


def test_malformed_frames_are_counted_drops(mesh):
    def drops(node):
        return measure.drops(mesh, node)
    before = drops("r1c2") + drops("r1c1") + drops("r2c2")
    rx_before = mesh.agent("r1c2").call("counters")["interfaces"]
    F.apply_fault(mesh, "malformed r1c1->r1c2 count=300")
    rx_after = mesh.agent("r1c2").call("counters")["interfaces"]
    ifname = next(r["b_if"] if r["b"] == "r1c2" else r["a_if"] for r in mesh.run.state["links"]
                  if {r["a"], r["b"]} == {"r1c1", "r1c2"})
    assert rx_after[ifname]["rx_packets"] - rx_before[ifname]["rx_packets"] >= 300
    assert drops("r1c2") + drops("r1c1") + drops("r2c2") - before >= 285
    assert mesh.agent("r1c2").call("status")["healthy"]
    # The frames carry r1c1's address, so r1c2's switch errors about them go to r1c1, which may reset its
    # session once (a legitimate reaction to an error for a path it uses): traffic is back within seconds.
    assert wait_until(lambda: mesh.ping("r1c1", "r2c2", timeout=1) is not None, 5)


def test_faults_listed_from_another_process(mesh):
    f1 = F.apply_fault(mesh, "delay r1c1--r1c2 10ms", check=False)
    f2 = F.apply_fault(mesh, "link-down r2c1--r2c2", check=False)
    env = dict(os.environ, PKTLAB_HOME=str(mesh.run.dir.parent))
    out = subprocess.run([sys.executable, "-m", "testbed.cli", "faults", "--run", mesh.run.name, "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(d["id"], d["kind"]) for d in listed] == [(f1.id, "delay"), (f2.id, "link-down")]
    heal = subprocess.run([sys.executable, "-m", "testbed.cli", "heal", "--run", mesh.run.name],
                          capture_output=True, text=True, env=env, timeout=120)
    assert heal.returncode == 0, heal.stderr
    assert F.active_faults(mesh) == []
    assert mesh.ping("r2c1", "r2c2") is not None


def test_bad_faults_are_refused(mesh):
    for spec, words in [("loss r1c1--r2c2 10%", "no link"), ("crash nowhere", "no node"),
                        ("partition r1c1|r1c1", "disjoint"), ("clock-skew r1c1 5s", "needs a mesh routed by route servers")]:
        with pytest.raises(F.FaultError, match=words):
            F.apply_fault(mesh, spec)
    assert F.active_faults(mesh) == []
