"""Every bundled scenario passes on real namespaces (or is skipped for missing data, with the reason), in CI too:
the Freifunk one runs on a reduced part of the mesh (`reduce: 24`). A scenario that does not hold fails (the
runner can fail)."""
import os

import pytest

from testbed import scenario as S

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]

NEEDS = {"freifunk-ulm": "freifunk-data"}


def test_library_has_the_required_scenarios():
    names = {p.stem for p in S.bundled()}
    assert len(names) >= 8
    assert {"link-flap", "partition-heal", "route-server-crash", "node-crash-restart", "byzantine-malformed",
            "lossy-long-rtt", "congestion-priorities", "freifunk-ulm", "route-server-loss", "byzantine-announcements",
            "clock-skew"} <= names


@pytest.mark.parametrize("name", [p.stem for p in S.bundled()])
def test_scenario_passes(name):
    result = S.Runner(name).run()
    detail = "\n".join(f"{c.at:6.1f} {'ok' if c.ok else 'FAIL'} {c.name}: {c.message}" for c in result.checks)
    if result.status == "skipped":
        missing = S.capabilities().get(NEEDS.get(name, ""))
        assert missing and result.reason == missing, result.reason     # skipped only for a missing capability
        pytest.skip(result.reason)
    assert result.status == "passed", f"{result.status} {result.reason}\n{detail}"
    assert result.checks and all(c.ok for c in result.checks)
    assert not os.path.exists(result.run_dir)                         # the mesh is gone


def test_a_failing_assertion_fails_the_scenario():
    scenario = {"name": "must-fail", "topology": "line:2", "seed": 3,
                "timeline": [{"at": 0, "fault": "link-down n1--n2"},
                             {"at": 0, "expect": {"reachable": {"from": "n1", "to": "n2"}, "within": 1}}]}
    result = S.Runner(scenario).run()
    assert result.status == "failed"
    assert [c.ok for c in result.checks] == [True, False]


def test_background_traffic_and_commands():
    scenario = {"name": "traffic", "topology": "line:2,rate=10mbit", "seed": 2,
                "traffic": [{"iperf": {"from": "n1", "to": "n2", "at": 1, "seconds": 2}},     # after the handshakes
                            {"command": {"node": "n2", "run": "ip -6 -o addr show dev tun0", "at": 0}}],
                "timeline": [{"at": 0, "action": {"node": "n1", "run": "test -e /proc/net/if_inet6"}}],
                "duration": 1}
    result = S.Runner(scenario).run()
    checks = {c.name: c for c in result.checks}
    assert result.status == "passed", result.checks
    assert 8 < float(checks["traffic iperf n1->n2"].message.split()[0]) < 10.5      # Mbit/s over the 10mbit link
    assert "fc" in checks["traffic command on n2"].message
    assert checks["command on n1"].ok
