"""Topology files that used to end in a traceback or a stall (issue 13 item 8): each is a TopologyError now that
names the file and what is wrong."""
import pytest

from testbed.topology import TopologyError, load
from testbed.topology.reader import MAX_YAML_NODES


def error_of(tmp_path, name, text) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TopologyError) as e:
        load(str(path))
    assert str(e.value).startswith(str(path))
    return str(e.value)


def test_meshnet_lab_name_that_is_a_list(tmp_path):
    msg = error_of(tmp_path, "m.json", '{"nodes": [{"id": 1, "name": ["a"]}, {"id": 2}], '
                                       '"links": [{"source": 1, "target": 2}]}')
    assert "node 1: name must be a string, got list" in msg


@pytest.mark.parametrize("attrs, shown", [("{1: x}", "got a number 1 (quote it in YAML)"),
                                          ("{x: {true: 1}}", "got a boolean True"),
                                          ("{null: 1}", "got nothing None")])
def test_yaml_node_attrs_with_non_string_keys(tmp_path, attrs, shown):
    msg = error_of(tmp_path, "k.yaml", f"nodes:\n  a: {{attrs: {attrs}}}\n  b: {{}}\nlinks: [a--b]\n")
    assert f"node a: attrs: keys must be strings, {shown}" in msg


GML = """graph [
  pktlab_topology 1
  {graph}
  node [ id 0 label "a" ]
  node [ id 1 label "b" ]
  node [ id 2 label "c" ]
  edge [ source 0 target 1 {e1} ]
  edge [ source 1 target 2 {e2} ]
]
"""


@pytest.mark.parametrize("graph, shown", [("isps 5", "graph attribute isps: expected a JSON text, got 5"),
                                          ("attrs 3.5", "graph attribute attrs: expected a JSON text, got 3.5"),
                                          ('isps "[1"', "graph attribute isps: expected a JSON text")])
def test_gml_isps_and_attrs_that_are_not_json_texts(tmp_path, graph, shown):
    assert shown in error_of(tmp_path, "g.gml", GML.format(graph=graph, e1="", e2=""))


def test_gml_mixed_type_index(tmp_path):
    msg = error_of(tmp_path, "g.gml", GML.format(graph="", e1="index 1", e2='index "x"'))
    assert "edge b--c: index must be a whole number, got x" in msg


def test_random_generator_with_a_probability_below_float_resolution():
    topo = load("random:2,1e-30")      # networkx divided by log(1 - p) = 0
    assert len(topo.nodes) == 2 and len(topo.links) == 1      # connected by _connect, as for p = 0


def billion_laughs(levels: int) -> str:
    text, prev = "attrs:\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n", "l0"
    for i in range(1, levels):
        text += f"  l{i}: &l{i} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = f"l{i}"
    return text + "nodes: [a, b]\nlinks: [a--b]\n"


def test_yaml_alias_bomb_is_refused_before_anything_walks_it(tmp_path):
    text = billion_laughs(9)           # 9^9 = 387 million values from about 500 bytes
    assert len(text) < 600
    msg = error_of(tmp_path, "bomb.yaml", text)
    assert f"aliases expand to more than {MAX_YAML_NODES} values" in msg


def test_yaml_aliases_within_the_bound_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(billion_laughs(3))
    assert len(load(str(path)).attrs["l2"]) == 9


def test_yaml_alias_to_its_own_anchor(tmp_path):
    assert "an alias refers to its own anchor" in error_of(tmp_path, "r.yaml", "a: &a [*a]\nnodes: [a]\n")
