"""Topology generators: sizes, connectivity, names, determinism by seed, link parameters, errors."""

import networkx as nx
import pytest

from testbed.topology.generators import FAMILIES, FORMS, generate, parse
from testbed.topology import LinkParams, TopologyError, load


@pytest.mark.parametrize("spec, nodes, links", [
    ("line:5", 5, 4), ("line:1", 1, 0), ("ring:8", 8, 8), ("star:6", 6, 5), ("grid:3x4", 12, 17),
    ("grid:2,3", 6, 7), ("grid8:3x3", 9, 20), ("tree:2x3", 13, 12), ("tree:3,2", 15, 14), ("tree:0x4", 1, 0),
    ("full:5", 5, 10), ("smallworld:20,4,0.2", 20, 40), ("scalefree:30,2", 30, 56), ("multi-isp:3,4", 12, 15),
    ("multi-isp:2,1", 2, 1), ("multi-isp:5,3", 15, 21),
])
def test_sizes(spec, nodes, links):
    t = load(spec)
    assert (len(t.nodes), len(t.links)) == (nodes, links)


@pytest.mark.parametrize("spec", ["line:5", "ring:8", "star:6", "grid:4x4", "grid8:3x5", "tree:3x2", "full:6",
                                  "random:40,0.02", "random:30,0", "geometric:40,0.1", "smallworld:30,4,0.5",
                                  "scalefree:50,1", "multi-isp:6,3"])
def test_connected_and_valid(spec):
    t = load(spec)  # load() validates: connected, unique links, no self-loops, names fit interfaces
    assert nx.is_connected(t.graph())
    assert t.warnings == []


def test_names_are_short_and_stable():
    assert list(load("line:3").nodes) == ["n1", "n2", "n3"]
    assert list(load("grid:2x2").nodes) == ["r1c1", "r1c2", "r2c1", "r2c2"]
    assert [link.name for link in load("grid:2x2").links] == ["r1c1--r1c2", "r1c1--r2c1", "r1c2--r2c2",
                                                              "r2c1--r2c2"]
    assert [link.name for link in load("ring:3").links] == ["n1--n2", "n2--n3", "n3--n1"]
    assert load("star:4").neighbors("n1") == ["n2", "n3", "n4"]
    assert load("tree:2x2").neighbors("n1") == ["n2", "n3"]


def test_grid_neighbour_counts():
    g4, g8 = load("grid:3x3").graph(), load("grid8:3x3").graph()
    assert g4.degree["r2c2"] == 4 and g4.degree["r1c1"] == 2
    assert g8.degree["r2c2"] == 8 and g8.degree["r1c1"] == 3
    assert load("grid:3x3").nodes["r1c1"].attrs == {"x": 0, "y": 2}


def test_link_parameters_become_defaults():
    t = load("grid:3x3,rate=10mbit,delay=5ms,loss=1%")
    want = LinkParams(rate_bps=10_000_000, delay_s=0.005, loss=0.01)
    assert t.defaults == want
    assert all(link.ab == want and link.ba == want for link in t.links)
    assert t.links[0].ab is not t.links[1].ab  # independent objects: a fault on one link stays there


RANDOM = ["random:30,0.1", "geometric:30,0.25", "smallworld:30,4,0.3", "scalefree:30,2"]


def edges(t):
    return [link.name for link in t.links]


@pytest.mark.parametrize("spec", RANDOM)
def test_deterministic_by_seed(spec):
    assert edges(load(spec, seed=7)) == edges(load(spec, seed=7))
    assert edges(load(spec + ",seed=7")) == edges(load(spec, seed=7))
    assert load(spec, seed=7).seed == 7


@pytest.mark.parametrize("spec", RANDOM)
def test_different_seeds_differ(spec):
    assert edges(load(spec, seed=1)) != edges(load(spec, seed=2))


def test_default_seed_is_recorded():
    assert load("random:10,0.3").seed == 1
    assert load("ring:5").seed is None
    assert load("ring:5", seed=9).seed == 9


def test_seed_in_string_wins():
    assert load("random:10,0.3,seed=4", seed=9).seed == 4


def test_geometric_has_positions():
    t = load("geometric:20,0.3")
    assert all(0 <= n.attrs["x"] <= 1 and 0 <= n.attrs["y"] <= 1 for n in t.nodes.values())


def test_random_with_p_zero_is_joined_into_a_tree():
    t = load("random:25,0")
    assert len(t.links) == 24 and nx.is_tree(t.graph())


def test_multi_isp_structure():
    t = load("multi-isp:3,4")
    assert list(t.isps) == ["isp1", "isp2", "isp3"]
    assert t.isps["isp1"].relations == {"isp2": "customer", "isp3": "customer"}
    assert t.isps["isp2"].relations == {"isp1": "provider", "isp3": "peer"}
    assert t.isps["isp3"].relations == {"isp1": "provider", "isp2": "peer"}
    for isp in t.isps:
        members = [n for n in t.nodes.values() if n.isp == isp]
        assert len(members) == 4
        assert [n.name for n in members if "route_server" in n.roles] == [members[0].name]
    inter = [link for link in t.links if t.nodes[link.a].isp != t.nodes[link.b].isp]
    assert len(inter) == 3
    assert sorted(link.attrs["relation"] for link in inter) == ["peer", "provider", "provider"]
    assert all(t.nodes[e].attrs.get("edge") for link in inter for e in (link.a, link.b))


