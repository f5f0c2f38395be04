"""What a newcomer trips over on the command line, without a mesh (issue 15 items 3, 5, 6, 9, 10): shell traps in
the fault syntax, which run a command means, roles that do nothing yet, tracebacks, dissect's output."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.all import IPv6, UDP, Raw, wrpcap

from node.cjdns import switch_header as SH
from testbed import cli, runs
from testbed import faults as F
from testbed.faults.link import Partition
from testbed.topology import RUNNING_ROLES, load
from testbed.topology import model

ROOT = Path(__file__).resolve().parents[2]
PKTLAB = f"{sys.executable} -m testbed.cli"
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def shell(command: str, cwd) -> subprocess.CompletedProcess:
    """A command line through a real shell, as a user types it."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60)


# -- shell traps (item 3) -------------------------------------------------------------------------------------

def test_unquoted_one_way_link_is_named_with_the_stray_file(tmp_path):
    r = shell(f"{PKTLAB} fault loss n1->n2 10%", tmp_path)
    assert (tmp_path / "n2").exists()                     # what the shell did: pktlab's stdout went into n2
    assert r.returncode == 1
    assert "'n1-' looks cut by the shell" in r.stderr
    assert f"the shell made the file {tmp_path / 'n2'}: remove it" in r.stderr
    assert "n1:NODE (one way)" in r.stderr and "Traceback" not in r.stderr


def test_unquoted_partition_piped_away_is_named(tmp_path):
    r = shell(f"{PKTLAB} fault partition a,b|c,d", tmp_path)
    assert "partition a,b has one side and pktlab's output goes into a pipe" in r.stderr
    assert "a,b/c,d (no quoting needed)" in r.stderr


@pytest.mark.parametrize("spec, parsed", [("n1--n2", ("n1", "n2", False)), ("n1-n2", ("n1", "n2", False)),
                                          ("n1->n2", ("n1", "n2", True)), ("n1:n2", ("n1", "n2", True)),
                                          (" r1c1 -- r1c2 ", ("r1c1", "r1c2", False))])
def test_link_forms(spec, parsed):
    assert F.parse_link(spec) == parsed


@pytest.mark.parametrize("spec, shown", [("n1-", "looks cut by the shell"), ("n1", "write it as a--b or a-b"),
                                         ("n1--n1", "two different nodes"), ("n1-n2-n3", "write it as")])
def test_bad_link_forms(spec, shown):
    with pytest.raises(F.FaultError, match=shown):
        F.parse_link(spec)


@pytest.mark.parametrize("groups", ["a,b|c,d", "a,b/c,d", " a , b / c,d "])
def test_partition_sides_with_or_without_a_pipe_sign(groups):
    assert Partition(groups=groups).split(["a", "b", "c", "d", "e"]) == ({"a", "b"}, {"c", "d"})


def test_help_quotes_what_the_shell_would_cut(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fault", "--help"])
    text = capsys.readouterr().out
    assert "'n1->n2'" in text and "'a,b|c,d'" in text and "a,b/c,d" in text and "n1:n2" in text


# -- which run a command means (item 6) ---------------------------------------------------------------------------

def fake_run(home: Path, name: str, shell_of=None, created=0.0):
    (home / name).mkdir(parents=True)
    (home / name / "state.json").write_text(json.dumps(
        {"name": name, "id": f"{name}.abc", "status": "ready", "created": created, "shell": shell_of,
         "nodes": {}, "agents": {}, "links": []}))


def test_the_current_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path))
    monkeypatch.delenv(runs.TAG_VAR, raising=False)
    with pytest.raises(runs.RunError, match="no pktlab run exists"):
        runs.current_run_name()
    fake_run(tmp_path, "theirs", {"pid": 1, "start": 0})
    assert runs.current_run_name() == ("theirs", "the only run")
    fake_run(tmp_path, "other", None)
    with pytest.raises(runs.RunError, match=r"several runs exist \(other, theirs\) and none was started from this "
                                            r"shell: choose one with --run NAME"):
        runs.current_run_name()
    me = runs.this_shell()
    if me is None:      # no shell above this pytest (detached from its terminal): stand one in for it
        me = {"pid": os.getpid(), "start": runs.proc_start_time(os.getpid())}
        monkeypatch.setattr(runs, "this_shell", lambda: me)
    fake_run(tmp_path, "mine-old", me, created=1.0)
    fake_run(tmp_path, "mine", me, created=2.0)
    assert runs.current_run_name() == ("mine", "the last run started from this shell")
    monkeypatch.setenv(runs.TAG_VAR, "other.abc")  # inside a node's shell: the run's id
    assert runs.current_run_name() == ("other", f"${runs.TAG_VAR}")
    assert runs.pick_run("theirs").name == "theirs"


def test_run_names_cannot_leave_the_runs_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "home"))
    with pytest.raises(runs.RunError, match="no run named '../x'"):
        runs.load_run("../x")


def test_all_is_never_combined_with_run(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["down", "--run", "x", "--all"])
    assert e.value.code == 2 and "not allowed with argument --run" in capsys.readouterr().err


