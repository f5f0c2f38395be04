"""Route servers on real namespaces: agents without any path table learn their paths from a route-server node
found through GETSNODE; route server messages travel inside CryptoAuth sessions over the veth links. ping6 between
the ends of a line goes through. Needs root."""
import json
import os
import re
from pathlib import Path

import pytest

from testbed.runs import SERVER_PRIORITY
from testbed.waiting import wait_until

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]

LINE = str(Path(__file__).parent / "topologies" / "route-server-line.yaml")


@pytest.mark.mesh(LINE)
def test_line_learns_paths_from_a_route_server_node(mesh):
    nodes = ["n1", "n2", "n3", "n4"]
    assert all(not json.loads(mesh.run.path("nodes", n, "agent.json").read_text())["paths"] for n in nodes)
    for n in nodes:
        wait_until(lambda n=n: mesh.agent(n).call("routes")["route_server"] == mesh.ip6("n2"), 15,
                   f"{n} uses the route server")
    status = wait_until(lambda: (lambda s: s if s["nodes"] == 4 and s["edges"] == 6 else None)(
        mesh.agent("n2").call("rs_status")), 15, "the route server knows the line")
    assert status["announcements_accepted"] >= 4
    r = mesh.exec("n1", ["ping", "-6", "-c", "6", "-i", "0.3", "-W", "2", mesh.ip6("n4")], timeout=30)
    received = int(re.search(r"(\d+) received", r.stdout).group(1))
    assert received >= 4, r.stdout
    routes = mesh.agent("n1").call("routes")
    assert mesh.ip6("n4") in routes["paths"]
    hops = mesh.agent("n2").call("rs_route", src=mesh.ip6("n1"), dst=mesh.ip6("n4"))
    assert [h["node"] for h in hops["hops"]] == [mesh.ip6(n) for n in nodes[:3]]
    assert hops["label"] == routes["paths"][mesh.ip6("n4")]["label"]
    # the route server's process runs at a higher priority than the other agents (runs.raise_priority)
    nice = {n: os.getpriority(os.PRIO_PROCESS, mesh.run.state["agents"][n]["pid"]) for n in nodes}
    assert all(nice["n2"] == nice[n] - SERVER_PRIORITY for n in nodes if n != "n2"), nice
