"""Cross-chain settlement on a real mesh (tests/integration/topologies/xchain-small.yaml): three PKT chain instances
(own magic, ports, genesis, solo miner), parties and a relay whose chain RPC goes over the emulated links."""
from __future__ import annotations

import os
import time
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


PARTIES = {"a2": ["alpha"], "b2": ["beta"], "r1": ["gamma"], "x1": ["alpha", "beta", "gamma"]}
HOME = {"a2": "alpha", "b2": "beta", "r1": "gamma"}


def _transfers_with_faults(mesh, n_transfers: int, n_faults: int, seed: int):
    """n transfers (relay through x1 or pairwise swaps, random chains) started 1.5 s apart, with n faults at random
    moments (partition the relay, or kill every node of a chain), each 5-12 s, shorter than the margin."""
    import random

    from node.xchain.settlement import COMMITTED, REFUNDED, Timing
    from testbed.xchain import PKT, Settlement, XchainError
    print(f"cross-chain fault test: seed {seed}, {n_transfers} transfers, {n_faults} faults")
    rng = random.Random(seed)
    s = Settlement(mesh, list(PARTIES), Timing(setup_s=6, margin_s=20), seed=seed)
    try:
        s.fund(PARTIES, coins=n_transfers, value=2 * PKT)
        mesh.wait_until(lambda: all(v == 0 for v in s.audit()["mempools"].values()), 30, "empty mempools")
        start = s.balances(list(PARTIES))
        plan = []
        for i in range(n_transfers):
            a, b = rng.sample(sorted(HOME), 2)
            plan.append((1.5 * i, rng.choice(["relay", "pairwise"]), a, b))
        span = 1.5 * n_transfers + 20
        faults = []
        at = rng.uniform(2, 6)
        for _ in range(n_faults):
            kind = rng.choice(["partition", "kill"] if n_faults > 1 else ["partition"])
            what = "x1" if kind == "partition" else rng.choice(sorted(mesh.run.state["chains"]))
            length = rng.uniform(5, 12)
            faults.append([at, at + length, kind, what, None])
            at += length + rng.uniform(2, span / max(n_faults, 1))
        print("faults:", [(round(f[0], 1), round(f[1], 1), f[2], f[3]) for f in faults])
        t0 = time.monotonic()

        def during():
            now = time.monotonic() - t0
            while plan and plan[0][0] <= now:
                _, kind, a, b = plan[0]
                try:
                    if kind == "relay":
                        s.start_relay(a, "x1", b, HOME[a], HOME[b], PKT)
                    else:
                        s.start_pairwise(a, b, HOME[a], HOME[b], PKT)
                except XchainError:           # a killed chain cannot be planned on: start it when it is back
                    break
                plan.pop(0)
            for f in faults:
                if f[4] is None and f[0] <= now:
                    f[4] = s.partition(f[3]) if f[2] == "partition" else s.kill_chain(f[3]) or "killed"
                elif f[4] is not None and f[4] != "healed" and f[1] <= now:
                    s.heal(f[4], f[3]) if f[2] == "partition" else s.restart_chain(f[3])
                    f[4] = "healed"
        while plan or any(f[4] != "healed" for f in faults):
            s.step()
            during()
            time.sleep(0.5)
        assert s.run_until_settled(within=300), "not settled:\n" + "\n".join(map(s.describe, s.pending()))

        def mempools_empty():           # a chain restarted by the last fault may not answer yet
            try:
                return all(v == 0 for v in s.audit()["mempools"].values())
            except XchainError:
                return False
        mesh.wait_until(mempools_empty, 60, "the restarted chains answer, their mempools empty")
        report = s.audit()
        print("outcomes:", report["outcomes"])
        print("errors:", {n: p.errors for n, p in s.parties.items() if p.errors})
        assert set(report["outcomes"].values()) <= {COMMITTED, REFUNDED}, report["outcomes"]
        assert len(report["outcomes"]) == n_transfers
        end = s.balances(list(PARTIES))
        for chain in start:             # no funds lost: the parties' money on each chain less the fees they paid
            assert sum(end[chain].values()) == sum(start[chain].values()) - report["fees"][chain], chain
        return report
    finally:
        s.close()


def test_transfers_under_faults_are_all_or_nothing_ci(mesh):
    seed = int(os.environ.get("PKTLAB_XCHAIN_SEED", time.time_ns() % 100000))
    _transfers_with_faults(mesh, n_transfers=6, n_faults=2, seed=seed)


@pytest.mark.slow
def test_twenty_transfers_under_random_faults(mesh):
    seed = int(os.environ.get("PKTLAB_XCHAIN_SEED", time.time_ns() % 100000))
    _transfers_with_faults(mesh, n_transfers=20, n_faults=4, seed=seed)
