"""Import and export: every meshnet-lab file, GraphML/GML round trips and foreign files, dot, PNG."""

from testbed.paths import MESHNET_LAB
import json

import networkx as nx
import pytest

from testbed.topology import formats as topology_io
from testbed.topology import TopologyError, load, save

MESHNET = MESHNET_LAB
MESHNET_FILES = sorted(MESHNET.glob("*/*.json"))


@pytest.mark.skipif(not MESHNET_FILES, reason="meshnet-lab data not present")
@pytest.mark.parametrize("path", MESHNET_FILES, ids=lambda p: p.name)
def test_every_meshnet_lab_file_loads(path):
    data = json.loads(path.read_text())
    t = load(str(path), allow_disconnected=True)     # the whole file
    # every distinct undirected link of the file is there (repeats and self-loops dropped)
    pairs = {frozenset((link["source"], link["target"])) for link in data["links"]
             if link["source"] != link["target"]}
    assert len(t.links) == len(pairs)
    ids = {n.attrs["id"] for n in t.nodes.values()}
    assert {e for pair in pairs for e in pair} <= ids
    assert len(t.nodes) == len(ids)
    for n in t.nodes.values():  # interface names fit: validate() passed, but say it here too
        assert all(len(name) <= 15 for name in t.interface_names(n.name))


def test_ulm_loads_with_names_labels_and_link_quality():
    t = load(str(MESHNET / "freifunk/freifunk-ulm.json"))
    assert len(t.nodes) == 217 and len(t.links) == 447
    n0 = t.nodes["n0"]
    assert n0.attrs["id"] == 0 and n0.attrs["label"] == "map11"
    first = t.links[0]
    assert (first.a, first.b) == ("n2", "n6")
    assert first.attrs == {"source_tq": 0.209, "target_tq": 0.08900000000000001, "type": "other"}


def test_hand_made_files_keep_their_names():
    t = load(str(MESHNET / "basics/two_hop.json"))
    assert list(t.nodes) == ["A", "B", "C"] and [link.name for link in t.links] == ["A--B", "B--C"]
    assert t.nodes["A"].attrs == {"id": "0000"}


def test_repeated_link_is_dropped_with_a_warning():
    t = load(str(MESHNET / "basics/freifunk_mesh_cloud.json"))
    assert any("dropped 1 repeated link" in w for w in t.warnings)


def test_disconnected_real_data_keeps_its_largest_component_unless_told_otherwise():
    path = str(MESHNET / "basics/feymann_s_channel.json")
    with pytest.raises(TopologyError, match="disconnected"):
        load(path, allow_disconnected=False)
    whole = load(path, allow_disconnected=True)
    parts = sorted(nx.connected_components(whole.graph()), key=len, reverse=True)
    assert len(parts) > 1 and any("disconnected" in w for w in whole.warnings)
    lcc = load(path)
    assert set(lcc.nodes) == parts[0] and nx.is_connected(lcc.graph())
    assert {frozenset((link.a, link.b)) for link in lcc.links} == \
        {frozenset((link.a, link.b)) for link in whole.links if link.a in parts[0]}
    assert any(f"kept its largest component, {len(parts[0])} of {len(whole.nodes)} nodes" in w for w in lcc.warnings)


def test_freifunk_aachen_by_default_is_its_largest_component_of_1259_nodes():
    assert len(load("freifunk-aachen").nodes) == 1259
    assert len(load("freifunk-aachen", allow_disconnected=True).nodes) == 1977


def test_meshnet_lab_ids_are_mapped_to_valid_names(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"nodes": [{"id": "a-1", "name": "first node"}, {"id": "b.2"}],
                                "links": [{"source": "a-1", "target": "b.2"}, {"source": "b.2", "target": 7}]}))
    t = load(str(path))
    assert list(t.nodes) == ["na_1", "nb_2", "n7"]
    assert t.nodes["na_1"].attrs == {"id": "a-1", "label": "first node"}


def test_meshnet_lab_bad_entries(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"links": [{"source": "a", "target": "b"}, {"source": [1], "target": "b"}]}))
    with pytest.raises(TopologyError, match=r"bad.json: link #2: source: id must be a string or integer"):
        load(str(path))


def test_meshnet_lab_export_round_trip(tmp_path):
    t = load(str(MESHNET / "basics/big_cross.json"))
    topology_io.write_meshnet_lab(t, tmp_path / "out.json")
    again = load(str(tmp_path / "out.json"))
    assert [link.name for link in again.links] == [link.name for link in t.links]
    assert list(again.nodes) == list(t.nodes)


@pytest.mark.parametrize("spec", ["default", "provider-customer", "three-tier", "triangle", "multi-isp:3,3",
                                  "geometric:15,0.4"])
@pytest.mark.parametrize("ext", ["graphml", "gml"])
def test_graphml_gml_round_trip(tmp_path, spec, ext):
    t = load(spec)
    path = tmp_path / f"t.{ext}"
    save(t, path)
    again = load(str(path))
    again.source = t.source
    assert again == t


def test_freifunk_graphml_round_trip(tmp_path):
    t = load(str(MESHNET / "freifunk/freifunk-ulm.json"))
    save(t, tmp_path / "ulm.graphml")
    again = load(str(tmp_path / "ulm.graphml"))
    again.source = t.source
    assert again == t


