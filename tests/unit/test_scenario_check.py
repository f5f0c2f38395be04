"""A scenario is checked in full before anything is built (issue 13 item 9, issue 15 item 2): what used to crash
while loading, crash after the mesh was built, or pass with a dead traffic thread is a ScenarioError naming the
field, or a failed scenario. No root needed: nothing here builds a mesh."""
import threading
from types import SimpleNamespace

import pytest

from testbed import faults as F
from testbed import scenario as S
from testbed.topology import load


def load_text(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return S.load_scenario(str(path))


def shape_error(tmp_path, text) -> str:
    with pytest.raises(S.ScenarioError) as e:
        load_text(tmp_path, text)
    return str(e.value)


BASE = "topology: line:3\n"

LOAD_TIME = [      # each used to raise something other than ScenarioError while loading
    (b"topology: line:3\nname: \xff\xfe\n", "not UTF-8 text (byte 23: b'\\xff')"),
    (BASE + "seed: abc\n", "seed: expected integer, got 'abc'"),
    (BASE + "seed: -1\n", "seed: -1 is less than the minimum of 0"),
    (BASE + "timeline: 1\n", "timeline: expected array, got 1"),
    (BASE + "traffic: {ping: x}\n", "traffic: expected array"),
    (BASE + "assertions: x\n", "assertions: expected array, got 'x'"),
    (BASE + "reduce: x\n", "reduce: expected integer, got 'x'"),
    (BASE + "requires: x\n", "requires: expected array, got 'x'"),
    (BASE + "requires: [warp-drive]\n", "requires: unknown capabilities warp-drive (known: freifunk-data)"),
    (BASE + "duration: .nan\n", "duration: nan is not a finite number"),
    (BASE + "wait: soon\n", "wait: expected number, got 'soon'"),
    (BASE + "timeline: [{at: x, heal: all}]\n", "timeline[0].at: expected number or object, got 'x'"),
    (BASE + "timeline: [[1]]\n", "timeline[0]: expected object, got [1]"),
    (BASE + "timeline: [{at: 1}]\n", "timeline[0]: exactly one of fault, heal, action, expect, got none"),
    (BASE + "traffic: [{ping: {from: n1}}]\n", "traffic[0].ping: 'to' is missing"),
    ("topology: " + "x" * 20000 + "\n", "topology: expected string or object"),
    ("topology: line:3\nname: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    (BASE + "seed: 1\nseed: 2\n", "top level: field 'seed' given twice"),
    ("- a\n- b\n", "a scenario is a mapping"),
    (BASE + "tpology: x\n", "unknown field(s) 'tpology'"),
]


@pytest.mark.parametrize("text, shown", LOAD_TIME, ids=[str(i) for i in range(len(LOAD_TIME))])
def test_load_time_problems_are_named(tmp_path, text, shown):
    msg = shape_error(tmp_path, text)
    assert str(tmp_path / "s.yaml") in msg and shown in msg, msg


def prepared(scenario: dict):
    runner = S.Runner(scenario)
    runner.prepare()
    return runner


def meaning_error(scenario: dict) -> str:
    with pytest.raises(S.ScenarioError) as e:
        prepared(dict({"name": "t", "topology": "line:3", "seed": 1}, **scenario))
    return str(e.value)


AFTER_BUILD = [    # each used to crash (or pass) only after the mesh was built
    ({"traffic": [{"ping": {"from": "n1", "to": "n9"}}]}, "traffic[0].ping.to: topology line-3 has no node 'n9'"),
    ({"traffic": [{"iperf": {"from": "n1"}}]}, "traffic[0].iperf: 'to' is missing"),
    ({"timeline": [{"at": 0, "expect": {"reachable": {"from": "n1"}}}]}, "reachable: 'to' is missing"),
    ({"timeline": [{"at": 0, "expect": {"reachable": {"from": "n1", "to": "n3"}, "within": "soon"}}]},
     "timeline[0].expect.within: expected number, got 'soon'"),
    ({"timeline": [{"at": 0, "action": ""}]}, "timeline[0].action: expected reroute, restart NODE,"),
    ({"timeline": [{"at": 0, "action": "explode"}]}, "unknown action 'explode'"),
    ({"timeline": [{"at": 0, "action": "restart n7"}]}, "has no node 'n7'"),
    ({"timeline": [{"at": 0, "fault": "loss n1--n3 10%"}]}, "no link between 'n1' and 'n3' (n1's links go to n2)"),
    ({"timeline": [{"at": 0, "fault": "crash n4"}]}, "topology line-3 has no node 'n4'"),
    ({"timeline": [{"at": 0, "fault": "partition n1|n5"}]}, "partition n1|n5: no node 'n5'"),
    ({"timeline": [{"at": 0, "fault": "clock-skew n1 5s"}]}, "needs a mesh routed by route servers"),
    ({"timeline": [{"at": 0, "heal": "cut"}]}, "no fault named 'cut' is applied before it"),
    ({"timeline": [{"at": 2, "fault": "link-down n1--n2", "name": "cut"}, {"at": 1, "heal": "cut"}]},
     "timeline[0] (at 1 s).heal: no fault named 'cut'"),
    ({"timeline": [{"at": 0, "fault": "restart n2", "name": "r"}, {"at": 1, "heal": "r"}]}, "is instant"),
    ({"assertions": [{"throughput": {"from": "n1", "to": "n3", "at_least": "fast"}}]}, "at_least: bad rate 'fast'"),
    ({"assertions": [{"counters": {"node": "n0"}}]}, "assertions[0].counters.node: topology line-3 has no node 'n0'"),
    ({"assertions": [{"outage": {"from": "n1", "to": "n3"}}]}, "'at_most' is missing"),
    ({"timeline": [{"at": 0, "expect": {"reachable": {"from": "{random_nod}", "to": "n1"}}}]},
     "(placeholders: {random_node}"),
    ({"traffic": [{"ping": {"from": "n1", "to": "n2"}}], "topology": "grid:2x2"},
     "has no node 'n1'; its nodes: r1c1, r1c2, r2c1, r2c2"),
    ({"timeline": [{"at": {"height": 3}, "fault": "link-down n1--n2"}]},
     "timeline[0] (at block 3).at: a step at a block height needs a topology with a chain node"),
    ({"timeline": [{"at": {"height": -1}, "heal": "all"}]}, "timeline[0].at"),
    ({"assertions": [{"balance": {"node": "n1"}}]}, "'at_least' is missing"),
    ({"assertions": [{"chain_height": {"at_least": 2, "nodes": ["n8"]}}]}, "has no node 'n8'"),
    # the bandwidth market
    ({"timeline": [{"at": 0, "action": {"market_sell": {"node": "n1", "lease": "up", "price": 1}}}]},
     "action: market_sell: 'term' is missing"),
    ({"timeline": [{"at": 0, "action": {"market_sell": {"node": "n1", "lease": "up", "price": 1, "term": "x"}}}]},
     "market_sell.term: term: expected a duration"),
    ({"timeline": [{"at": 0, "action": {"market_sell": {"node": "n1", "lease": "up", "price": 1, "term": "1m"}}}]},
     "market_sell.node: n1 runs no market (give it the role issuer)"),
    ({"timeline": [{"at": 0, "action": {"market_sell": {"node": "n1", "lease": "up", "price": 0, "term": "1m"}}}]},
     "action: market_sell.price: 0 is less than or equal to the minimum of 0"),
    ({"timeline": [{"at": 0, "action": {"market_buy": {"buyer": "n9", "seller": "n1", "token": "n1.up"}}}]},
     "market_buy.buyer: topology line-3 has no node 'n9'"),
    ({"timeline": [{"at": 0, "action": {"market_buy": {"buyer": "n1", "seller": "n2", "token": "bad token"}}}]},
     "action: market_buy.token: 'bad token' does not match"),
    ({"assertions": [{"swap": {"buyer": "n1", "token": "t", "outcome": "maybe"}}]},
     "assertions[0].swap.outcome: 'maybe' is not one of ['completed', 'refunded']"),
    ({"assertions": [{"lease_active": {"lease": "up", "holder": "n7"}}]}, "lease_active.holder: topology line-3 "
                                                                          "has no node 'n7'"),
    ({"assertions": [{"contended_throughput": {"from": "n1", "against": "n2", "to": "n3", "at_least": "x"}}]},
     "at_least: bad rate 'x'"),
]


@pytest.mark.parametrize("scenario, shown", AFTER_BUILD, ids=[str(i) for i in range(len(AFTER_BUILD))])
def test_problems_found_before_anything_is_built(scenario, shown):
    assert shown in meaning_error(scenario)


def test_unknown_node_fails_the_run_before_building(monkeypatch):
    """The issue's case: a probe to a node the topology lacks. It used to crash its thread (KeyError 'n9') and
    report PASSED; now the run ends in error before any mesh exists."""
    import testbed.mesh
    monkeypatch.setattr(testbed.mesh.Mesh, "up", lambda *a, **k: pytest.fail("a mesh was built"))
    result = S.Runner({"name": "t", "topology": "line:3", "traffic": [{"ping": {"from": "n1", "to": "n9"}}],
                       "duration": 1}).run()
    assert result.status == "error" and not result.ok
    assert "no node 'n9'" in result.reason


def test_bundled_scenarios_pass_the_checks():
    for path in S.bundled():
        assert prepared(str(path)).plan["timeline"] or prepared(str(path)).plan["traffic"]


class DeadMesh:
    """A mesh whose every command fails the way a vanished node does: the probe thread dies mid-run."""

    def __init__(self, tmp_path):
        self.topo = load("line:3")
        self.run = SimpleNamespace(path=lambda *p: tmp_path.joinpath(*p), dir=tmp_path, name="dead", state={"links": []})

    def exec(self, node, argv, timeout=60):
        raise OSError(f"mnexec: node {node} is gone")

    def ip6(self, node):
        return "fc00::1"


def test_a_traffic_thread_that_dies_fails_the_scenario(tmp_path):
    result = S.Runner({"name": "t", "topology": "line:3", "traffic": [{"ping": {"from": "n1", "to": "n3"}}],
                       "duration": 0.5}, mesh=DeadMesh(tmp_path)).run()
    assert result.status == "failed"
    died = [c for c in result.checks if not c.ok]
    assert [c.name for c in died] == ["traffic ping n1->n3"]
    assert "died: OSError: mnexec: node n1 is gone" in died[0].message
    assert not [t for t in threading.enumerate() if isinstance(t, S.Probe)]


def test_bundled_descriptions_say_what_the_scenarios_do():
    """Issue 15 item 10: link-flap described a period it did not use; reroute-around-link-down said the agents do
    not run route servers."""
    from testbed.topology import parse_time
    for path in S.bundled():
        s = S.load_scenario(str(path))
        text = " ".join(s["description"].split())
        assert "do not run yet" not in text, path
        for step in s.get("timeline") or []:
            fault = F.parse_fault(step["fault"]) if isinstance(step.get("fault"), str) and "{" not in step["fault"] \
                else None
            if isinstance(fault, F.Flap):
                assert f"period of {parse_time(fault.period):g} s" in text, path
