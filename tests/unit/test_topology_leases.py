"""The topology's lease format (testbed/topology/leases.py): parsing, defaults from relations, errors, schema, and the
agent "leases" sections and HTB plans a mesh derives from it."""
import copy
import re
import json

import jsonschema
import pytest
import yaml

from node.leases.config import parse_lease_config
from testbed import agent_configs
from testbed.topology import leases as L
from testbed.topology import TopologyError, from_dict, json_schema, load, validate

BASE = {
    "name": "t", "seed": 3,
    "isps": {"prov": {"relations": {"cust": "customer", "peer": "peer"}, "leases": []},
             "cust": {}, "peer": {}},
    "nodes": {"p1": {"isp": "prov", "roles": ["router", "route_server"]},
              "c1": {"isp": "cust", "roles": ["router", "route_server"]},
              "q1": {"isp": "peer", "roles": ["router", "route_server"]},
              "x1": {}},
    "links": ["c1--p1", "q1--p1", {"a": "p1", "b": "x1", "rate": "2mbit"}],
}


def topo(*leases):
    d = copy.deepcopy(BASE)
    d["isps"]["prov"]["leases"] = list(leases)
    t = from_dict(d, "t.yaml")
    validate(t)
    return t


def errors(*leases):
    with pytest.raises(TopologyError) as e:
        topo(*leases)
    return str(e.value)


def test_defaults_follow_relations():
    t = topo({"link": "c1--p1"}, {"link": "q1--p1"}, {"link": "p1--x1", "holder": "prov"})
    a, b, c = L.declared_leases(t)
    assert (a.id, a.holder_isp, a.clear_customer_bit, a.deprioritize_non_customer) == ("prov_1", "cust", False, 4)
    assert (b.id, b.holder_isp, b.clear_customer_bit, b.deprioritize_non_customer) == ("prov_2", "peer", True, None)
    assert (c.holder_isp, c.clear_customer_bit, c.deprioritize_non_customer, c.term_s) == ("prov", False, None, None)
    assert [l.udp_port for l in (a, b, c)] == [L.LEASE_PORT_BASE, L.LEASE_PORT_BASE + 1, L.LEASE_PORT_BASE + 2]


def test_explicit_values_override_defaults():
    (l,) = L.declared_leases(topo({"link": "q1--p1", "id": "pin", "guarantee": "1mbit", "max_priority_bandwidth": 50,
                                   "clear_customer_bit": False, "deprioritize_non_customer": 2, "term": "2h"}))
    assert (l.id, l.guarantee_bps, l.max_priority_bandwidth, l.clear_customer_bit, l.deprioritize_non_customer,
            l.term_s) == ("pin", 1_000_000, 50.0, False, 2, 7200.0)


def test_holder_may_be_a_key():
    from node.cjdns.keys import Identity
    key = Identity.from_seed(b"t", 1).pubkey_text
    (l,) = L.declared_leases(topo({"link": "p1--x1", "holder": key}))
    assert l.holder_key == key and l.holder_isp is None


@pytest.mark.parametrize("lease, message", [
    ({"link": "c1--zz"}, "no link c1--zz"),
    ({"link": "c1"}, "expected 'a--b'"),
    ({"link": "c1--p1", "colour": 1}, "unknown field 'colour'"),
    ({"link": "p1--x1"}, "holder: needed"),
    ({"link": "c1--p1", "holder": "nobody"}, "unknown isp 'nobody'"),
    ({"link": "c1--p1", "holder": "abc.k"}, "bad cjdns key"),
    ({"link": "c1--p1", "guarantee": 5}, "guarantee"),
    ({"link": "c1--p1", "max_priority_bandwidth": -1}, "max_priority_bandwidth"),
    ({"link": "c1--p1", "clear_customer_bit": "yes"}, "clear_customer_bit"),
    ({"link": "c1--p1", "deprioritize_non_customer": 16}, "deprioritize_non_customer"),
    ({"link": "c1--p1", "term": "soon"}, "term"),
    ({"link": "c1--p1", "id": "free"}, "id"),
    ({"link": "p1--x1", "holder": "prov", "guarantee": "3mbit"}, "exceed the rate"),
    ("c1--p1", "expected a mapping"),
    ({"link": "c1--p1", "holder": ["cust"]}, "holder"),
    ({"link": "c1--p1", "guarantee": {"x": 1}}, "guarantee"),
    ({"link": "c1--p1", "max_priority_bandwidth": float("nan")}, "max_priority_bandwidth"),
    ({"link": ["c1", "p1"]}, "link"),
])
def test_bad_leases_are_named(lease, message):
    text = errors(lease)
    assert "isp prov" in text or "link p1--x1" in text
    assert message in text


