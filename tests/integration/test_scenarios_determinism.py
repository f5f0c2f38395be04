"""The scenario seed fixes the topology, node keys and every random choice; `--seed` replays a run's timeline."""
import os

import pytest

from testbed import scenario as S
from testbed.topology import load


def fill(name, seed):
    s = S.load_scenario(name)
    topo = S.resolve_topology(s, seed)
    return topo, S.plan(s, topo, seed)["timeline"]


def test_same_seed_same_topology_and_choices():
    topo1, timeline1 = fill("freifunk-ulm", 20)
    topo2, timeline2 = fill("freifunk-ulm", 20)
    assert [l.name for l in topo1.links] == [l.name for l in topo2.links]
    assert timeline1 == timeline2
    assert "{random" not in repr(timeline1)


def test_another_seed_other_choices():
    _, timeline1 = fill("freifunk-ulm", 20)
    _, timeline2 = fill("freifunk-ulm", 21)
    assert timeline1 != timeline2


def test_random_generators_follow_the_seed():
    s = {"topology": "random:12,0.3", "_file": None}
    assert [l.name for l in S.resolve_topology(s, 5).links] == [l.name for l in S.resolve_topology(s, 5).links]
    assert [l.name for l in S.resolve_topology(s, 5).links] != [l.name for l in S.resolve_topology(s, 6).links]


def test_reduced_import_is_connected_with_cycles():
    topo = S.reduce_topology(load("freifunk-ulm"), 24)
    g = topo.graph()
    import networkx as nx
    assert len(g) == 24 and nx.is_connected(g)
    assert g.number_of_edges() > 24          # not a tree: there are alternative paths to reroute over


RANDOM_SCENARIO = {"name": "random-choice", "topology": "ring:5", "seed": 9,
                   "timeline": [{"at": 0, "fault": "link-down {random_link}", "name": "x"},
                                {"at": 0, "heal": "x"},
                                {"at": 0, "fault": "pause {random_node}", "name": "y"},
                                {"at": 0, "heal": "y"}]}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")
def test_seed_replays_a_runs_timeline():
    runs = [S.Runner(RANDOM_SCENARIO, seed=seed).run() for seed in (4, 4)]
    assert all(r.status == "passed" for r in runs), [r.checks for r in runs]
    steps = [[{k: v for k, v in e.items() if k != "at"} for e in r.timeline] for r in runs]
    assert steps[0] == steps[1]
    assert [c.name for c in runs[0].checks] == [c.name for c in runs[1].checks]
