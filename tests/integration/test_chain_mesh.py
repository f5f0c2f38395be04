"""The PKT chain on a real mesh (tests/integration/topologies/chain-small.yaml): three chain nodes, a pool, two
announcement miners and a block miner, every announcement, share and block over the emulated links. The chain's
blocks are replayed into a fresh in-process chain (the full consensus check, the faithful PacketCrypt validator
with each block's 4 announcements), the steward output is checked in every coinbase, and each payout's split is
recomputed from the paymaker's inputs in the run's event log."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from node.chain import script as S
from node.chain.blocks import Block
from node.chain.chainstate import ACCEPTED, Chain
from node.chain.params import for_run
from node.chain.pool.ann_handler import valid_pay_to
from node.chain.pool.paymaker import PayMaker, PayMakerConfig
from node.chain.packetcrypt import difficulty
from node.chain.wire import hash_hex
from testbed import services
from testbed.events import read_events
from testbed.mesh import Mesh

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
TOPOLOGY = str(Path(__file__).parent / "topologies" / "chain-small.yaml")
CHAIN_NODES = ("c1", "c2", "c3")
BLOCKS = 6


@pytest.fixture(scope="module")
def mesh():
    with Mesh.up(TOPOLOGY, name="t-chain-small") as m:
        yield m


def _agree(mesh):
    st = mesh.chain()["nodes"]
    tips = {st[n].get("tip") for n in CHAIN_NODES}
    return st if len(tips) == 1 and st["c1"]["height"] >= BLOCKS else None


def _main_chain(mesh, node: str, height: int) -> list[Block]:
    out = []
    for h in range(1, height + 1):
        status, answer = services.chain_rpc(mesh.run, node, f"/block_at/{h}")
        assert status == 200, answer
        out.append(Block.parse(bytes.fromhex(answer["hex"])))
    return out


def test_blocks_are_mined_over_the_mesh_agreed_and_valid(mesh, tmp_path):
    chain_cfg = mesh.run.state["chain"]
    print("chain parameters:", json.dumps(chain_cfg))
    mesh.wait_height(BLOCKS, within=240)
    st = mesh.wait_until(lambda: _agree(mesh), 60, "every chain node on the same tip")
    height = st["c1"]["height"]
    params = for_run(chain_cfg["config"])
    blocks = _main_chain(mesh, "c3", height)
    assert hash_hex(blocks[-1].hash) == st["c3"]["tip"]
    fresh = Chain(tmp_path / "replay", params)
    try:
        for h, b in enumerate(blocks, 1):
            r = fresh.process_block(b, b.header.time + 60)
            assert r.status == ACCEPTED, (h, r.status, r.reason, r.detail)
            assert len(b.proof.anns) == 4
            steward = [o for o in b.txs[0].outputs if S.strip_vote(o.script_pubkey) == params.initial_steward_script]
            assert [o.value for o in steward] == [params.subsidy(h) * 51 // 256], h
        assert fresh.tip.hash == blocks[-1].hash
    finally:
        fresh.close()
    # who found them, and the pool's view of it
    events = read_events(mesh.run.path("events.jsonl"))
    found = {e["details"]["hash"] for e in events if e["kind"] == "block_found"}
    assert {hash_hex(b.hash) for b in blocks} <= found
    mining = mesh.mining()
    assert mining["pools"]["c1"]["blocks"] >= height
    assert all(m["accepted"] > 0 for m in mining["miners"].values())
    assert mining["ann_bytes_per_link"]["c1--r1"] > 0


def test_payout_split_recomputed_from_the_event_log(mesh):
    mesh.wait_height(BLOCKS, within=240)
    events = read_events(mesh.run.path("events.jsonl"))
    inputs = [e["details"] for e in events if e["kind"] == "paymaker_event"]
    assert [i["input"] for i in inputs] == list(range(1, len(inputs) + 1))
    payouts = [e["details"] for e in events if e["kind"] == "payout"]
    assert len(payouts) >= BLOCKS
    seed = mesh.run.state["seed"]
    pool_address = services.wallet_key(seed, "c1").address
    params = for_run(mesh.run.state["chain"]["config"])
    checked = 0
    for p in payouts:
        pm = PayMaker(PayMakerConfig(default_address=pool_address, pool_fee_address=pool_address,
                                     base_work=difficulty.work_for_compact(params.pow_limit_bits)), valid_pay_to)
        for i in inputs[:p["paymaker_events"]]:
            assert pm.add(i["event"]) is None
        want = pm.who_to_pay()["result"]
        assert p["split"] == pytest.approx(want, rel=1e-9), p["height"]
        # the coinbase pays the miners' part in those proportions (units rounded down, the rest to the first)
        miners_part = sum(v for _, v in p["outputs"])
        weights = {a: w for a, w in want.items() if w > 0}
        for address, value in p["outputs"]:
            assert value == pytest.approx(miners_part * weights[address] / sum(weights.values()), abs=len(weights))
        checked += p["paymaker_events"] > 0
    assert checked >= BLOCKS - 1          # the first template is made before the paymaker heard of anything


def test_bad_input_is_refused_with_a_counted_reason(mesh):
    before = mesh.chain()["nodes"]["c2"]["rejections"]
    status, answer = services.chain_rpc(mesh.run, "c2", "/submitblock", {"block": "00" * 81})
    assert status == 400 and answer["error"]
    status, answer = services.chain_rpc(mesh.run, "c2", "/sendtx", {"tx": "zz"})
    assert status == 400 and answer["error"] == "bad_hex"
    # garbage on the P2P port and a bad upload to the pool, from another node over the mesh
    probe = (
        "import socket, urllib.request, urllib.error, sys\n"
        "s = socket.create_connection((sys.argv[1], 64764), timeout=5)\n"
        "s.sendall(b'\\x00' * 24 + b'garbage' * 10)\n"
        "try:\n    s.recv(100)\nexcept OSError:\n    pass\n"
        "r = urllib.request.Request(f'http://[{sys.argv[2]}]:8081/submit', data=b'x' * 1024, method='POST',\n"
        "                           headers={'x-pc-payto': 'nobody', 'x-pc-worknum': '1'})\n"
        "try:\n    urllib.request.urlopen(r, timeout=5)\nexcept urllib.error.HTTPError as e:\n    print(e.code)\n")
    r = mesh.exec("r1", ["python3", "-c", probe, mesh.ip6("c2"), mesh.ip6("c1")], timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "400", r.stderr

    def counted():
        st = mesh.chain()["nodes"]["c2"]
        return st if sum(st["p2p"]["rejections"].values()) > sum(before["p2p"].values()) else None
    st = mesh.wait_until(counted, 10, "the malformed P2P message counted")
    assert sum(st["rejections"]["rpc"].values()) >= sum(before["rpc"].values()) + 1
    assert sum(st["rejections"]["block"].values()) + sum(st["rejections"]["rpc"].values()) >= 2
    mesh.wait_until(lambda: mesh.mining()["pools"]["c1"]["anns_refused"].get("bad_payto", 0) >= 1, 10,
                    "the pool's refusal counted")
    assert all(n["running"] for n in mesh.chain()["nodes"].values())


def test_a_chain_node_killed_hard_restarts_with_its_chain(mesh):
    st = mesh.wait_height(2, within=120)
    height = st["c3"]["height"]
    mesh.stop_service("c3", "chain", signal.SIGKILL)
    services.status_file(mesh.run, "c3", "chain").unlink()
    mesh.start_service("c3", "chain")
    st = mesh.wait_until(lambda: services.service_status(mesh.run, "c3", "chain"), 30, "c3's chain node back")
    assert st["height"] >= height                       # from its SQLite store, before any peer sends a block
    mesh.wait_until(lambda: _agree(mesh), 60, "c3 back on the common tip")


@pytest.mark.slow
def test_thirty_blocks_on_ten_nodes_at_the_configured_interval(tmp_path):
    """Issue 14's Show: 3 chain nodes, 1 pool, 4 announcement miners, 1 block miner mine 30 blocks at the
    configured interval within +-50 %, all on one tip, every block valid with its 4 announcements and the exact
    steward output. The interval is measured after the first retarget window (the blocks before it run at the
    starting difficulty estimated at `up`; the real retarget then holds the block time)."""
    topo = str(Path(__file__).parent / "topologies" / "chain-ten.yaml")
    with Mesh.up(topo, name="t-chain-ten") as m:
        chain_cfg = m.run.state["chain"]
        print("chain parameters:", json.dumps(chain_cfg))
        params = for_run(chain_cfg["config"])
        m.wait_height(30, within=30 * params.target_block_time * 3)
        st = m.wait_until(lambda: (lambda s: s if len({s[n].get("tip") for n in ("c1", "c2", "c3")}) == 1
                                   else None)(m.chain()["nodes"]), 60, "one tip")
        blocks = _main_chain(m, "c2", 30)
        fresh = Chain(tmp_path / "replay", params)
        try:
            for h, b in enumerate(blocks, 1):
                r = fresh.process_block(b, b.header.time + 60)
                assert r.status == ACCEPTED, (h, r.reason, r.detail)
                steward = [o.value for o in b.txs[0].outputs
                           if S.strip_vote(o.script_pubkey) == params.initial_steward_script]
                assert steward == [params.subsidy(h) * 51 // 256]
        finally:
            fresh.close()
        found = sorted((e["details"]["height"], e["ts"]) for e in read_events(m.run.path("events.jsonl"),
                                                                               kind="block_found"))
        print("block found at (height, s):", [(h, round(t - found[0][1], 1)) for h, t in found])
        window = [t for h, t in found if params.retarget_interval <= h <= 30]
        mean = (window[-1] - window[0]) / (len(window) - 1)
        print(f"mean block interval from height {params.retarget_interval} to 30: {mean:.2f} s (configured "
              f"{params.target_block_time} s), heights {[s['height'] for s in st.values()]}")
        assert 0.5 * params.target_block_time <= mean <= 1.5 * params.target_block_time
