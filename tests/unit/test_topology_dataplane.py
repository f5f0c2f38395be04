"""Data-plane switches in topology attrs (testbed/topology/dataplane.py): link encryption and fair share, their
checks and the agent configs they give."""
import copy
from pathlib import Path

import pytest

from node.agent.config import parse_config
from testbed import agent_configs
from testbed.topology import TopologyError, from_dict, validate

BASE = {"name": "t", "seed": 3, "nodes": ["a", "r", "b"],
        "links": [{"a": "a", "b": "r"}, {"a": "r", "b": "b", "rate": "10mbit"}]}


def topo(top=None, links=None, nodes=None):
    d = copy.deepcopy(BASE)
    if top:
        d["attrs"] = top
    for i, attrs in (links or {}).items():
        d["links"][i]["attrs"] = attrs
    if nodes:
        d["nodes"] = [{"name": n, "attrs": nodes.get(n, {})} for n in d["nodes"]]
    t = from_dict(d, "t.yaml")
    validate(t)
    return t


def configs(t, tmp_path):
    state = {"seed": 3, "links": [{"a": l.a, "b": l.b, "a_if": f"{l.a}-eth{i}", "b_if": f"{l.b}-eth{i}",
                                   "a_addr": f"fd00:{i}::1", "b_addr": f"fd00:{i}::2"}
                                  for i, l in enumerate(t.links)]}
    for n in t.nodes:
        (tmp_path / "nodes" / n).mkdir(parents=True, exist_ok=True)
    out = agent_configs.agent_configs(t, state, Path(tmp_path))
    for cfg in out.values():
        parse_config(cfg)                          # what the agents read
    return out


def crypto(cfgs):
    return {(n, p["peer_name"]): p["link_crypto"] for n, c in cfgs.items() for p in c["peers"]}


def test_links_are_encrypted_unless_the_topology_says_not(tmp_path):
    assert set(crypto(configs(topo(), tmp_path)).values()) == {True}
    assert set(crypto(configs(topo({"link_crypto": False}), tmp_path)).values()) == {False}
    mixed = crypto(configs(topo({"link_crypto": False}, {1: {"link_crypto": True}}), tmp_path))
    assert mixed == {("a", "r"): False, ("r", "a"): False, ("r", "b"): True, ("b", "r"): True}  # both ends agree


@pytest.mark.parametrize("top, links, nodes, message", [
    ({"link_crypto": "off"}, None, None, "top level: attrs: link_crypto: expected true or false"),
    (None, {0: {"link_crypto": 0}}, None, "link a--r: attrs: link_crypto"),
    (None, {0: {"fair_share": True}}, None, "link a--r: fair_share on a's side needs a rate"),
    (None, None, {"a": {"fair_share": True}}, "fair_share on a's side needs a rate"),
    (None, None, {"r": {"fair_share": "yes"}}, "node r: attrs: fair_share: expected true or false"),
])
def test_bad_switches_are_named(top, links, nodes, message):
    with pytest.raises(TopologyError) as e:
        topo(top, links, nodes)
    assert message in str(e.value)


def test_fair_share_links_become_agent_sections(tmp_path):
    from node.tun_switch.lease_plane import AGENT_PACE
    cfgs = configs(topo(links={1: {"fair_share": True}}), tmp_path)
    assert cfgs["r"]["fair_share"] == {"links": {"r-eth1": {"rate_bps": round(10e6 * AGENT_PACE)}}}
    assert cfgs["b"]["fair_share"] == {"links": {"b-eth1": {"rate_bps": round(10e6 * AGENT_PACE)}}}
    assert "fair_share" not in cfgs["a"]
    cfgs = configs(topo(nodes={"b": {"fair_share": True}}), tmp_path)          # a node: all of its links
    assert set(cfgs["b"]["fair_share"]["links"]) == {"b-eth1"} and "fair_share" not in cfgs["r"]


def test_fair_share_and_leases_on_one_link_are_refused():
    d = copy.deepcopy(BASE)
    d["isps"] = {"isp": {"leases": [{"link": "r--b", "holder": "isp"}]}}
    d["nodes"] = {"a": {}, "r": {"isp": "isp"}, "b": {"isp": "isp"}}
    d["links"][1]["attrs"] = {"fair_share": True}
    with pytest.raises(TopologyError, match="fair_share and bandwidth leases on one link"):
        validate(from_dict(d, "t.yaml"))
