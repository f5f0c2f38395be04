"""Fuzz: scenario files, through everything `pktlab run` does before it builds a mesh (read, schema, topology,
placeholders, the checks against the topology).

Must hold for any input: a ScenarioError or TopologyError naming what is wrong, or a plan whose every node,
link and fault target exists in its topology; never another exception."""
import tempfile
from pathlib import Path

import yaml
from hypothesis import strategies as st

from testbed import scenario as S
from testbed.topology import TopologyError
from fuzzing import harness

_TMP = tempfile.TemporaryDirectory(prefix="pktlab-fuzz-scenario-")     # removed at exit
TMP = Path(_TMP.name)

names = st.sampled_from(["n1", "n2", "n3", "n9", "a", "b", "r1c1", "{random_node}", "{random_nod}", "", "N1"])
links = st.sampled_from(["n1--n2", "n1-n2", "n1:n2", "n1->n2", "n2--n3", "n1--n3", "a--b", "{random_link}",
                         "{random_spare_link}", "n1-", "n1", "--"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(), st.text(max_size=6), names)
junk = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c,
                                                                                         max_size=3)), max_leaves=6)
numbers = st.one_of(st.integers(-1, 20), st.floats(-1, 30), st.sampled_from(["soon", "1s", None]))
pair = st.fixed_dictionaries({}, optional={"from": st.one_of(names, st.lists(names, max_size=3)),
                                           "to": st.one_of(names, st.lists(names, max_size=3)),
                                           "node": names, "at_least": st.one_of(numbers, st.just("1mbit")),
                                           "at_most": numbers, "seconds": numbers, "counter": junk,
                                           "interval": numbers, "port": numbers, "mss": numbers, "run": junk})
assertion = st.one_of(junk, st.dictionaries(st.sampled_from(list(S.ASSERTION_KINDS) + ["within", "name", "x"]),
                                            st.one_of(pair, numbers, junk), min_size=1, max_size=3))
faults = st.one_of(junk, st.builds(lambda k, t, v: f"{k} {t} {v}".strip(),
                                   st.sampled_from(["loss", "link-down", "flap", "partition", "crash", "rate",
                                                    "clock-skew", "route-server-loss", "malformed", "nope", ""]),
                                   st.one_of(links, names, st.just("n1,n2|n3"), st.just("n1/n9")),
                                   st.sampled_from(["", "10%", "1mbit", "period=1s", "count=x", "5s"])))
step = st.one_of(junk, st.fixed_dictionaries({"at": numbers}, optional={
    "fault": faults, "heal": st.one_of(st.sampled_from(["all", "f", "g"]), junk), "name": st.sampled_from(["f", "g"]),
    "action": st.one_of(st.sampled_from(["reroute", "restart n1", "restart n9", "", "explode"]), pair, junk),
    "expect": assertion, "check": junk}))
traffic = st.one_of(junk, st.dictionaries(st.sampled_from(["ping", "iperf", "command", "x"]),
                                          st.one_of(pair, junk), min_size=1, max_size=2))
scenarios = st.fixed_dictionaries(
    {"topology": st.one_of(st.sampled_from(["line:3", "ring:4", "triangle", "grid:2x2", "nope", "line:1",
                                            "x" * 5000]), junk)},
    optional={"name": junk, "seed": st.one_of(st.integers(-2, 2**70), junk), "reduce": st.one_of(numbers, junk),
              "requires": junk, "duration": numbers, "wait": numbers,
              "traffic": st.one_of(st.lists(traffic, max_size=3), junk),
              "timeline": st.one_of(st.lists(step, max_size=5), junk),
              "assertions": st.one_of(st.lists(assertion, max_size=3), junk)})


def yaml_text(doc) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return "{}"


@harness(st.one_of(scenarios.map(yaml_text), st.text(max_size=100), st.binary(max_size=60)))
def test_fuzz_scenario_file(text):
    path = TMP / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        runner = S.Runner(str(path))
        topo = runner.prepare()
    except (S.ScenarioError, TopologyError):
        return
    for t in runner.plan["traffic"]:
        for body in t.values():
            assert {body.get(k) for k in ("from", "to", "node")} - {None} <= set(topo.nodes)
