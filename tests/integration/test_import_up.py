"""A real community mesh (Freifunk Ulm, 217 nodes, from meshnet-lab) comes up with agents, and goes away cleanly."""
import json
import os

import networkx as nx
import pytest

from testbed.waiting import wait_until
from testbed.mesh import Mesh
from testbed.paths import MESHNET_LAB

from .leaks import assert_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")

ULM = MESHNET_LAB / "freifunk" / "freifunk-ulm.json"


@pytest.mark.skipif(not ULM.exists(), reason="meshnet-lab data not beside the checkout")
def test_freifunk_ulm_up_reachable_down(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    mesh = Mesh.up(str(ULM), name="ulm")  # returns only once sampled pairs reach each other end to end
    state, run_dir = json.loads(mesh.run.journal.read_text()), mesh.run.dir
    try:
        assert len(mesh.topo.nodes) == 217 and len(mesh.topo.links) == 447
        hosts = {rec["pid"] for rec in state["agents"].values()}
        assert len(hosts) <= 32, "big meshes share multi-node agent hosts"
        # the two ends of the longest shortest path of the biggest component talk
        g = mesh.topo.graph().subgraph(max(nx.connected_components(mesh.topo.graph()), key=len))
        a, b = nx.periphery(g)[:2] if len(nx.periphery(g)) > 1 else list(g)[:2]
        # (a first packet over that many hops starts the end-to-end handshake; a loaded machine may need a retry)
        assert wait_until(lambda: mesh.ping(a, b, count=2, timeout=3) is not None, 20), f"{a} does not reach {b}"
    finally:
        mesh.down()
    assert_gone(state, run_dir)
