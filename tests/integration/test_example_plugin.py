"""How to test against pktlab with the `mesh` fixture (testbed.pytest_plugin): only the public fixture is used.

The plugin is registered as the `pktlab` pytest11 entry point, so the fixture is there in any test run with the
project's venv. The three tests of the first group share one 3-node line (module scope); the parametrized test gets a fresh
mesh per topology. Run as root: `.venv/bin/pytest tests/integration/test_example_plugin.py`.
"""
import pytest


@pytest.mark.mesh("line:3,rate=10mbit", scope="module", seed=5)
def test_ping_and_exec(mesh):
    assert mesh.ping("n1", "n3") is not None
    out = mesh.exec("n2", "ip -6 -o addr show dev tun0").stdout
    assert mesh.ip6("n2").split(":")[0] in out


@pytest.mark.mesh("line:3,rate=10mbit", scope="module", seed=5)
def test_link_down_and_heal(mesh):
    fault = mesh.fault("link-down n1--n2")          # checked to bite: n1 no longer reaches n2
    assert mesh.ping("n1", "n3", timeout=1) is None
    assert [f.id for f in mesh.faults()] == [fault.id]
    mesh.heal(fault)
    mesh.wait_until(lambda: mesh.ping("n1", "n3", timeout=1), within=10)
    assert mesh.faults() == []


@pytest.mark.mesh("line:3,rate=10mbit", scope="module", seed=5)
def test_throughput_follows_rate_fault(mesh):
    full = mesh.iperf("n1", "n2", seconds=2)
    mesh.fault("rate n1--n2 2mbit")
    slow = mesh.iperf("n1", "n2", seconds=2)
    mesh.heal()
    assert slow < 0.3 * full, (slow, full)


@pytest.mark.parametrize("mesh", ["ring:4", {"spec": "star:3", "seed": 3}], indirect=True)
def test_every_pair_reachable(mesh):
    for a in mesh.nodes:
        for b in mesh.nodes:
            if a != b:
                assert mesh.ping(a, b) is not None, f"{a} -> {b}"
