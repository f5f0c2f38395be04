"""Fuzz: topology files in every format pktlab reads (native YAML and JSON, meshnet-lab JSON, GraphML, GML) and
generator strings, each through `load(path)` as `pktlab validate FILE` does.

Must hold for any input: a valid Topology (which dumps again) or a TopologyError naming the file; never another
exception, never a long stall (the alias bound keeps a YAML bomb small)."""
import json
import tempfile
from pathlib import Path

import networkx as nx
import yaml
from hypothesis import strategies as st

from testbed.topology import TopologyError, dumps, load
from testbed.topology import generators
from fuzzing import harness
from test_topology_fuzz import documents

_TMP = tempfile.TemporaryDirectory(prefix="pktlab-fuzz-topology-")     # removed at exit
TMP = Path(_TMP.name)

keys = st.one_of(st.sampled_from(["a", "b", "id", "name", "x", "y", "label", "index", "isps", "attrs", "roles",
                                  "isp", "pktlab_topology", "rate", "ab_delay", "attr_k"]),
                 st.integers(-3, 3), st.booleans())
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(max_size=12), st.sampled_from(["5ms", "10mbit", "1%", "json:[1]", "json:{", "router"]))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(keys, c, max_size=3)),
                      max_leaves=10)


def load_file(name: str, data) -> None:
    path = TMP / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(data)
    try:
        topo = load(str(path))
    except TopologyError as e:
        assert str(e).startswith(str(path)), e
        return
    dumps(topo)


def yaml_text(doc) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return "{}"


native = st.one_of(documents, st.fixed_dictionaries({"nodes": st.dictionaries(
    st.sampled_from(["a", "b"]), st.fixed_dictionaries({"attrs": values})), "links": st.just(["a--b"])}))


@harness(st.one_of(native.map(yaml_text), st.text(max_size=200),
                   st.lists(st.sampled_from(["a: &a [x, x]\n", "b: &b [*a, *a, *a]\n", "c: [*b, *b, *b]\n",
                                             "nodes: [a, b]\n", "links: [a--b]\n", "attrs: {1: x}\n",
                                             "nodes: {a: {attrs: {[1]: 2}}}\n", "- *a\n", "? [a]\n: b\n"]),
                            max_size=8).map("".join)))
def test_fuzz_native_yaml_file(text):
    load_file("fuzz.yaml", text)


@harness(st.one_of(documents.map(json.dumps), st.text(max_size=200)))
def test_fuzz_native_json_file(text):
    load_file("fuzz.json", text)


meshnet_node = st.fixed_dictionaries({"id": st.one_of(st.integers(0, 5), st.sampled_from(["a", "b"]), values)},
                                     optional={"name": values, "x": values, "y": values, "z": values})
meshnet_link = st.fixed_dictionaries({"source": st.one_of(st.integers(0, 5), values),
                                      "target": st.one_of(st.integers(0, 5), values)},
                                     optional={"quality": values, "rate": values})


@harness(st.fixed_dictionaries({"links": st.lists(meshnet_link, min_size=1, max_size=6)},
                                optional={"nodes": st.one_of(st.lists(meshnet_node, max_size=6), values),
                                          "directed": values, "graph": values, "other": values}).map(json.dumps))
def test_fuzz_meshnet_lab_file(text):
    load_file("fuzz-meshnet.json", text)


attr_names = st.sampled_from(["label", "name", "roles", "isp", "attr_k", "index", "a", "b", "rate", "delay",
                              "ab_loss", "ba_loss", "seed", "isps", "attrs", "pktlab_topology", "x", "y"])
attr_values = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
                        st.sampled_from(["router route_server", "json:[1]", "json:{}", "5ms", "10mbit", "peer",
                                         '{"x": {"relations": {"y": "peer"}}}', "unlimited"]))


@st.composite
def graphs(draw):
    g = nx.Graph()
    g.graph.update(draw(st.dictionaries(attr_names, attr_values, max_size=4)))
    nodes = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "0", "1"]), min_size=1, max_size=5, unique=True))
    for n in nodes:
        g.add_node(n, **draw(st.dictionaries(attr_names, attr_values, max_size=3)))
    for _ in range(draw(st.integers(0, 6))):
        u, v = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes))
        g.add_edge(u, v, **draw(st.dictionaries(attr_names, attr_values, max_size=3)))
    return g


def graphml_text(g) -> str:
    return "\n".join(nx.generate_graphml(g))


def gml_text(g) -> str:
    try:
        return "\n".join(nx.generate_gml(g))
    except nx.NetworkXError:
        return "graph [ ]"


def garble(strategy):
    """The text, or the text with a slice replaced: broken files of the right format."""
    return st.tuples(strategy, st.integers(0, 400), st.integers(0, 20), st.text(max_size=8)).map(
        lambda t: t[0] if not t[2] else t[0][:t[1]] + t[3] + t[0][t[1] + t[2]:])


@harness(garble(graphs().map(graphml_text)))
def test_fuzz_graphml_file(text):
    load_file("fuzz.graphml", text)


@harness(garble(graphs().map(gml_text)))
def test_fuzz_gml_file(text):
    load_file("fuzz.gml", text)


numbers = st.one_of(st.integers(-3, 30).map(str), st.sampled_from(["1e-30", "1e30", "0.5", "nan", "inf", "-0",
                                                                   "1e-300", "0.999999999999999999", "3x3",
                                                                   "2x1e2", ""]))


@harness(st.builds(lambda fam, args, extra: f"{fam}:{','.join(args)}{extra}",
                   st.sampled_from(list(generators.FAMILIES)), st.lists(numbers, max_size=4),
                   st.sampled_from(["", ",delay=5ms", ",rate=1e-30mbit", ",seed=3", ",loss=1e-300%", ",seed=1e30"])))
def test_fuzz_generator_string(spec):
    try:
        topo = load(spec)
    except TopologyError:
        return
    dumps(topo)
