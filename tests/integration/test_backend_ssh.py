"""One mesh over three SSH hosts, for real: the hosts are namespaces of this machine each running its own sshd
(testbed/backends/ssh_lab.py), reached only through SSH (their ProxyCommand enters the lab's namespace: this
machine's own namespace gets no address or route). The mesh is built through Ansible, links between hosts are
kernel VXLAN, the agents' control API comes over SSH channels, and `down` must leave nothing on any host."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import runs
from testbed.faults import FaultError, apply_fault, heal
from testbed.mesh import Mesh
from testbed.runs import SERVER_PRIORITY
from testbed.scenario import Runner

from .leaks import host_view as local_view
from .remote_hosts import host_view, journal, lab, lab_missing, wait_no_traces  # noqa: F401 (lab: a fixture)

pytestmark = pytest.mark.skipif(lab_missing() is not None, reason=lab_missing() or "")

PKTLAB = [sys.executable, "-m", "testbed.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grid(lab):
    """grid:3x3 with a route server (r2c2) round robin over h1..h3; h2 is reached as a user with sudo rather than
    as root."""
    before = {h: host_view(lab, h) for h in lab.hosts}
    mesh = Mesh.up("grid:3x3,route_servers=1", name="grid", seed=4, backend="ssh",
                   hosts=lab.inventory(h2={"user": "pktlab-ops"}))
    yield mesh, before
    if mesh.run.dir.exists():
        mesh.down()


def test_nodes_are_spread_over_three_hosts_with_vxlan_between_them(grid):
    mesh, _ = grid
    state = mesh.run.state
    assert {rec["host"] for rec in state["nodes"].values()} == {"h1", "h2", "h3"}
    kinds = {rec["name"]: rec["kind"] for rec in state["links"]}
    assert "vxlan" in kinds.values() and "veth" in kinds.values(), kinds
    cross = next(rec for rec in state["links"] if rec["kind"] == "vxlan")
    out = mesh.exec(cross["a"], ["ip", "-d", "link", "show", cross["a_if"]]).stdout
    assert "vxlan id" in out and "dstport 4789" in out, out
    # the agent on h2 runs as root (sudo) but its control socket belongs to the SSH user, who forwards it
    owner = mesh.exec("r1c2", ["stat", "-c", "%U", f"{state['hosts']['h2']['dir']}/nodes/r1c2/agent.sock"]).stdout
    assert state["placement"]["r1c2"] == "h2" and owner.strip() == "pktlab-ops"
    # the route server's agent runs above the others on its host too (runs.raise_priority; the lab's hosts are
    # namespaces of this machine, so their processes are seen here)
    nice = {n: os.getpriority(os.PRIO_PROCESS, rec["pid"]) for n, rec in state["agents"].items()}
    assert all(nice["r2c2"] == nice[n] - SERVER_PRIORITY for n in nice if n != "r2c2"), nice


def test_every_node_reaches_every_other_across_hosts(grid):
    mesh, _ = grid
    place = mesh.run.state["placement"]
    pairs = [(a, b) for a in mesh.topo.nodes for b in mesh.topo.nodes if a != b and place[a] != place[b]]
    assert len(pairs) == 54
    assert all(mesh.reachability(pairs).values())
    assert mesh.ping("r1c1", "r3c3") is not None


def test_status_names_each_nodes_host(grid):
    mesh, _ = grid
    r = subprocess.run(PKTLAB + ["status", "--run", "grid", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["backend"] == "ssh" and st["nodes_alive"] == 9
    assert {n: rec["host"] for n, rec in st["nodes"].items()} == mesh.run.state["placement"]
    assert all(rec["agent"] for rec in st["nodes"].values())


def test_a_fault_on_a_cross_host_link_bites_and_heals(grid):
    mesh, _ = grid
    place = mesh.run.state["placement"]
    link = next(rec for rec in mesh.run.state["links"] if place[rec["a"]] != place[rec["b"]])
    a, b = link["a"], link["b"]
    f = apply_fault(mesh, f"link-down {a}--{b}")          # checked: a no longer reaches b over that link
    assert "no answer" in f.state["effect"]
    assert "state DOWN" in mesh.exec(a, ["ip", "-o", "link", "show", link["a_if"]]).stdout
    healed = heal(mesh, f.id)
    assert healed and "reachable" in healed[0].state["healed"]
    loss = apply_fault(mesh, f"loss {a}--{b} 40%")        # the agents' emulation, reached over SSH channels
    assert "frames dropped on" in loss.state["effect"]
    heal(mesh)
    with pytest.raises(FaultError):
        apply_fault(mesh, "link-down r1c1--r3c3")          # no such link: an error, not a traceback


def test_pktlab_exec_and_capture_reach_a_remote_node(grid, tmp_path):
    mesh, _ = grid
    r = subprocess.run(PKTLAB + ["exec", "--run", "grid", "r2c2", "--", "ip", "-6", "-o", "addr", "show", "tun0"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and mesh.ip6("r2c2").split(":")[0] in r.stdout, r.stderr
    pcap = tmp_path / "cross.pcap"
    r = subprocess.run(PKTLAB + ["capture", "--run", "grid", "r1c1:r1c2", "-o", str(pcap), "--count", "5",
                                 "--duration", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert pcap.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")   # a pcap, brought back over SSH


def test_down_leaves_nothing_on_any_host(grid, lab):
    mesh, before = grid
    state, run_dir = journal("grid"), mesh.run.dir
    view = local_view()
    mesh.down()
    wait_no_traces(state, run_dir, lab.hosts)
    assert {h: host_view(lab, h) for h in lab.hosts} == before, "a host's own namespace changed"
    assert local_view() == view, "the orchestrator's namespace changed"


def test_a_bundled_scenario_runs_unchanged_on_ssh_hosts(lab):
    result = Runner("reroute-around-link-down", mesh_options={"backend": "ssh", "hosts": lab.inventory()}).run()
    assert result.status == "passed", (result.reason, [(c.name, c.message) for c in result.checks if not c.ok])
    assert [r.name for r in runs.list_runs()] == ["lab"]        # the scenario's own mesh is gone again


def test_the_pytest_plugin_runs_the_example_tests_on_ssh_hosts(lab):
    """tests/integration/test_example_plugin.py's shared-mesh tests, unchanged, with --pktlab-hosts."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests/integration/test_example_plugin.py"), "-k", "not every_pair",
                        "--pktlab-hosts", str(lab.inventory())], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 passed" in r.stdout
