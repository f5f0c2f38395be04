"""kill -9 of one node's agent on a real mesh (issue 13 item 10): the monitor writes the death as an event,
`list` and `status` show the run degraded, the restart policy brings the agent back with the same identity and
traffic through the node flows again; an agent a crash fault stopped stays down until the heal, and a run built
with --no-restart leaves a dead agent down."""
import json
import os
import signal
import subprocess
import sys

import pytest

from testbed import faults, runs
from testbed.events import AGENT_DIED, AGENT_RESTART, iter_events
from testbed.mesh import Mesh
from testbed.waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    monkeypatch.delenv(runs.TAG_VAR, raising=False)
    return tmp_path / "runs"


def events_of(mesh, kind):
    return [e for e in iter_events(mesh.run.path("events.jsonl")) if e["kind"] == kind]


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _status(mesh, node):
    try:
        return mesh.agent(node).call("status", timeout=1)
    except OSError:
        return None


def kill9(mesh, node) -> int:
    pid = runs.load_run(mesh.run.name).state["agents"][node]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_kill9_is_recorded_shown_and_repaired_with_the_same_identity(home):
    mesh = Mesh.up("line:3", name="death", seed=3)
    try:
        ip6 = mesh.ip6("n2")
        pid = kill9(mesh, "n2")
        # the monitor ticks every second and restarts after a grace of two: the run is degraded meanwhile
        wait_until(lambda: runs.load_run("death").condition() == "degraded", 5, "the run shown degraded")
        assert [x["status"] for x in json.loads(cli("list", "--json"))] == ["degraded"]
        st = json.loads(cli("status", "--json", "--run", "death"))
        assert st["agents_down"] == ["n2"] and st["status"] == "degraded"
        died = wait_until(lambda: events_of(mesh, AGENT_DIED), 5, "an agent_died event")
        assert died[0]["node"] == "n2" and died[0]["details"]["pid"] == pid
        wait_until(lambda: runs.load_run("death").condition() == "ready", 15, "the agent restarted")
        back = [e for e in events_of(mesh, AGENT_RESTART) if e["details"].get("reason") == "restart policy"]
        assert [e["node"] for e in back] == ["n2"]
        mesh = Mesh.attach("death")
        assert mesh.run.state["agents"]["n2"]["pid"] != pid
        status = wait_until(lambda: _status(mesh, "n2"), 10, "n2's agent answering")
        assert status["ip6"] == ip6                                      # same key, same address
        wait_until(lambda: mesh.ping("n1", "n3", timeout=1) is not None, 20, "traffic through n2 again")
    finally:
        mesh.down()


def test_crash_fault_and_no_restart_leave_the_agent_down(home):
    mesh = Mesh.up("line:3", name="crashed", seed=3)
    try:
        f = faults.apply_fault(mesh, "crash n2")
        wait_until(lambda: events_of(mesh, AGENT_DIED), 5, "an agent_died event")
        assert events_of(mesh, AGENT_DIED)[0]["details"]["stopped_on_purpose"] is True
        assert not wait_until(lambda: runs.load_run("crashed").condition() == "ready", 5)   # not repaired
        faults.heal(mesh, f.id)
        assert runs.load_run("crashed").condition() == "ready"
        assert not [e for e in events_of(mesh, AGENT_RESTART) if e["details"].get("reason") == "restart policy"]
    finally:
        mesh.down()
    mesh = Mesh.up("line:2", name="norestart", seed=3, restart_agents=False)
    try:
        kill9(mesh, "n1")
        wait_until(lambda: events_of(mesh, AGENT_DIED), 5, "an agent_died event")
        assert not wait_until(lambda: runs.load_run("norestart").condition() == "ready", 5)
        assert "no restart policy (up --no-restart)" in cli("status", "--run", "norestart")
    finally:
        mesh.down()
