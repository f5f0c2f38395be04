"""`make demo` on a real mesh (root): every step proves its claim (each step checks it and raises StepFailed
otherwise; the figures are checked again here), the live view answers while it runs, the report's plots are
written, and nothing of the run is left afterwards (namespaces, tagged processes, run directory). A step that does
not hold stops the demo with a message naming it, and the run is removed all the same.
"""
import copy
import io
import os
import urllib.request

import pytest

from testbed import demo
from testbed.console import make_console

from .leaks import assert_gone

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]


def records(seen):
    """on_ready: what the run was (to check it is gone afterwards) and that the live view answers."""
    def note(d):
        seen["state"], seen["dir"] = copy.deepcopy(d.mesh.run.state), d.mesh.run.dir
        with urllib.request.urlopen(d.ui_url, timeout=10) as r:
            seen["ui"] = r.status
    return note


def test_the_demo_proves_every_step_and_leaves_nothing(tmp_path):
    console, seen = make_console(file=io.StringIO(), width=120), {}
    d = demo.run(tmp_path, console, name=f"demo-test-{os.getpid()}", on_ready=records(seen))
    text = console.file.getvalue()
    print(text)
    assert seen["ui"] == 200 and d.ui_url in text
    assert len(d.proofs) == len(demo.STEPS) and text.count("proved: ") == len(demo.STEPS)
    mesh, reach, path, priority, cut, chain, market, report = (p.facts for p in d.proofs)

    assert mesh["route_servers"] == ["e1", "c1"]
    assert reach["pairs"] == 72 and all(reach["reach"].values())
    assert [(node, ifname.partition(":")[2]) for node, ifname, _ in path["hops"]] == [("c2", "cloud_in"), ("ep", "")]
    before, after = priority["before"], priority["after"]
    assert 0.3 < before["share"] < 0.7 and after["share"] > 0.85, priority    # about half, then nearly all
    assert after["c2"] > 1.5 * before["c2"] and after["f1"] < 0.5 * before["f1"], priority
    x, y = cut["cut"]
    assert f"{x} -> {y}" in cut["before"] and f"{x} -> {y}" not in cut["after"] and cut["outage_s"] < 5
    assert chain["height"] >= 2 and chain["blocks"] >= 2 and chain["announcements"] > 0, chain
    free, leased = market["free"], market["leased"]
    assert market["source"] == "route servers e1, c1" and market["outpoint"], market   # found where a buyer looks
    assert leased["c4"] >= 0.85 * market["guarantee_kbit"] and leased["c4"] >= 1.3 * free["c4"], market
    assert {os.path.basename(p) for p in report["plots"]} == {"throughput.png", "reachability.png", "faults.png",
                                                              "topology.png", "chain.png"}
    assert all(os.path.getsize(p) > 1000 for p in report["plots"])
    index = (tmp_path / "report" / "index.html").read_text()
    assert "link_down" in index and index.count("PASS") == len(demo.STEPS) - 1      # the report step logs after

    assert "nothing of the run is left" in text
    assert_gone(seen["state"], seen["dir"])


def test_a_step_that_does_not_hold_stops_the_demo_with_its_reason_and_the_run_is_removed(tmp_path):
    def broken(d):
        raise demo.StepFailed("c2 got 10 % (expected nearly all)")

    console, seen = make_console(file=io.StringIO(), width=120), {}
    with pytest.raises(demo.StepFailed):
        demo.run(tmp_path, console, name=f"demo-fail-{os.getpid()}", steps=[demo.show_mesh, broken],
                 on_ready=records(seen))
    text = console.file.getvalue()
    assert "proved: " in text and "FAILED (broken): c2 got 10 % (expected nearly all)" in text
    assert "nothing of the run is left" in text
    assert_gone(seen["state"], seen["dir"])
