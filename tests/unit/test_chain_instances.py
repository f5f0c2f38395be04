"""Several PKT chain instances in one run (testbed/services.py `chains:`): the section checked by field, each
instance's own network magic, ports and genesis, the service configs, and the solo miner (node/chain/solo.py)
mining real blocks that a fresh chain accepts."""
from __future__ import annotations

from pathlib import Path

import pytest

from node.chain import params as chain_params
from node.chain.blocks import genesis_block
from node.chain.chainstate import ACCEPTED, Chain
from node.chain.keys import Key
from node.chain.solo import SoloMiner, mine_anns
from testbed import services
from testbed.topology import TopologyError, from_dict


def _topo(chains, roles=None):
    names = ["a1", "a2", "b1", "b2", "x1"]
    return from_dict({"nodes": {n: {"roles": (roles or {}).get(n, ["router"])} for n in names},
                      "links": ["a1--a2", "a2--x1", "x1--b1", "b1--b2"], "chains": chains})


TWO = {"alpha": {"nodes": ["a1", "a2"], "time_scale": 30}, "beta": {"nodes": ["b1", "b2"], "miner": "b2"}}


def test_chains_section_is_checked_by_field():
    assert _topo(TWO).chains == TWO
    for bad, words in [
        ({"alpha": {"nodes": ["zz"]}}, "alpha: nodes: no node 'zz'"),
        ({"alpha": {"nodes": []}}, "alpha: nodes: expected a list"),
        ({"alpha": {"nodes": ["a1"]}, "beta": {"nodes": ["a1"]}}, "beta: node a1 is already a node of chain alpha"),
        ({"alpha": {"nodes": ["a1"], "miner": "b1"}}, "alpha: miner: 'b1' is not one of its nodes"),
        ({"alpha": {"nodes": ["a1"], "ann_rate": 3}}, "alpha: unknown field"),
        ({"alpha": {"nodes": ["a1"], "port": 70000}}, "alpha: .*port must be a whole number in 1..65534"),
        ({"alpha": {"nodes": ["a1"], "maturity": 0}}, "alpha: .*positive whole number"),
        ({}, "a mapping of 1..16"),
    ]:
        with pytest.raises(TopologyError, match="chains: .*" + words):
            _topo(bad)
    with pytest.raises(TopologyError, match="roles chain, pool"):
        _topo(TWO, roles={"x1": ["router", "pool"]})


def test_each_instance_has_its_own_network_and_genesis():
    topo = _topo({**TWO, "gamma": {"nodes": ["x1"], "net_magic": 0x0A0B0C0D, "port": 7000}})
    got = services.run_chains(topo, now=1_800_000_000)
    params = {name: chain_params.for_run(inst["config"]) for name, inst in got.items()}
    assert [p.net_magic for p in params.values()] == [0x082F00FD, 0x082F00FE, 0x0A0B0C0D]
    assert [p.default_port for p in params.values()] == [64766, 64768, 7000]
    assert params["alpha"].target_block_time == 2 and params["beta"].target_block_time == 60
    assert len({genesis_block(p).hash for p in params.values()}) == 3
    assert got["beta"]["miner"] == "b2" and got["alpha"]["miner"] == "a1"
    # the config form round-trips through the RPC's /params form
    for inst in got.values():
        assert chain_params.for_run(chain_params.run_config(chain_params.for_run(inst["config"]))) == \
            chain_params.for_run(inst["config"])
    with pytest.raises(services.ChainConfigError, match="share a port"):
        services.run_chains(_topo({"alpha": {"nodes": ["a1"], "port": 64767}, "beta": {"nodes": ["b1"]}}))


def test_instance_configs_peer_only_within_a_chain_and_the_miner_mines():
    topo = _topo(TWO)
    state = {"seed": 3, "chains": services.run_chains(topo, now=1_800_000_000),
             "addresses": {n: f"fc00::{i + 1}" for i, n in enumerate(topo.nodes)}}
    cfgs = services.instance_configs(state, Path("/run/x"))
    assert set(cfgs) == {"a1", "a2", "b1", "b2"}
    a1 = cfgs["a1"]["chain"]["settings"]
    assert a1["peers"] == [["fc00::2", 64766]] and (a1["p2p_port"], a1["rpc_port"]) == (64766, 64767)
    assert a1["solo_pay_to"] == services.wallet_key(3, "a1").address
    assert "solo_pay_to" not in cfgs["b1"]["chain"]["settings"]
    assert cfgs["b2"]["chain"]["settings"]["solo_pay_to"] == services.wallet_key(3, "b2").address
    assert cfgs["b1"]["chain"]["chain"]["net_magic"] == 0x082F00FE
    assert services.chain_of(state, "b2") == "beta" and services.chain_of(state, "x1") is None


def test_the_single_chain_section_is_unchanged_and_does_not_mix():
    with pytest.raises(TopologyError, match="either a chain: section or a chains: section"):
        from_dict({"nodes": {"a1": {}}, "links": [], "chain": {"time_scale": 10}, "chains": {"x": {"nodes": ["a1"]}},
                   "allow_disconnected": True})
    assert chain_params.run_config(chain_params.for_run({})).keys() == {
        "block_time", "retarget_interval", "burn_depth", "maturity", "lock_blocks", "genesis_time", "genesis_bits"}


def test_solo_miner_mines_blocks_a_fresh_chain_accepts(tmp_path):
    p = chain_params.for_run({"block_time": 2, "maturity": 2, "genesis_time": 1_800_000_000})
    mined, check = Chain(tmp_path / "m", p), Chain(tmp_path / "c", p)
    try:
        solo = SoloMiner(mined, Key.from_seed("solo").p2pkh_script)
        now = p.genesis_time
        for _ in range(16):                   # more blocks than one announcement batch serves
            now += 2
            parent = solo.ann_parent()
            if parent is not None:
                solo.add_anns(mine_anns(*parent))
            block = solo.block(now)
            assert mined.process_block(block, now).status == ACCEPTED
            assert check.process_block(block.serialize(), now).status == ACCEPTED
        assert check.height == 16 and solo.status()["ann_batches"] >= 2
        # a restarted miner (no announcements) mines on at once: its batch's parent is old enough
        again = SoloMiner(mined, Key.from_seed("solo").p2pkh_script)
        again.add_anns(mine_anns(*again.ann_parent()))
        assert mined.process_block(again.block(now + 2), now + 2).status == ACCEPTED
    finally:
        mined.close()
        check.close()
