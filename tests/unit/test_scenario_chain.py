"""Scenario entries by block height and chain assertions (testbed/scenario.py): what the loader accepts and refuses.
The bundled chain-partition-heal scenario runs them on a real mesh (tests/integration/test_scenarios_library.py)."""
import pytest

from testbed import scenario as S


def _scenario(timeline=None, assertions=None):
    return {"name": "t", "topology": "line:2", "timeline": timeline or [], "assertions": assertions or []}


def test_height_entries_and_chain_assertions_load():
    s = S.load_scenario(_scenario(
        [{"at": {"height": 20}, "fault": "link-down n1--n2", "within": 300}, {"at": 3, "heal": "all"}],
        [{"chain_height": {"at_least": 20}}, {"chains_agree": {"within_blocks": 1}, "within": 30},
         {"reorg": {"node": "n1"}}, {"balance": {"node": "n2", "at_least": 1}}]))
    assert S._height_of(s["timeline"][0]) == 20 and S._height_of(s["timeline"][1]) is None
    assert S.load_scenario(S.find_scenario("chain-partition-heal"))["timeline"][0]["at"] == {"height": 3}


@pytest.mark.parametrize("at", [{"height": -1}, {"height": "20"}, {"height": True}, {"block": 3}, "soon"])
def test_a_bad_height_entry_is_refused(at):
    with pytest.raises(S.ScenarioError, match=r"timeline\[0\]\.at: expected number or object"):
        S.load_scenario(_scenario([{"at": at, "heal": "all"}]))


def test_an_unknown_chain_assertion_is_refused():
    with pytest.raises(S.ScenarioError, match="chains_agree"):
        S.load_scenario(_scenario(assertions=[{"chain_tip": {}}]))
