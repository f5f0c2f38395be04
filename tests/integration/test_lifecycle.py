"""Run life cycle on real namespaces: up/down leave nothing, kill -9 + cleanup --stale leave nothing, runs coexist."""
import json
import os
import signal
import subprocess
import sys

import pytest

from testbed import runs
from testbed.mesh import Mesh
from testbed.waiting import wait_until

from .leaks import assert_gone, host_view, tagged_processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")

PKTLAB = [sys.executable, "-m", "testbed.cli"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Each test gets its own run directory root, so it can count exactly what it created."""
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_up_down_grid_leaves_nothing_and_every_link_carries_traffic(home):
    before = host_view()
    mesh = Mesh.up("grid:5x5,rate=20mbit", name="grid", agents=False)
    state, run_dir = json.loads(mesh.run.journal.read_text()), mesh.run.dir
    assert len(state["nodes"]) == 25 and len(state["links"]) == 40
    assert host_view() == before, "the run changed the host namespace"
    # each link's two ends reach each other, both directions
    pings = mesh.ping_link_ends()
    assert len(pings) == 80 and all(v is not None for v in pings.values()), pings
    # shaping is real HTB on every link end
    out = mesh.exec("r3c3", "tc class show dev r3c3-eth0").stdout
    assert "htb 1:1" in out and "20Mbit" in out
    mesh.down()
    assert_gone(state, run_dir)
    assert host_view() == before


def test_kill9_mid_up_then_cleanup_stale(home):
    other = Mesh.up("line:3", name="bystander", agents=False)
    try:
        proc = subprocess.Popen(PKTLAB + ["up", "grid:12x12", "--name", "victim", "--no-agents"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = home / "victim" / "state.json"
        wait_until(lambda: journal_nodes(journal), 30, "the build under way", 0.005)    # then kill it hard
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = json.loads(journal.read_text())
        assert state["status"] == "building"
        assert runs.load_run("victim").condition() == "stale"
        assert tagged_processes(state["id"]), "the killed build should have left processes to clean"
        r = subprocess.run(PKTLAB + ["cleanup", "--stale"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert_gone(state, home / "victim")
        # the other run was not touched
        assert runs.load_run("bystander").condition() == "ready"
        assert all(v is not None for v in other.ping_link_ends().values())
    finally:
        other.down()


def test_two_runs_coexist(home):
    a = Mesh.up("ring:4", name="one", agents=False)
    try:
        b = Mesh.up("ring:4", name="two", agents=False)  # same node and interface names, separate namespaces
        try:
            assert a.run.state["prefix"] != b.run.state["prefix"]
            assert {n["netns"] for n in a.run.state["nodes"].values()}.isdisjoint(
                n["netns"] for n in b.run.state["nodes"].values())
            assert all(v is not None for v in a.ping_link_ends().values())
            # one node of run a cannot reach run b's addresses: the runs share nothing
            r = a.exec("n1", ["ping", "-6", "-c", "1", "-W", "1", b.run.state["links"][0]["b_addr"]])
            assert r.returncode != 0
        finally:
            state_b, dir_b = b.run.state, b.run.dir
            b.down()
        assert_gone(state_b, dir_b)
        assert all(v is not None for v in a.ping_link_ends().values()), "removing run two disturbed run one"
    finally:
        a.down()


def test_ctrl_c_during_up_leaves_nothing(home):
    proc = subprocess.Popen(PKTLAB + ["up", "grid:10x10", "--name", "interrupted", "--no-agents"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = home / "interrupted" / "state.json"
    state = wait_until(lambda: journal_nodes(journal), 30, "the build under way", 0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert state and state["nodes"]
    assert_gone(state, home / "interrupted")


def journal_nodes(journal):
    """The run's journal once it names nodes (None before: not written yet, or half written)."""
    try:
        state = json.loads(journal.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("nodes") else None


def test_cli_errors_are_clear(home):
    r = subprocess.run(PKTLAB + ["up", "grid:0x3"], capture_output=True, text=True)
    assert r.returncode == 2 and "grid:0x3" in r.stderr and "between 1 and" in r.stderr
    r = subprocess.run(PKTLAB + ["status", "--run", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "no run named 'nope'" in r.stderr
    assert not list(home.glob("*")) if home.exists() else True
