"""Bad hosts, for real (the SSH lab of testbed/backends/ssh_lab.py): an unreachable host, a refused key, a user
without sudo, a host that dies while the mesh is built and one that dies while it runs. Each is a clear error naming
the host, and nothing is left half-built on the other hosts."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import runs
from testbed.backends.base import BackendError
from testbed.mesh import Mesh

from .remote_hosts import host_traces, journal, kill_host, lab, lab_missing, wait_no_traces  # noqa: F401

pytestmark = pytest.mark.skipif(lab_missing() is not None, reason=lab_missing() or "")

PKTLAB = [sys.executable, "-m", "testbed.cli"]


def up_fails(inventory, name, **kw) -> str:
    with pytest.raises((BackendError, runs.RunError)) as err:
        Mesh.up("ring:4", name=name, backend="ssh", hosts=inventory, wait=30, **kw)
    assert not (runs.home() / name).exists(), "the failed run was not removed"
    return str(err.value)


def nothing_on(lab, hosts):
    for h in hosts:
        runs_dir = lab.dir / h / "root" / "runs"
        assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"{h} has a run directory"


def test_an_unreachable_host_is_named_and_nothing_is_built(lab):
    inventory = lab.inventory(hosts=["h1", "h2"], h9={})          # h9: an address where nobody answers
    msg = up_fails(inventory, "unreach")
    assert "host h9 (root@10.0.0." in msg and msg.count("host ") == 1, msg
    nothing_on(lab, ["h1", "h2"])


def test_a_refused_key_is_named(lab):
    msg = up_fails(lab.inventory(h2={"key": str(lab.dir / "wrong_ed25519")}), "wrongkey")
    assert "host h2" in msg and "was refused with key" in msg and "wrong_ed25519" in msg, msg
    nothing_on(lab, lab.hosts)


def test_a_user_without_sudo_is_named(lab):
    msg = up_fails(lab.inventory(h3={"user": "pktlab-nosudo"}), "nosudo")
    assert "host h3 (pktlab-nosudo@" in msg and "cannot become root without a password" in msg, msg
    nothing_on(lab, lab.hosts)


def test_a_bad_inventory_is_named_before_anything_starts(lab, tmp_path):
    bad = tmp_path / "inv.yaml"
    bad.write_text("hosts:\n  h1: {address: 10.0.0.1, key: /nonexistent/key}\n")
    r = subprocess.run(PKTLAB + ["up", "line:2", "--hosts", str(bad), "--name", "badinv"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "hosts.h1.key: /nonexistent/key: no such file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (runs.home() / "badinv").exists()


@pytest.mark.parametrize("moment", ["hosts building", "agents starting"])
def test_cleanup_after_the_orchestrator_is_killed(lab, moment):     # before the tests that kill hosts
    """`pktlab up` dies by SIGKILL while Ansible works on the hosts (their namespaces half built, or the agents
    starting): `pktlab cleanup` (stale runs, the default) stops the playbook it left running and removes everything
    of the run on every host and here."""
    name = "crash" + str(len(moment))
    proc = subprocess.Popen(PKTLAB + ["up", "ring:4", "--hosts", str(lab.inventory(hosts=["h1", "h2"])), "--name",
                                      name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600     # Ansible on a loaded machine
        while not _reached(name, moment):
            assert proc.poll() is None and time.monotonic() < deadline, f"`up` never got to {moment}"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    state = journal(name)
    r = subprocess.run(PKTLAB + ["cleanup"], capture_output=True, text=True)
    assert r.returncode == 0 and f"run {name} removed" in r.stdout + r.stderr, r.stdout + r.stderr
    wait_no_traces(state, runs.home() / name, ["h1", "h2"])


def _reached(name: str, moment: str) -> bool:
    """Has `up` of this run got that far on a host: a host's journal with a node in it, or an agent's output file."""
    try:
        for h in journal(name)["hosts"].values():
            d = Path(h["dir"])
            if moment == "hosts building" and json.loads((d / "state.json").read_text()).get("nodes"):
                return True
            if moment == "agents starting" and any(d.glob("nodes/*/agent.stderr")):
                return True
    except (OSError, ValueError, KeyError):     # not there yet, or being written
        pass
    return False


def test_a_host_that_dies_while_the_mesh_is_built(lab):
    """h2 dies after the namespaces are built, before the agents start: `up` names h2, h1 is clean again, and the
    run stays until `cleanup --skip-unreachable` gives h2 up."""
    def progress(step, done, total):
        if step == "namespaces" and not killed:
            killed.append(journal("midup"))
            kill_host(lab, killed[0], "h2")
    killed = []
    with pytest.raises(runs.RunError) as err:
        Mesh.up("ring:4", name="midup", backend="ssh", hosts=lab.inventory(hosts=["h1", "h2"]), progress=progress)
    msg = str(err.value)
    assert killed and "host h2" in msg and "could not clean host h2" in msg, msg
    state = journal("midup")
    assert host_traces(state, "h1") == []                     # nothing half-built on the other host
    assert state["status"] == "stopping" and "h2" in state["hosts"]
    r = subprocess.run(PKTLAB + ["cleanup", "midup", "--skip-unreachable"], capture_output=True, text=True)
    assert r.returncode == 0 and "h2" in r.stderr, r.stderr
    wait_no_traces(state, runs.home() / "midup", ["h1"])


def test_a_host_that_dies_while_the_mesh_runs(lab):
    """h3 dies under a running mesh: its nodes' control calls and commands name it, `down` cleans h1 and names
    h3, `down --skip-unreachable` finishes."""
    mesh = Mesh.up("line:4", name="midrun", backend="ssh", hosts=lab.inventory(hosts=["h1", "h3"]))
    state = journal("midrun")
    lost = next(n for n, h in state["placement"].items() if h == "h3")
    kill_host(lab, state, "h3")
    with pytest.raises(Exception) as err:
        mesh.agent(lost).call("status", timeout=15)
    assert "host h3" in str(err.value), err.value
    r = subprocess.run(PKTLAB + ["exec", "--run", "midrun", lost, "--", "true"], capture_output=True, text=True)
    assert r.returncode != 0
    with pytest.raises(runs.RunError) as err:
        mesh.down()
    assert "could not clean host h3" in str(err.value) and "h1" not in str(err.value).split("could not clean")[1]
    assert host_traces(state, "h1") == []
    mesh.down(skip_unreachable=True)
    wait_no_traces(state, mesh.run.dir, ["h1"])
