"""Route servers on real namespaces: agents without any path table learn their paths from a route-server node
(config "route_server": {"serve": true}) found through GETSNODE; route server messages travel inside CryptoAuth
sessions over the veth links. ping6 between the ends of a line goes through.

Needs root (namespaces, TUN). Uses tests/integration/agent_harness.py, which removes everything it creates.
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agent_harness import Mesh  # noqa: E402
from testbed.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]


class RouteServerMesh(Mesh):
    """Agents configured with a route_server section and no static paths."""

    servers = ()

    def config_for(self, node):
        cfg = super().config_for(node)
        cfg["paths"] = {}
        keys = [s.identity.pubkey_text for s in self.servers]
        cfg["route_server"] = {"serve": node in self.servers, "allowed": keys,
                               "federation": [k for k in keys if k != node.identity.pubkey_text],
                               "announce_interval_s": 1, "hunt_interval_s": 0.5, "query_timeout_s": 1}
        return cfg


@pytest.fixture
def mesh(tmp_path):
    m = RouteServerMesh(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()


def test_line_learns_paths_from_a_route_server_node(mesh):
    nodes = mesh.line(4)
    mesh.servers = (nodes[1],)
    mesh.start()
    server_ip6 = nodes[1].ip6
    for n in nodes:
        wait_until(lambda n=n: mesh.client(n).call("routes")["route_server"] == server_ip6, 15,
                 f"{n.name} uses the route server")
    status = wait_until(lambda: (lambda s: s if s["nodes"] == 4 and s["edges"] == 6 else None)(
        mesh.client(nodes[1]).call("rs_status")), 15, "the route server knows the line")
    assert status["announcements_accepted"] >= 4
    r = mesh.run(nodes[0], "ping", "-6", "-c", "6", "-i", "0.3", "-W", "2", nodes[3].ip6, timeout=30)
    received = int(re.search(r"(\d+) received", r.stdout).group(1))
    assert received >= 4, r.stdout          # the first packet may start the look-up and be dropped
    routes = mesh.client(nodes[0]).call("routes")
    assert nodes[3].ip6 in routes["paths"]
    hops = mesh.client(nodes[1]).call("rs_route", src=nodes[0].ip6, dst=nodes[3].ip6)
    assert [h["node"] for h in hops["hops"]] == [n.ip6 for n in nodes[:3]]
    assert hops["label"] == routes["paths"][nodes[3].ip6]["label"]
