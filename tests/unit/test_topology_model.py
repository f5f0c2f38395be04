"""The topology model: units, the native file format, validation (one test per error class), round trips."""

from testbed.paths import MESHNET_LAB
import json
import textwrap

import jsonschema
import networkx as nx
import pytest
import yaml

from testbed.topology import (Isp, Link, LinkParams, Node, Topology, TopologyError, bundled_examples, dumps,
                              format_fraction, format_rate, format_time, json_schema, load, parse_fraction,
                              from_dict, parse_rate, parse_time, save, validate)

# --- units ---


@pytest.mark.parametrize("text, bps", [("10mbit", 10_000_000), ("1gbit", 10**9), ("512kbit", 512_000),
                                       ("100bit", 100), ("1.5mbit", 1_500_000), ("10Mbit", 10_000_000),
                                       ("2e3kbit", 2_000_000), (None, None), ("unlimited", None)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text, seconds", [("10ms", 0.01), ("1s", 1.0), ("250us", 0.00025), ("0", 0.0), (0, 0.0),
                                           ("0.5ms", 0.0005), ("100ns", 1e-7)])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text, fraction", [("1%", 0.01), ("0.5%", 0.005), ("100%", 1.0), ("0%", 0.0), (0, 0.0)])
def test_parse_fraction(text, fraction):
    assert parse_fraction(text) == fraction


@pytest.mark.parametrize("parse, text, message", [
    (parse_rate, 10, "missing unit"), (parse_rate, "10", "missing unit"), (parse_rate, "10mbps", "bytes"),
    (parse_rate, "1.5bit", "whole number"), (parse_rate, "-1mbit", "negative"), (parse_rate, "0bit", "positive"),
    (parse_rate, "fast", "bad rate"), (parse_time, 10, "missing unit"), (parse_time, "five ms", "bad time"), (parse_time, "5 parsecs", "unknown time unit"),
    (parse_time, "5min", "unknown time unit"), (parse_time, "-5ms", "negative"), (parse_time, "2h", "unknown"),
    (parse_time, "9999s", "too large"), (parse_fraction, 0.5, "missing unit"), (parse_fraction, "101%", "above"),
    (parse_fraction, "1", "missing unit"), (parse_rate, True, "expected"), (parse_time, [1], "expected")])
