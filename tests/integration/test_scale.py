"""Real meshes at real size (issue 12): meshes whose paths do not fit one label and real community meshes come up,
and pairs that never talked before answer their FIRST ping (no lost first packet). The 1000+ node meshes (route
servers by default) are marked slow."""
import os
import random
import subprocess

import networkx as nx
import pytest

from testbed.backends import exec_in
from testbed.mesh import Mesh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


def first_pings(mesh, pairs, timeout=3):
    """Each pair pings exactly once, all at once; the pairs that got no answer."""
    procs = {pair: exec_in(mesh.run, pair[0], ["ping", "-6", "-n", "-c", "1", "-W", str(timeout),
                                                mesh.ip6(pair[1])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pair in pairs}
    return [pair for pair, p in procs.items() if p.wait() != 0]


def fresh_pairs(mesh, count, seed):
    """The two ends of a longest shortest path of the largest component, then pairs the ready-check did not use
    (no session exists between them yet)."""
    g = mesh.topo.graph().subgraph(max(nx.connected_components(mesh.topo.graph()), key=len))
    ends = nx.periphery(g)
    far = (ends[0], max(ends, key=lambda n: nx.shortest_path_length(g, ends[0], n)))
    used = set(mesh.pairs()) | {far}
    rest = [p for p in mesh.pairs(sample=None) if p not in used and p[0] in g]
    return [far] + random.Random(seed).sample(rest, count - 1)


@pytest.fixture
def runs_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))


def test_grid_10x10_paths_longer_than_a_label_answer_their_first_ping(runs_home):
    with Mesh.up("grid:10x10", name="g10") as mesh:        # 18-hop paths: static routes with waypoints
        assert mesh.run.state["routing"] == "static"
        pairs = fresh_pairs(mesh, 80, seed=1)
        assert nx.shortest_path_length(mesh.topo.graph(), *pairs[0]) == 18        # corner to corner
        assert first_pings(mesh, pairs) == []
        assert len(mesh.labels(*pairs[0])) > 1, "18 hops do not fit one label: the path has waypoints"


def test_freifunk_ulm_pairs_answer_their_first_ping_and_no_link_flaps(runs_home):
    with Mesh.up("freifunk-ulm", name="ulm1") as mesh:     # 217 nodes, hubs of up to 78 links, 32 agent hosts
        assert first_pings(mesh, fresh_pairs(mesh, 60, seed=2)) == []
        downs = sum(mesh.agent(n).call("counters", timeout=10)["tun"]["peer_down"] for n in mesh.nodes)
        assert downs == 0, f"{downs} peer-down events on a mesh nobody touched"


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["grid:20x20", "grid:32x32", "freifunk-aachen"])   # 20x20: servers far apart
def test_big_meshes_come_up_with_route_servers(runs_home, spec):
    with Mesh.up(spec, name="big", wait=600) as mesh:      # Freifunk Aachen: its largest component, 1259 nodes
        assert mesh.run.state["routing"] == "route-server" and mesh.topo.nodes_with_role("route_server")
        assert first_pings(mesh, fresh_pairs(mesh, 60, seed=3), timeout=5) == []