def test_lease_on_a_link_of_another_isp_and_duplicate_ids():
    d = copy.deepcopy(BASE)
    d["isps"]["cust"]["leases"] = [{"link": "q1--p1", "holder": "peer"}]
    with pytest.raises(TopologyError, match="neither end is a node of isp cust"):
        validate(from_dict(d, "t.yaml"))
    assert "already used" in errors({"link": "c1--p1", "id": "x"}, {"link": "q1--p1", "id": "x"})


def test_leases_round_trip_and_match_the_schema(tmp_path):
    t = topo({"link": "c1--p1", "max_priority_bandwidth": 10, "term": "1d"})
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(t.to_dict()))
    again = load(str(path))
    assert again.isps["prov"].leases == t.isps["prov"].leases
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())
    bad = yaml.safe_load(path.read_text())
    bad["isps"]["prov"]["leases"][0]["deprioritize_non_customer"] = 99
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())


def test_bundled_leases_example_loads():
    t = load("leases")
    assert [l.id for l in L.declared_leases(t)] == ["a_in", "b_in", "p_in", "uplink"]


def links_state(t):
    return [{"a": l.a, "b": l.b, "a_if": f"{l.a}-e{i}", "b_if": f"{l.b}-e{i}"} for i, l in enumerate(t.links)]


def test_agent_sections_are_valid_lease_configs_at_both_ends():
    t = topo({"link": "c1--p1", "max_priority_bandwidth": 10}, {"link": "p1--x1", "holder": "prov",
                                                                  "guarantee": "500kbit", "term": "10s"})
    sections, ifaces = agent_configs.lease_sections(t, links_state(t), 3, started_at=1000.0)
    assert set(sections) == {"p1", "c1", "x1"}
    p1 = sections["p1"]["links"]
    # the link's capacity as the topology gives it (2mbit); the agent applies its pace (lease_plane.AGENT_PACE)
    assert p1["p1-e2"]["capacity_bps"] == 2_000_000 and "capacity_bps" not in p1["p1-e0"]
    lease = p1["p1-e2"]["leases"][0]
    assert lease["expires_at"] == 1010.0 and lease["guarantee_bps"] == 500_000
    assert lease["holder"] == L.holder_identity(3, "prov").pubkey_text
    assert [l["interface"] for ll in p1.values() for l in ll["leases"]] == [256, 255]
    assert sections["c1"]["links"]["c1-e0"]["leases"][0]["udp_port"] == p1["p1-e0"]["leases"][0]["udp_port"]
    for node, sec in sections.items():      # what the agent will parse
        free = {f"{node}-e{k}": index for k, index in enumerate((0, 2, 3))}      # the mesh's peer indexes
        cfg = parse_lease_config(json.loads(json.dumps(sec)), free)
        assert all(lid for (_, lid) in cfg.ports)
    assert ifaces["c1"]["p1"][0][1] == 256


def test_htb_plans_only_on_rated_link_ends_with_leases():
    t = topo({"link": "c1--p1"}, {"link": "p1--x1", "holder": "prov", "guarantee": "500kbit"})
    plans = agent_configs.htb_plans(t)
    assert set(plans) == {("p1", 2), ("x1", 2)}
    classes = plans[("p1", 2)]["classes"]
    assert [(c["lease"], c["rate_bps"], c["prio"]) for c in classes] == [(None, 2_000_000, 0), ("free", 1000, 7),
                                                                        ("prov_2", 500_000, 0)]
    assert agent_configs.htb_plans(topo()) == {}


def test_with_route_servers_a_node_names_its_isps_holder_key_and_gets_no_static_paths(tmp_path):
    t = topo({"link": "c1--p1"}, {"link": "p1--x1", "holder": "prov"})
    links = [dict(rec, a_addr=f"fd00::{i}:1", b_addr=f"fd00::{i}:2") for i, rec in enumerate(links_state(t))]
    state = {"seed": 3, "links": links, "leases_started_at": 0.0}
    configs = agent_configs.agent_configs(t, dict(state, routing="route-server"), tmp_path)
    rs = {n: c["route_server"] for n, c in configs.items()}
    assert rs["c1"]["lease_holders"] == [L.holder_identity(3, "cust").pubkey_text]      # c1's isp holds c1--p1's
    assert rs["p1"]["lease_holders"] == [L.holder_identity(3, "prov").pubkey_text]
    assert "lease_holders" not in rs["q1"] and "lease_holders" not in rs["x1"]            # hold nothing
    assert all(c["paths"] == {} and c["leases"] for n, c in configs.items() if n != "q1")
    static = agent_configs.agent_configs(t, dict(state, routing="static"), tmp_path)
    assert "route_server" not in static["c1"] and static["c1"]["paths"]