def test_foreign_graphml_and_gml(tmp_path):
    g = nx.karate_club_graph()  # integer ids, a 'club' attribute, edge weights
    nx.write_graphml(g, tmp_path / "karate.graphml")
    nx.write_gml(nx.relabel_nodes(g, str), tmp_path / "karate.gml")
    for name in ("karate.graphml", "karate.gml"):
        t = load(str(tmp_path / name))
        assert len(t.nodes) == 34 and len(t.links) == 78
        assert t.nodes["n0"].attrs["club"] == "Mr. Hi"
        assert "weight" in t.links[0].attrs


def test_foreign_graphml_with_labels_and_parallel_edges(tmp_path):
    g = nx.MultiGraph()
    g.add_node("x", label="alpha")
    g.add_node("y", label="beta")
    g.add_edge("x", "y")
    g.add_edge("x", "y")
    nx.write_graphml(g, tmp_path / "m.graphml")
    t = load(str(tmp_path / "m.graphml"))
    assert list(t.nodes) == ["alpha", "beta"] and len(t.links) == 1
    assert any("repeated" in w for w in t.warnings)


def test_unreadable_graphml(tmp_path):
    (tmp_path / "bad.graphml").write_text("<graphml><graph><node id=")
    with pytest.raises(TopologyError, match="bad.graphml: not a readable graphml file"):
        load(str(tmp_path / "bad.graphml"))


def test_dot_export(tmp_path):
    t = load("default")
    save(t, tmp_path / "t.dot")
    text = (tmp_path / "t.dot").read_text()
    assert text.startswith('graph "default" {') and text.rstrip().endswith("}")
    assert 'subgraph "cluster_alpha"' in text and 'subgraph "cluster_beta"' in text
    assert '"a1" [shape=doublecircle' in text
    assert '"a3" -- "a4" [label="10mbit 10ms loss 0.5%"];' in text
    assert '"a4" -- "b3" [label="20mbit 15ms / 5mbit 15ms"];' in text
    assert text.count(" -- ") == len(t.links)


@pytest.mark.parametrize("spec", ["default", "multi-isp:3,3", "grid:4x4"])
def test_png_small(tmp_path, spec):
    path = tmp_path / "t.png"
    save(load(spec), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_png_real_data_uses_coordinates(tmp_path):
    t = load(str(MESHNET / "freifunk/freifunk-bielefeld.json"))
    pos = topology_io.layout(t)
    n = t.nodes["n0"]
    assert pos["n0"] == (n.attrs["y"], n.attrs["x"])  # longitude across, latitude up
    topology_io.draw_png(t, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_layout_is_deterministic():
    t = load("scalefree:40,2")
    assert topology_io.layout(t) == topology_io.layout(t)


def test_big_layout_without_scipy():
    names = [f"n{i}" for i in range(600)]
    pos = topology_io._big_spring_layout(names, [(names[i], names[i + 1]) for i in range(599)], seed=1,
                                         iterations=5)
    assert len(pos) == 600 and all(map(lambda p: all(abs(c) < 100 for c in p), pos.values()))


def test_assign_names_prefers_labels_then_ids_then_numbers():
    assert topology_io.assign_names([(1, "A"), (2, "B")], {}) == {1: "A", 2: "B"}
    assert topology_io.assign_names([(1, "A"), (2, "A")], {}) == {1: "n1", 2: "n2"}
    assert topology_io.assign_names([("x" * 20, None), ("y", None)], {}) == {"x" * 20: "n1", "y": "n2"}


def test_to_networkx_is_plain_scalars():
    g = topology_io.to_networkx(load("provider-customer"))
    for _, data in list(g.nodes(data=True)) + [(None, d) for *_, d in g.edges(data=True)]:
        assert all(isinstance(v, (str, int, float)) for v in data.values())


@pytest.mark.slow
@pytest.mark.parametrize("spec", [str(MESHNET / "freifunk/freifunk-aachen.json"), "scalefree:1500,2",
                                  "geometric:1000,0.05"])
def test_png_big(tmp_path, spec):
    t = load(spec)
    topology_io.draw_png(t, tmp_path / "big.png")
    assert (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG"
    save(t, tmp_path / "big.graphml")
    again = load(str(tmp_path / "big.graphml"))
    again.source = t.source
    assert again == t


def test_png_shows_link_parameters_roles_and_isp_relations(monkeypatch):
    """Issue 15 item 10: the picture carries what the file says, not only the graph."""
    from testbed.topology import from_dict, load
    from testbed.topology.formats import figure
    fig = figure(load("default"))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "20mbit 15ms / 5mbit 15ms" in texts         # a4--b3, different each way
    assert "10mbit 10ms loss 0.5%" in texts
    assert "route_server" in texts and "miner" in texts and "chain pool block_miner" in texts
    assert "alpha peers with beta" in texts                 # every role of the default topology runs: no legend
    from testbed.topology import model
    monkeypatch.delitem(model.RUNNING_ROLES, "issuer")          # every role runs now: make one idle
    idle = figure(from_dict({"nodes": {"a": {"roles": ["issuer"]}, "b": {}}, "links": ["a--b"]}))
    assert "issuer*" in [t.get_text() for ax in idle.axes for t in ax.texts]
    tiers = [t.get_text() for ax in figure(load("three-tier")).axes for t in ax.texts]
    assert any("is the provider of" in t or "is the customer of" in t for t in tiers)
