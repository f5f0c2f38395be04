"""The newcomer's command line on a real mesh (issue 15 items 6-9): names resolve inside the nodes, ping/pingall/
iperf/exec say what they measured, Ctrl-C never ends in a traceback or a false "nothing is left", rs errors are
errors, a failed up keeps its evidence, a second up says it made NAME-2, reports outlive `down`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import runs
from testbed.mesh import Mesh

from .leaks import assert_gone

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("newcomer")
    e = dict(os.environ, PKTLAB_HOME=str(base / "runs"), PKTLAB_RECORDS=str(base / "records"),
             PYTHONPATH=str(ROOT))
    e.pop(runs.TAG_VAR, None)
    return e


def pktlab(env, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def tri(env):
    r = pktlab(env, "up", "triangle", "--name", "tri")
    assert r.returncode == 0, r.stderr
    yield dict(env, **{runs.TAG_VAR: "tri"})
    pktlab(env, "down", "--run", "tri")


def test_names_resolve_inside_every_node_and_not_on_the_host(tri):
    hosts_before = Path("/etc/hosts").read_text()
    r = pktlab(tri, "exec", "a", "ping -6 -n -c 1 -W 2 c | head -2")      # one argument: a shell command line
    assert r.returncode == 0 and "PING c(" in r.stdout and "64 bytes from" in r.stdout, r.stdout + r.stderr
    r = pktlab(tri, "exec", "--all", "getent hosts a b c | wc -l")
    assert r.stdout.splitlines() == ["a: 3", "b: 3", "c: 3"], r.stdout + r.stderr
    assert Path("/etc/hosts").read_text() == hosts_before


def test_ping_pingall_iperf_say_what_they_measured(tri):
    r = pktlab(tri, "ping", "a", "c", "-c", "3")
    assert r.returncode == 0 and "3 sent, 3 received, 0% loss, rtt min/avg/max " in r.stdout, r.stdout + r.stderr
    r = pktlab(tri, "pingall", "-c", "2")
    assert r.returncode == 0 and "6 of 6 pairs without loss" in r.stdout, r.stdout + r.stderr
    assert "from \\ to" in r.stdout
    r = pktlab(tri, "iperf", "a", "b", "-t", "2")
    assert r.returncode == 0 and "a -> b: " in r.stdout and "Mbit/s" in r.stdout, r.stdout + r.stderr
    assert 5 < float(r.stdout.split("a -> b: ")[1].split()[0]) < 11        # the link's 10mbit


def test_unknown_and_wrong_nodes_are_errors(tri):
    for args, shown in ((("ping", "a", "zz"), "run tri has no node 'zz'"),
                        (("rs", "zz"), "zz is no node of it in run tri; its route servers: a"),
                        (("rs", "b"), "b is not a route server in run tri; its route servers: a"),
                        (("exec", "zz", "true"), "run tri has no node 'zz'")):
        r = pktlab(tri, *args)
        assert r.returncode == 2 and shown in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert pktlab(tri, "rs", "a").returncode == 0


def test_mesh_ping_with_an_unknown_node(tri, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", tri["PKTLAB_HOME"])
    mesh = Mesh.attach("tri")
    with pytest.raises(runs.RunError, match="run tri has no node 'n9'"):
        mesh.ping("a", "n9")
    with pytest.raises(runs.RunError, match="run tri has no node 'n9'"):
        mesh.ping("n9", "a")


@pytest.mark.parametrize("argv", [["ping", "a", "c", "-c", "50"], ["exec", "a", "sleep 30"]])
def test_ctrl_c_during_ping_or_exec_leaves_the_run_alone(tri, argv):
    p = subprocess.Popen([sys.executable, "-m", "testbed.cli", *argv], env=tri, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.5)
    os.killpg(p.pid, signal.SIGINT)            # what the terminal does: the whole foreground group
    out, err = p.communicate(timeout=30)
    assert "Traceback" not in err and "nothing of this run is left behind" not in err, err
    assert p.returncode != 0
    st = json.loads(pktlab(tri, "status", "--json").stdout)
    assert st["status"] == "ready" and st["nodes_alive"] == 3


def test_capture_to_stdout_into_dissect(tri, tmp_path):
    """`capture -o -` writes the pcap to stdout (it wrote a file named `-`), `dissect -` reads it and names the
    nodes, with times from the first packet; `dissect -o FILE` writes the dissection to a file."""
    r = subprocess.run(f"{sys.executable} -m testbed.cli capture a:b -o - --count 6 --duration 20 | "
                       f"{sys.executable} -m testbed.cli dissect - -o {tmp_path / 'out.txt'}", shell=True,
                       env=tri, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "-").exists()
    text = (tmp_path / "out.txt").read_text()
    # the peer links carry link sessions (the default): their frames are link data, no switch header in clear
    assert text.startswith("#1 +0.000000 ") and "cjdns switch:" not in text, text[:500]
    assert "link data:" in text or "link handshake:" in text, text[:500]
    assert "a:a-eth0 [" in text and "b:b-eth0 [" in text


def test_status_shows_roles_isp_peers_and_faults(tri):
    r = pktlab(tri, "fault", "loss", "a-b", "20%")
    assert r.returncode == 0, r.stderr
    assert "expected 20.0% ±" in r.stderr                 # the check states its tolerance
    st = json.loads(pktlab(tri, "status", "--json").stdout)
    assert st["nodes"]["a"]["roles"] == ["router", "route_server"] and st["nodes"]["a"]["peers"] == ["b", "c"]
    assert [f["description"] for f in st["faults"]] == ["loss a-b 20%"]
    text = pktlab(tri, "status").stdout
    assert "route_server" in text and "active faults: f1 loss a-b 20%" in text
    assert pktlab(tri, "heal").returncode == 0


def test_a_failed_fault_gives_its_id_back_and_says_why(tri):
    r = pktlab(tri, "fault", "crash", "c")
    assert r.returncode == 0
    crash = int(r.stderr.split()[0][1:])
    r = pktlab(tri, "fault", "delay", "b-c", "50ms")          # c's agent cannot take the change
    assert r.returncode == 1 and "set_link on c:c-eth0" in r.stderr
    assert f"(other active faults: f{crash} crash c; agents down: c)" in r.stderr
    r = pktlab(tri, "fault", "delay", "b:c", "50ms")          # b's end takes it, but nothing answers across
    assert r.returncode == 1
    assert "no RTT measured across b--c" in r.stderr
    assert f"(other active faults: f{crash} crash c; agents down: c)" in r.stderr
    assert "pktlab fault --no-check delay b:c 50ms" in r.stderr and "{" not in r.stderr
    r = pktlab(tri, "fault", "link-down", "a-b", "--no-check")
    assert r.returncode == 0 and r.stderr.startswith(f"f{crash + 1} link-down a-b"), r.stderr   # the failed kept none
    assert pktlab(tri, "heal").returncode == 0


def test_second_up_says_it_made_name_2_and_down_all_refuses_run(env):
    r1 = pktlab(env, "up", "line:2", "--no-agents")
    r2 = pktlab(env, "up", "line:2", "--no-agents")
    try:
        assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
        assert "a run named line-2 exists already, so this one is line-2-2" in r2.stderr
        r = pktlab(env, "down", "--run", "line-2", "--all")
        assert r.returncode == 2 and "not allowed with argument" in r.stderr
        assert {x["run"] for x in json.loads(pktlab(env, "list", "--json").stdout)} >= {"line-2", "line-2-2"}
    finally:
        pktlab(env, "down", "--run", "line-2")
        pktlab(env, "down", "--run", "line-2-2")


@pytest.mark.parametrize("delay", [0.1, 0.3, 1.0])
def test_ctrl_c_during_up(env, delay):
    p = subprocess.Popen([sys.executable, "-m", "testbed.cli", "up", "grid:3x3", "--name", "intr"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(delay)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert not (Path(env["PKTLAB_HOME"]) / "intr").exists()
    # the signal can land while the interpreter itself starts, before any of our code runs: then CPython dies by
    # it (no output) or reports a fatal error importing its own site module, and nothing was built
    if p.returncode == -signal.SIGINT or err.startswith("Fatal Python error: init_import_site"):
        assert "testbed" not in err, err
        return
    assert "Traceback" not in err, err
    # exit 130, or ended by the SIGINT itself once the message is out (CPython does that when the interrupt hit an
    # import): a shell shows 130 for both
    assert p.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines()[-1] in ("pktlab: interrupted",
                                            "pktlab: interrupted while building run intr: removed, nothing of it "
                                            "is left behind")


def test_a_failed_up_keeps_its_evidence(env, monkeypatch, capsys):
    monkeypatch.setenv("PKTLAB_HOME", env["PKTLAB_HOME"])
    monkeypatch.setenv("PKTLAB_RECORDS", env["PKTLAB_RECORDS"])

    def unreachable(self, progress, wait):
        raise runs.RunError("3 of 6 pairs unreachable after 1 s: a->b")   # as wait_reachable says it
    monkeypatch.setattr(Mesh, "wait_reachable", unreachable)
    with pytest.raises(runs.RunError) as e:
        Mesh.up("triangle", name="fails")
    kept = Path(str(e.value).split("kept in ")[1])
    assert "3 of 6 pairs unreachable" in str(e.value) and "run fails was removed" in str(e.value)
    assert kept.parent == Path(env["PKTLAB_RECORDS"]) / "failed"
    assert (kept / "state.json").is_file() and (kept / "nodes" / "a" / "agent.log").is_file()
    assert not (Path(env["PKTLAB_HOME"]) / "fails").exists()


def test_report_outlives_down(env):
    r = pktlab(env, "up", "line:2", "--name", "rep")
    assert r.returncode == 0, r.stderr
    env = dict(env, **{runs.TAG_VAR: "rep"})
    r = pktlab(env, "report")
    assert r.returncode == 0, r.stderr
    index = Path(r.stdout.split("report written to ")[1].strip())
    assert index.parent == Path(env["PKTLAB_RECORDS"]) / "reports" / "rep"
    state = json.loads((Path(env["PKTLAB_HOME"]) / "rep" / "state.json").read_text())
    assert pktlab(env, "down").returncode == 0
    assert_gone(state, Path(env["PKTLAB_HOME"]) / "rep")
    assert index.is_file()


def test_run_keep_says_which_run_it_kept(env):
    scenario = Path(env["PKTLAB_RECORDS"]).parent / "k.yaml"
    scenario.write_text("name: keepme\ntopology: line:2\ntimeline:\n  - {at: 0, expect: {reachable: {from: n1, "
                        "to: n2}}}\n")
    r = pktlab(env, "run", str(scenario), "--keep")
    try:
        assert r.returncode == 0, r.stderr
        assert "kept run line-2: pktlab status --run line-2" in r.stderr
    finally:
        pktlab(env, "down", "--run", "line-2")
