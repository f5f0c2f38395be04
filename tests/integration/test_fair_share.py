"""Fair share switched on at run time through the control API, on real namespaces: s1's 8 TCP connections fill the
4 Mbit/s bottleneck r1 -> r2; with the kernel's FIFO s2's pings wait behind their backlog, with r1's fair share
they wait only behind s2's own packets. (The topology switch, attrs fair_share, is the bundled scenario
fair-share, run by test_scenarios_library.)"""
import os
import re
import statistics
import subprocess
import time

import pytest

from testbed.backends import exec_in
from testbed.mesh import Mesh
from testbed.topology import from_dict

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]

RATE = 4_000_000
TOPOLOGY = {"name": "fair-share-api", "seed": 23, "nodes": ["s1", "s2", "r1", "r2", "d"],
            "links": ["s1--r1", "s2--r1", {"a": "r1", "b": "r2", "rate": "4mbit", "delay": "10ms"},
                      {"a": "r2", "b": "d", "delay": "10ms"}]}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    os.environ["PKTLAB_HOME"] = str(tmp_path_factory.mktemp("runs"))
    m = Mesh.up(from_dict(TOPOLOGY, "test_fair_share.py"), name="fair-share-api")
    yield m
    m.down()
    del os.environ["PKTLAB_HOME"]


def rtts(mesh, count=25):
    r = mesh.exec("s2", ["ping", "-6", "-n", "-c", str(count), "-i", "0.2", "-W", "5", mesh.ip6("d")],
                  timeout=count * 0.2 + 30)
    return [float(x) for x in re.findall(r"time=([\d.]+)", r.stdout)]


def test_fair_share_on_and_off_through_the_control_api(mesh):
    r1 = mesh.agent("r1")
    out = next(p["ifname"] for p in r1.call("peers")["peers"] if p["peer_name"] == "r2")
    base = statistics.median(rtts(mesh, 10))
    server = exec_in(mesh.run, "d", ["iperf3", "-s", "-p", "5202", "-B", mesh.ip6("d")],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    bulk = exec_in(mesh.run, "s1", ["iperf3", "-c", mesh.ip6("d"), "-p", "5202", "-P", "8", "-M", "1200",
                                    "-t", "40"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(6)                                        # s1's connections fill the FIFO
        fifo = rtts(mesh)
        answer = r1.call("fair_share", ifname=out, rate_bps=int(RATE * 0.9))
        assert answer["links"][out]["rate_bps"] == int(RATE * 0.9)
        time.sleep(4)
        fair = rtts(mesh)
        state = r1.call("fair_share")["links"][out]
        off = r1.call("fair_share", ifname=out, rate_bps=None)
    finally:
        for p in (bulk, server):
            p.kill()
            p.wait()
    print(f"s2 -> d RTT ms: idle {base:.0f}, FIFO median {statistics.median(fifo):.0f} ({len(fifo)}/25 answered), "
          f"fair share median {statistics.median(fair):.0f} ({len(fair)}/25)")
    assert len(fair) == 25 and statistics.median(fair) < base + 60          # only its own packets ahead of it
    assert len(fifo) < 25 or statistics.median(fifo) > 3 * statistics.median(fair)
    # r1 told the two (source, destination) pairs apart and gave the bulk pair what the ping pair left
    busy = [f for f in state["flows"] if f["sent_bytes"] > 100_000]
    assert len(busy) == 1 and state["counters"]["dropped"] > 0
    assert off["links"] == {}