@pytest.mark.parametrize("spec, message", [
    ("grdi:3x3", "unknown generator 'grdi'; known generators: line:N"),
    ("ring:2", "N must be between 3 and"),
    ("ring:x", "N must be a whole number, got 'x'; expected ring:N"),
    ("grid:3", "1 argument(s) given, 2 needed; expected grid:RxC"),
    ("grid:3x3,speed=1", "unknown option 'speed'"),
    ("grid:3x3,delay=5", "delay: missing unit"),
    ("random:10,1.5", "P must be a number between 0.0 and 1.0"),
    ("full:5000", "too large"),
    ("ring:5,rate=1mbit,7", "positional argument '7' after key=value options"),
    ("line:5,seed=-1", "seed must be a whole number"),
    ("smallworld:10,10,0.1", "K must be between 2 and 9"),
])
def test_bad_generator_strings(spec, message):
    with pytest.raises(TopologyError) as e:
        load(spec)
    assert message in str(e.value)
    assert str(e.value).startswith(spec)


def test_every_family_is_listed():
    assert set(FAMILIES) == {"line", "ring", "star", "grid", "grid8", "tree", "full", "random", "geometric",
                             "smallworld", "scalefree", "multi-isp"}
    assert len(FORMS) == len(FAMILIES)


def test_parse():
    assert parse("grid:3x3,delay=5ms, Seed=2") == ("grid", ["3x3"], {"delay": "5ms", "seed": "2"})


def test_generate_directly_and_name():
    t = generate("ring:4,name=loop")
    assert t.name == "loop" and t.source == "ring:4,name=loop"
    assert load("grid:2x3").name == "grid-2x3"


def test_route_servers_keyword_spreads_servers_farthest_first():
    t = load("line:9,route_servers=2")
    assert t.nodes_with_role("route_server") == ["n2", "n9"]      # best connected (first of equals), then farthest
    t = load("grid:5x5,route_servers=1")
    assert t.nodes_with_role("route_server") == ["r2c2"]          # the first node with 4 links
    t = load("grid:10x10,route_servers=4")
    servers = t.nodes_with_role("route_server")
    g = t.graph()
    farthest = max(min(nx.shortest_path_length(g, n, s) for s in servers) for n in g)
    assert len(servers) == 4 and farthest <= 9                     # vs 18 hops across the grid from one corner


@pytest.mark.parametrize("spec, message", [("ring:5,route_servers=0", "route_servers must be between 1 and 5"),
                                           ("ring:5,route_servers=6", "route_servers must be between 1 and 5"),
                                           ("ring:5,route_servers=x", "route_servers must be a whole number")])
def test_bad_route_servers(spec, message):
    with pytest.raises(TopologyError, match=message):
        load(spec)


def _reach_bits(t, servers_placed):
    from testbed.topology.servers import director_bits
    g = t.graph()
    bits = {n: director_bits(g.degree(n)) for n in g}
    dist = nx.multi_source_dijkstra_path_length(g, set(servers_placed), weight=lambda u, v, _: max(bits[u], bits[v]))
    return dist


def test_every_node_is_within_a_labels_reach_of_a_server():
    """One server in the middle of grid:20x20 is 20 hops (80 label bits) from the corners: more are placed."""
    from testbed.topology import servers
    t = load("grid:20x20")
    placed = servers.place(t, 1)
    dist = _reach_bits(t, placed)
    assert len(placed) > 1 and len(dist) == 400 and max(dist.values()) <= servers.REACH_BITS
    assert servers.director_bits(4) == 4 and servers.director_bits(100) == 10 and servers.director_bits(659) > 10


def test_servers_added_for_reach_go_where_they_cover_most():
    """Greedy set cover, not farthest-first (which put 5 on grid:20x20 for one asked, and 11 on smallworld:1000,4,0.05 for two): the
    servers beyond the asked count go where they bring the most nodes into reach, and every node is in reach."""
    from testbed.topology import servers
    for spec, most in (("grid:20x20", 3), ("smallworld:300,4,0.02", None)):
        t = load(spec, seed=1)
        placed = servers.place(t, 1)
        dist = _reach_bits(t, placed)
        assert len(dist) == len(t.nodes) and max(dist.values()) <= servers.REACH_BITS, spec
        assert most is None or len(placed) <= most, (spec, placed)


def test_big_meshes_get_route_servers_when_they_come_up():
    from testbed.topology import servers
    assert servers.default_count(servers.STATIC_PATHS_UP_TO) == 1 and servers.default_count(1259) == 3
    t = load("freifunk-aachen", allow_disconnected=True)
    placed = servers.place(t, 3)
    parts = sorted(nx.connected_components(t.graph()), key=len, reverse=True)
    assert len(set(placed) & parts[0]) >= 3                                # at least 3 in the largest
    assert all(len(set(placed) & p) == 1 for p in parts[1:])              # 1 in each of its 5 islands
    assert set(t.nodes_with_role("route_server")) == set(placed)
    dist = _reach_bits(t, placed)
    assert len(dist) == len(t.nodes) and max(dist.values()) <= servers.REACH_BITS     # every island covered