def test_report_takes_run_like_everything_else(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path))
    assert cli.main(["report", "--run", "nope"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "gone")]) == 2
    assert "for a running run use --run NAME" in capsys.readouterr().err


# -- roles with no effect yet (item 5) ------------------------------------------------------------------------

ISSUER = "triangle-issuer.yaml"     # every role runs now: the tests take the issuer role out of the registry


def issuer_topology(tmp_path) -> str:
    path = tmp_path / ISSUER
    path.write_text("nodes: {a: {roles: [router, issuer]}, b: {roles: [issuer, miner]}, c: {}}\n"
                    "links: [a--b, b--c, c--a]\n")
    return str(path)


def test_validate_says_which_roles_have_no_effect_yet(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(model.RUNNING_ROLES, "issuer")
    assert cli.main(["validate", issuer_topology(tmp_path)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "roles with no effect yet (a run acts only on router, route_server, chain, pool, miner, " \
           "block_miner): issuer (a, b)" in err


def test_registering_a_role_silences_it(tmp_path, monkeypatch):
    assert not any("no effect" in w for w in load(issuer_topology(tmp_path)).warnings)     # the market runs it
    monkeypatch.delitem(model.RUNNING_ROLES, "issuer")
    assert any("issuer (a, b)" in w for w in load(issuer_topology(tmp_path)).warnings)
    assert not any("no effect" in w for w in load("default").warnings)     # its chain roles all run
    monkeypatch.setitem(model.RUNNING_ROLES, "issuer", "issues tokens")
    assert not any("no effect" in w for w in load(issuer_topology(tmp_path)).warnings)
    monkeypatch.setattr(model, "RUNNING_ROLES", {})
    assert any("router (a, c)" in w for w in load(issuer_topology(tmp_path)).warnings)


def test_demo_shows_only_roles_that_run():
    from testbed import demo
    assert model.idle_roles(load(demo.TOPOLOGY).nodes.values()) == {}    # its first step refuses any other
    assert set(RUNNING_ROLES) <= set(model.ROLES)


# -- tracebacks (item 9) ---------------------------------------------------------------------------------------

def test_dissect_of_a_file_that_is_no_capture(tmp_path, capsys):
    bad = tmp_path / "x.pcap"
    bad.write_text("hello")
    assert cli.main(["dissect", str(bad)]) == 2
    assert "not a pcap or pcapng capture" in capsys.readouterr().err


def test_graph_into_a_missing_folder(tmp_path, capsys):
    assert cli.main(["graph", "triangle", "-o", str(tmp_path / "no" / "t.png")]) == 2
    assert f"no directory {tmp_path / 'no'}" in capsys.readouterr().err


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.3])
def test_ctrl_c_while_the_command_line_loads(delay):
    p = subprocess.Popen([sys.executable, "-m", "testbed.cli", "validate", "grid:20x20"], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    # on a loaded machine the signal can land while the interpreter itself starts, before any of our code runs:
    # then CPython dies by it (no output) or reports a fatal error importing its own site module
    if p.returncode == -signal.SIGINT or err.startswith("Fatal Python error: init_import_site"):
        assert "testbed" not in err
        return
    assert "Traceback" not in err
    assert p.returncode in (0, 130)               # done before the signal, or interrupted with one line
    if p.returncode == 130:
        assert err.strip() == "pktlab: interrupted"


# -- dissect (item 10) -------------------------------------------------------------------------------------------

def test_dissect_relative_times_names_and_lease_ports(tmp_path, capsys):
    frame = SH.SwitchHeader(0x13).pack() + b"\xff\xff\xff\xff" + bytes(8)
    pkts = [IPv6(src="fd00:1::1", dst="fd00:1::2") / UDP(sport=7100, dport=7100) / Raw(frame),
            IPv6(src="fd00:1::2", dst="fd00:1::1") / UDP(sport=7301, dport=7301) / Raw(frame)]
    pkts[0].time, pkts[1].time = 1700000000.0, 1700000000.25
    pcap = tmp_path / "c.pcap"
    wrpcap(str(pcap), pkts)
    (tmp_path / "c.pcap.names.json").write_text(json.dumps({"fd00:1::1": "n1:n1-eth0", "fd00:1::2": "n2:n2-eth0"}))
    assert cli.main(["dissect", "--plain-links", str(pcap)]) == 0      # plaintext switch frames
    text = capsys.readouterr().out
    assert "#1 +0.000000 n1:n1-eth0 [fd00:1::1]:7100 -> n2:n2-eth0 [fd00:1::2]:7100" in text
    assert "#2 +0.250000 n2:n2-eth0 [fd00:1::2]:7301" in text
    assert text.count("cjdns switch: label=0000.0000.0000.0013") == 2    # the lease's port is a peer link too
    assert cli.main(["dissect", "--plain-links", "--absolute", str(pcap)]) == 0
    assert "#2 1700000000.250000" in capsys.readouterr().out
