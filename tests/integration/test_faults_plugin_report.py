"""The pytest plugin attaches the merged agent logs and the event log to a failing test's report, and removes
its meshes afterwards."""
import os

import pytest

from testbed import runs

pytest_plugins = ["pytester"]

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]

INNER = '''
import pytest

@pytest.mark.mesh("line:2", seed=4)
def test_fails(mesh):
    mesh.fault("delay n1--n2 20ms")
    assert mesh.ping("n1", "n2") < 1, "slow on purpose"

@pytest.mark.mesh("line:2", seed=4)
def test_passes(mesh):
    assert mesh.faults() == []
    assert mesh.ping("n1", "n2") is not None
'''


def test_failure_report_has_logs_and_events(pytester, tmp_path):
    home = tmp_path / "runs"
    pytester.makepyfile(test_inner=INNER)
    os.environ["PKTLAB_HOME"] = str(home)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")   # the plugin comes by its entry point
    finally:
        del os.environ["PKTLAB_HOME"]
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "pktlab agent logs" in text and "pktlab events" in text
    assert '"kind":"fault"' in text and "delay" in text          # the event log
    assert "n1 |" in text and "n2 |" in text                      # merged agent logs, per node
    assert not any(home.iterdir()) if home.exists() else True      # both meshes were removed
    assert runs.list_runs() == [] or all(r.dir.parent != home for r in runs.list_runs())