def test_holder_identity_is_deterministic_per_seed_and_isp():
    assert L.holder_identity(3, "a").pubkey_text == L.holder_identity(3, "a").pubkey_text
    assert L.holder_identity(3, "a").pubkey_text != L.holder_identity(4, "a").pubkey_text
    assert L.holder_identity(3, "a").pubkey_text != L.holder_identity(3, "b").pubkey_text


def test_node_origin_attr_is_checked():
    d = copy.deepcopy(BASE)
    d["nodes"]["c1"]["attrs"] = {"lease_origin": {"priority": 16}}
    with pytest.raises(TopologyError, match="lease_origin"):
        validate(from_dict(d, "t.yaml"))
    d["nodes"]["c1"]["attrs"] = {"lease_origin": {"priority": 15, "customer": True}}
    validate(from_dict(d, "t.yaml"))


@pytest.mark.parametrize("roles, market, error", [
    (["router", "issuer"], {"hub": True, "hub_fee": 10}, None),
    (["router"], {"hub": True}, "only a node with the role issuer"),
    (["router", "issuer"], {"hub": "yes"}, "hub: expected bool"),
    (["router", "issuer"], {"hub_fee": True}, "hub_fee: expected int"),
    (["router", "issuer"], {"hub_fee": -1}, "hub_fee: atomic units >= 0"),
    (["router", "issuer"], {"fee": 1}, "expected {hub"),
    (["router", "issuer"], [1], "expected {hub"),
])
def test_node_market_attr_is_checked(roles, market, error):
    d = copy.deepcopy(BASE)
    d["nodes"]["c1"]["roles"] = roles
    d["nodes"]["c1"]["attrs"] = {"market": market}
    if error is None:
        validate(from_dict(d, "t.yaml"))
    else:
        with pytest.raises(TopologyError, match=f"node c1: attrs: market: {re.escape(error)}"):
            validate(from_dict(d, "t.yaml"))


def test_cli_lease_config_settings_parse_and_reject():
    from testbed.cli.leases import parse_changes
    assert parse_changes(["max_priority_bandwidth=500", "clear_customer_bit=true", "virtual_router=vr1",
                          "deprioritize_non_customer=null"]) == {
        "max_priority_bandwidth": 500, "clear_customer_bit": True, "virtual_router": "vr1",
        "deprioritize_non_customer": None}
    for bad in (["guarantee=5"], ["max_priority_bandwidth"], []):
        with pytest.raises(RuntimeError):
            parse_changes(bad)


def test_cli_leases_renders_an_agent_answer(capsys, monkeypatch):
    from rich.console import Console

    from node.leases.datapath import LeaseDataPath
    from testbed.cli import leases as cli_leases
    monkeypatch.setattr(cli_leases, "out", Console(width=250))
    t = topo({"link": "p1--x1", "holder": "prov", "guarantee": "500kbit", "term": "10s"})
    sections, _ = agent_configs.lease_sections(t, links_state(t), 3, started_at=0.0)
    cfg = parse_lease_config(sections["p1"], {"p1-e0": 0, "p1-e1": 2, "p1-e2": 3})
    dp = LeaseDataPath(cfg.table)
    dp.ingress(256, 0xF800, 1000, 1.0)
    dp.scheduler("p1-e2")
    cli_leases.render("p1", json.loads(json.dumps(dp.describe(2.0))))
    text = capsys.readouterr().out
    assert "prov_1" in text and "p1-e2/prov_1" in text and "256" in text


from hypothesis import given, settings, strategies as st  # noqa: E402

_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
                       | st.text(max_size=12) | st.sampled_from(["c1--p1", "p1--x1", "cust", "1mbit", "2h"]),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(L.LEASE_FIELDS + ("x",)), _values, max_size=6) | _values,
                max_size=3))
def test_any_lease_entry_gives_leases_or_a_topology_error(entries):
    try:
        t = topo(*entries)
    except TopologyError:
        return
    L.declared_leases(t)
    agent_configs.htb_plans(t)
