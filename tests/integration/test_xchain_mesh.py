"""Cross-chain settlement on a real mesh (tests/integration/topologies/xchain-small.yaml): three PKT chain instances
(own magic, ports, genesis, solo miner), parties and a relay whose chain RPC goes over the emulated links."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed import services
from testbed.mesh import Mesh

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
TOPOLOGY = str(Path(__file__).parent / "topologies" / "xchain-small.yaml")


@pytest.fixture(scope="module")
def mesh():
    with Mesh.up(TOPOLOGY, name="t-xchain") as m:
        yield m


def test_every_instance_mines_its_own_chain(mesh):
    chains = mesh.run.state["chains"]
    assert list(chains) == ["alpha", "beta", "gamma"]

    def grown():
        st = mesh.chain()["nodes"]
        per_chain = {name: {st[n].get("tip") for n in inst["nodes"]} for name, inst in chains.items()}
        heights = [st[n].get("height", 0) for n in st]
        return st if min(heights) >= 4 and all(len(t) == 1 for t in per_chain.values()) else None
    st = mesh.wait_until(grown, 90, "every instance at height 4, its nodes on one tip")
    assert len({st[n]["genesis"] for n in st}) == 3                      # three genesis blocks
    assert {st["a1"]["genesis"], st["a2"]["genesis"]} == {st["a1"]["genesis"]}
    for name, inst in chains.items():
        for n in inst["nodes"]:
            assert st[n]["chain"] == name
            assert len(st[n]["p2p"]["peers"]) == len(inst["nodes"]) - 1     # only its own chain's nodes
        assert st[inst["miner"]]["solo_miner"]["blocks"] >= 4
    # a node of one chain dialling another chain's P2P port is refused for its magic, counted
    probe = ("import socket, struct, sys\n"
             "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
             "s.sendall(struct.pack('<I', 0x082F00FD) + b'version'.ljust(12, b'\\0') + bytes(8))\n"
             "s.settimeout(5)\n"
             "print(s.recv(100))\n")
    beta_port = chains["beta"]["config"]["port"]
    mesh.exec("a1", ["python3", "-c", probe, mesh.ip6("b1"), str(beta_port)], timeout=20)
    rejected = mesh.wait_until(lambda: services.service_status(mesh.run, "b1", "chain")["rejections"]["p2p"] or None,
                               10, "b1 counts the foreign magic")
    assert sum(rejected.values()) >= 1, rejected