def test_unit_errors(parse, text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


@pytest.mark.parametrize("bps, text", [(10_000_000, "10mbit"), (1_500_000, "1500kbit"), (123, "123bit"),
                                       (None, None), (10**12, "1tbit"), (0, "0bit")])
def test_format_rate(bps, text):
    assert format_rate(bps) == text


@pytest.mark.parametrize("value", [0.005, 0.1, 1.0, 2.5, 0.000125, 1e-7, 0.1 + 0.2, 0.0123456789])
def test_format_time_round_trips(value):
    assert parse_time(format_time(value)) == value


@pytest.mark.parametrize("value", [0.01, 0.005, 0.001, 1.0, 0.333, 0.1 + 0.2, 1e-9])
def test_format_fraction_round_trips(value):
    assert parse_fraction(format_fraction(value)) == value


def test_format_readable():
    assert format_time(0.005) == "5ms" and format_time(2.0) == "2s" and format_time(0.00025) == "250us"
    assert format_fraction(0.01) == "1%" and format_fraction(0.005) == "0.5%"


# --- the model ---


def small() -> Topology:
    return from_dict({
        "name": "small", "seed": 5, "defaults": {"rate": "10mbit", "delay": "5ms"},
        "isps": {"red": {"relations": {"blue": "provider"}}, "blue": {}},
        "nodes": {"a": {"roles": ["router", "route_server"], "isp": "red"}, "b": {"isp": "red"},
                  "c": {"isp": "blue", "roles": ["router", "route_server"], "attrs": {"x": 1, "y": 2}}},
        "links": ["a--b", {"a": "b", "b": "c", "loss": "1%", "a_to_b": {"rate": "2mbit"},
                           "b_to_a": {"delay": "7ms"}, "attrs": {"note": "uplink"}},
                  {"a": "a", "b": "c", "rate": None}],
    }, "small.yaml")


def test_from_dict_resolves_defaults_and_directions():
    t = small()
    assert validate(t) == []
    ab, bc, ac = t.links
    assert ab.ab == ab.ba == LinkParams(rate_bps=10_000_000, delay_s=0.005)
    assert bc.ab == LinkParams(rate_bps=2_000_000, delay_s=0.005, loss=0.01)
    assert bc.ba == LinkParams(rate_bps=10_000_000, delay_s=0.007, loss=0.01)
    assert ac.ab.rate_bps is None and ac.ab.delay_s == 0.005
    assert bc.name == "b--c" and bc.attrs == {"note": "uplink"}
    assert bc.params_from("c") is bc.ba


def test_relations_are_completed_on_the_other_side():
    t = small()
    assert t.isps["red"].relations == {"blue": "provider"}
    assert t.isps["blue"].relations == {"red": "customer"}


def test_queries():
    t = small()
    assert t.neighbors("b") == ["a", "c"]
    assert [link.name for link in t.links_of("c")] == ["b--c", "a--c"]
    assert t.interface_names("a") == ["a-eth0", "a-eth1"]
    assert t.nodes_with_role("route_server") == ["a", "c"]
    assert t.find_link("c", "b") is t.links[1] and t.find_link("a", "zz") is None
    g = t.graph()
    assert isinstance(g, nx.Graph) and g.number_of_nodes() == 3 and g.number_of_edges() == 3
    assert g.nodes["c"]["isp"] == "blue" and g.nodes["c"]["x"] == 1 and g.nodes["a"]["node"] is t.nodes["a"]
    assert g.edges["b", "c"]["link"] is t.links[1] and g.edges["b", "c"]["note"] == "uplink"
    assert g.edges["a", "b"]["delay_s"] == 0.005


def test_nodes_as_list_and_link_shorthand():
    t = from_dict({"nodes": ["a", {"name": "b", "roles": "miner"}], "links": ["a--b"]}, "x")
    assert list(t.nodes) == ["a", "b"] and t.nodes["b"].roles == ["miner"] and t.links[0].name == "a--b"


def test_to_dict_from_dict_round_trip():
    t = small()
    again = from_dict(json.loads(json.dumps(t.to_dict())), "small.yaml")
    assert again == t


@pytest.mark.parametrize("ext", ["yaml", "yml", "json"])
def test_save_load_round_trip(tmp_path, ext):
    t = small()
    path = tmp_path / f"t.{ext}"
    save(t, path)
    again = load(str(path))
    again.source = t.source
    assert again == t


@pytest.mark.parametrize("name", bundled_examples())
def test_bundled_examples_load_and_round_trip(tmp_path, name):
    t = load(name)
    assert [w for w in t.warnings if "roles with no effect yet" not in w] == []
    save(t, tmp_path / "t.yaml")
    again = load(str(tmp_path / "t.yaml"))
    again.source = t.source
    assert again == t


def test_default_example_shape():
    t = load("default")
    assert 6 <= len(t.nodes) <= 8 and len(t.isps) == 2
    for isp in t.isps:
        assert len([n for n in t.nodes.values() if n.isp == isp and "route_server" in n.roles]) == 1
    assert all(link.ab.rate_bps and link.ab.delay_s > 0 for link in t.links)


def test_seed_argument_overrides_file_seed():
    assert load("default").seed == 1
    assert load("default", seed=42).seed == 42


# --- schema ---


def test_schema_is_valid_and_accepts_bundled_examples():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    from testbed.topology.load import BUNDLED_DIR
    for path in BUNDLED_DIR.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    jsonschema.validate(small().to_dict(), schema)
    for spec in ("multi-isp:3,3", "geometric:10,0.5,loss=1%", str(MESHNET_LAB / "freifunk" / "freifunk-ulm.json")):
        jsonschema.validate(load(spec).to_dict(), schema)


@pytest.mark.parametrize("bad", [{"nodes": {"a": {"rolez": []}}}, {"nodes": {}, "links": [{"a": "x", "b": "y",
                                                                                          "delay": 10}]},
                                 {"nodes": {}, "defaults": {"rate": "10mbps"}}])
def test_schema_rejects_bad_documents(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())


# --- validation: one test per error class, asserting the message ---


def write(tmp_path, text: str, name="topo.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_of(spec, **kw) -> str:
    with pytest.raises(TopologyError) as e:
        load(spec, **kw)
    return str(e.value)


def test_unknown_node_in_link(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [a--b, {a: a, b: zz}]
    """)
    assert f"{p}: link a--zz: unknown node 'zz'" in error_of(p)


def test_duplicate_node_names_mapping(tmp_path):
    p = write(tmp_path, """
        nodes:
          a: {}
          b: {}
          a: {roles: [miner]}
        links: [a--b]
    """)
    assert error_of(p) == f"{p}: node a: duplicate node name"


def test_duplicate_node_names_list(tmp_path):
    p = write(tmp_path, '{"nodes": [{"name": "a"}, {"name": "a"}], "links": []}', "topo.json")
    assert error_of(p) == f"{p}: node a: duplicate node name"


def test_duplicate_links(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [a--b, {a: b, b: a, delay: 1ms}]
    """)
    assert f"{p}: link b--a: duplicate link (already defined as a--b)" in error_of(p)


def test_bad_value(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [{a: a, b: b, rate: fast}]
    """)
    assert error_of(p).startswith(f"{p}: link a--b: rate: bad rate 'fast'")


def test_negative_value(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [{a: a, b: b, delay: -5ms}]
    """)
    assert error_of(p) == f"{p}: link a--b: delay: negative time '-5ms'"


def test_missing_unit(tmp_path):
    p = write(tmp_path, """
        defaults: {delay: 10}
        nodes: {a: {}, b: {}}
        links: [a--b]
    """)
    assert error_of(p) == f"{p}: defaults: delay: missing unit in 10 (write e.g. '5ms')"


def test_unknown_field_typo(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [{a: a, b: b, dealy: 5ms}]
    """)
    msg = error_of(p)
    assert msg.startswith(f"{p}: link a--b: unknown field 'dealy' in a link (did you mean 'delay'?)")


def test_unknown_top_level_field(tmp_path):
    p = write(tmp_path, "nodez: {a: {}}\n")
    assert "unknown field 'nodez' in a topology (did you mean 'nodes'?)" in error_of(p)


def test_self_loop(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}}
        links: [a--b, a--a]
    """)
    assert f"{p}: link a--a: self-loop" in error_of(p)


def test_name_too_long_for_interfaces(tmp_path):
    p = write(tmp_path, """
        nodes: {averylongname: {}, b: {}}
        links: [averylongname--b]
    """)
    msg = error_of(p)
    assert f"{p}: node averylongname: name too long for interface names: 'averylongname-eth0' has 18" in msg
    assert "may have at most 10 characters" in msg


def test_name_too_long_depends_on_link_count():
    names = {"abcdefghij": {}, **{f"x{i}": {} for i in range(11)}}
    t = from_dict({"nodes": names, "links": [f"abcdefghij--x{i}" for i in range(11)]}, "t")
    with pytest.raises(TopologyError, match=r"abcdefghij-eth10' has 16 characters.*with 11 links the name may "
                                            r"have at most 9 characters"):
        validate(t)


def test_invalid_node_name():
    t = from_dict({"nodes": {"1a": {}, "b-c": {}}, "links": []}, "t")
    with pytest.raises(TopologyError) as e:
        validate(t, allow_disconnected=True)
    assert "t: node '1a': invalid name" in str(e.value) and "t: node 'b-c': invalid name" in str(e.value)
    assert len(e.value.errors) == 2


def test_disconnected_is_an_error_for_native_files(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}, c: {}, d: {}}
        links: [a--b, c--d]
    """)
    msg = error_of(p)
    assert msg.startswith(f"{p}: graph is disconnected: 2 components of sizes [2, 2]")
    assert "allow_disconnected" in msg


def test_disconnected_allowed_by_argument_or_file(tmp_path):
    p = write(tmp_path, """
        nodes: {a: {}, b: {}, c: {}}
        links: [a--b]
    """)
    t = load(p, allow_disconnected=True)
    assert len(t.warnings) == 1 and "disconnected" in t.warnings[0]
    q = write(tmp_path, "allow_disconnected: true\nnodes: {a: {}, b: {}, c: {}}\nlinks: [a--b]\n", "q.yaml")
    assert "disconnected" in load(q).warnings[0]
    assert "disconnected" in error_of(q, allow_disconnected=False)


def test_unknown_role_and_isp():
    t = from_dict({"nodes": {"a": {"roles": ["minr"], "isp": "nowhere"}}}, "t")
    with pytest.raises(TopologyError) as e:
        validate(t)
    assert "t: node a: roles: unknown role 'minr'" in str(e.value)
    assert "t: node a: unknown isp 'nowhere'" in str(e.value)


def test_isp_relation_errors(tmp_path):
    p = write(tmp_path, """
        isps:
          x: {relations: {y: customer}}
          y: {relations: {x: peer}}
        nodes: {a: {isp: x}}
    """)
    assert "isp x: relations: y: says y is its customer, but y says x is its peer (expected provider)" in error_of(p)
    q = write(tmp_path, "isps: {x: {relations: {z: peer}}}\nnodes: {a: {}}\n", "q.yaml")
    assert error_of(q) == f"{q}: isp x: relations: unknown isp 'z' (known: x)"
    r = write(tmp_path, "isps: {x: {relations: {x: buddy}}}\nnodes: {a: {}}\n", "r.yaml")
    assert "isp x: relations: x: unknown relation 'buddy'" in error_of(r)


def test_missing_route_server_is_a_warning():
    t = Topology(nodes={"a": Node("a", isp="x")}, isps={"x": Isp("x")}, source="t")
    assert validate(t) == ["t: isp x: no node with role route_server"]


def test_bad_yaml_and_json(tmp_path):
    p = write(tmp_path, "nodes: {a: [}\n")
    assert error_of(p).startswith(f"{p}: line 1 column")
    q = write(tmp_path, '{"nodes": ', "q.json")
    assert error_of(q).startswith(f"{q}: line 1 column 11: bad JSON")


def test_yaml_names_that_look_like_booleans_stay_strings(tmp_path):
    p = write(tmp_path, "nodes: {y: {}, n: {}, on: {}}\nlinks: [{a: y, b: n}, {a: n, b: on}]\n")
    assert list(load(p).nodes) == ["y", "n", "on"]


def test_non_string_name_is_explained(tmp_path):
    p = write(tmp_path, "nodes: {a: {}, 1: {}}\nlinks: []\n")
    assert "a node name must be a string, got a number 1 (quote it in YAML)" in error_of(p)


def test_params_built_in_code_are_checked():
    t = Topology(nodes={"a": Node("a"), "b": Node("b")}, source="t",
                 links=[Link("a", "b", LinkParams(rate_bps=-5), LinkParams(loss=2.0))])
    with pytest.raises(TopologyError) as e:
        validate(t)
    assert "t: link a--b: a_to_b: rate_bps: must be a positive whole number" in str(e.value)
    assert "t: link a--b: b_to_a: loss: a probability must be in [0, 1]" in str(e.value)


def test_empty_topology_is_an_error():
    with pytest.raises(TopologyError, match="t: no nodes"):
        validate(Topology(source="t"))


def test_unknown_spec():
    msg = error_of("no-such-thing")
    assert msg.startswith("no-such-thing: no such file, generator or bundled example")
    assert "grid:RxC" in msg and "default" in msg


def test_unknown_file_type(tmp_path):
    p = write(tmp_path, "x", "topo.txt")
    assert "unknown file type '.txt'" in error_of(p)


def test_dumps_is_readable():
    text = dumps(small())
    assert "rate: 10mbit" in text and "delay: 5ms" in text and "loss: 1%" in text
