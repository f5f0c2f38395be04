"""A run's chain from the topology (testbed/services.py): the `chain:` section, the time scale, the starting
difficulty from a hash rate, and which chain node and pool each service works with."""
from __future__ import annotations

from pathlib import Path

import pytest

from node.chain import mining
from node.chain.params import for_run
from node.chain.pool.work import DEFAULT_ANN_TARGET
from testbed import services
from testbed.topology import TopologyError, from_dict


def _topo(chain=None):
    d = {"nodes": {"c1": {"roles": ["chain", "pool"]}, "c2": {"roles": ["chain"]}, "m1": {"roles": ["miner"]},
                   "m2": {"roles": ["miner"]}, "b1": {"roles": ["block_miner"]}, "r1": {}},
         "links": ["c1--r1", "r1--c2", "m1--r1", "m2--c2", "b1--c1"]}
    if chain is not None:
        d["chain"] = chain
    return from_dict(d)


def test_chain_section_is_checked_by_field():
    assert _topo({"time_scale": 6, "ann_rate": 2}).chain == {"time_scale": 6, "ann_rate": 2}
    for bad, words in [({"block_tme": 3}, "unknown field(s) block_tme"), ({"time_scale": 0}, "time scale"),
                       ({"ann_rate": "fast"}, "ann_rate"), ({"maturity": 0}, "positive whole number"),
                       ({"genesis_bits": 0x217FFFFF}, "pow limit"), ([1], "expected a mapping")]:
        with pytest.raises(TopologyError, match="chain: .*" + words.split("(")[0]):
            _topo(bad)


def test_time_scale_and_section_lengths_and_measured_starting_bits():
    topo = _topo({"time_scale": 10, "maturity": 3, "ann_rate": 4})
    got = services.run_chain(topo, now=1_800_000_000, hashrate=2000.0)
    cfg = got["config"]
    assert (cfg["block_time"], cfg["retarget_interval"], cfg["burn_depth"], cfg["maturity"]) == (6, 202, 12960, 3)
    assert cfg["genesis_time"] == 1_800_000_000
    anns = 2 * 4 * 6                                  # two miners at 4 anns/s over one 6 s block
    assert got["measured"]["anns_per_block"] == anns
    bits = cfg["genesis_bits"]
    assert bits == mining.starting_bits(1000.0, 6, DEFAULT_ANN_TARGET, anns, pow_limit_bits=0x207FFFFF)
    # at that difficulty, a block takes about block_time at half the measured rate
    assert mining.expected_hashes(bits, DEFAULT_ANN_TARGET, anns) / 1000.0 == pytest.approx(6, rel=0.05)
    # --time-scale wins over the section's; a genesis_bits in the section is taken as it is
    assert services.run_chain(topo, time_scale=60, hashrate=1.0)["config"]["block_time"] == 1
    fixed = services.run_chain(_topo({"genesis_bits": 0x1F00FFFF}), hashrate=1.0)
    assert fixed["config"]["genesis_bits"] == 0x1F00FFFF and fixed["measured"] is None
    assert for_run(fixed["config"]).target_block_time == 60            # no scale: mainnet's lengths


def test_service_configs_pick_the_nearest_chain_node_and_pool():
    topo = _topo({"time_scale": 10})
    state = {"seed": 5, "chain": services.run_chain(topo, hashrate=1000.0),
             "addresses": {n: f"fc00::{i + 1}" for i, n in enumerate(topo.nodes)}}
    cfgs = services.service_configs(topo, state, Path("/run/x"))
    assert set(cfgs) == {"c1", "c2", "m1", "m2", "b1"}
    assert list(cfgs["c1"]) == ["chain", "pool"]
    assert cfgs["c1"]["chain"]["settings"]["peers"] == [["fc00::2", 64764]]
    assert cfgs["c1"]["pool"]["settings"]["chain_url"] == "http://[fc00::1]:64765"         # its own chain node
    for miner in ("m1", "m2"):
        assert cfgs[miner]["miner"]["settings"]["master_url"] == "http://[fc00::1]:8080"
        assert cfgs[miner]["miner"]["settings"]["pay_to"] == services.wallet_key(5, miner).address
    assert cfgs["b1"]["block_miner"]["chain"] == state["chain"]["config"]
    assert cfgs["c2"]["chain"]["settings"]["socket"] == "/run/x/nodes/c2/chain.sock"
    no_pool = from_dict({"nodes": {"c1": {"roles": ["chain"]}, "m1": {"roles": ["miner"]}}, "links": ["c1--m1"]})
    with pytest.raises(services.ChainConfigError, match="miner m1: no node with the role pool"):
        services.service_configs(no_pool, dict(state, addresses={"c1": "fc00::1", "m1": "fc00::2"}), Path("/x"))


def test_an_issuer_runs_a_market_service_on_its_nearest_chain_node():
    from testbed.agent_configs import identity
    topo = from_dict({"nodes": {"c1": {"roles": ["chain"]}, "s1": {"roles": ["issuer"]}, "r1": {}},
                      "links": ["c1--r1", "r1--s1"]})
    state = {"seed": 3, "chain": services.run_chain(topo, hashrate=1000.0),
             "addresses": {"c1": "fc00::1", "s1": "fc00::2", "r1": "fc00::3"}}
    cfg = services.service_configs(topo, state, Path("/run/x"))["s1"]["issuer"]
    s = cfg["settings"]
    assert s["chain_url"] == "http://[fc00::1]:64765" and s["socket"] == "/run/x/nodes/s1/market.sock"
    assert s["node_secret"] == identity(topo, 3, "s1").private_key.hex()           # its market key: its node key
    assert s["wallet_secret"] == services.wallet_key(3, "s1").secret.hex()
    assert services.MODULES["issuer"] == "node.market.service"
    assert s["peers"] == []                                                         # the only market
    assert "hub" not in s
    two = from_dict({"nodes": {"c1": {"roles": ["chain"]}, "s1": {"roles": ["issuer"]},
                               "s2": {"roles": ["issuer"], "attrs": {"market": {"hub": True, "hub_fee": 7}}}},
                     "links": ["c1--s1", "c1--s2"]})
    cfgs = services.service_configs(two, dict(state, addresses={"c1": "fc00::1", "s1": "fc00::2", "s2": "fc00::4"}),
                                    Path("/run/x"))
    assert cfgs["s1"]["issuer"]["settings"]["peers"] == ["http://[fc00::4]:64780"]  # push gossip to the others
    assert cfgs["s2"]["issuer"]["settings"]["peers"] == ["http://[fc00::2]:64780"]
    assert (cfgs["s2"]["issuer"]["settings"]["hub"], cfgs["s2"]["issuer"]["settings"]["hub_fee"]) == (True, 7)
    lone = from_dict({"nodes": {"c1": {"roles": ["chain"]}, "s1": {"roles": ["issuer"]}}, "links": []})
    with pytest.raises(services.ChainConfigError, match="issuer s1: no node with the role chain"):
        services.service_configs(lone, dict(state, addresses={"c1": "fc00::1", "s1": "fc00::2"}), Path("/x"))
