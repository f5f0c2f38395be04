"""A 5x5 grid built by `Mesh.up` with agents: far corners talk (ping6, iperf3 TCP), an agent restarts with the same
identity, and `down` leaves nothing."""
import json
import os
import signal
import subprocess
import time

import pytest

from testbed.backends import exec_in
from testbed.mesh import Mesh
from testbed.waiting import wait_until

from .leaks import assert_gone, host_view

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


def test_grid_5x5_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    before = host_view()
    mesh = Mesh.up("grid:5x5", name="grid-e2e", seed=5)
    state, run_dir = json.loads(mesh.run.journal.read_text()), mesh.run.dir
    try:
        assert all(mesh.reachability([("r1c1", "r5c5"), ("r5c5", "r1c1"), ("r1c5", "r5c1")]).values())
        rtt = mesh.ping("r1c1", "r5c5", count=3)
        assert rtt is not None

        srv = exec_in(mesh.run, "r5c5", ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        r = mesh.exec("r1c1", ["iperf3", "-c", mesh.ip6("r5c5"), "-t", "2", "-J"], timeout=30)
        srv.wait(timeout=10)
        assert r.returncode == 0, r.stderr
        mbps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
        assert mbps > 1, f"iperf3 over 8 hops carried only {mbps} Mbit/s"

        # the same identity after a hard restart: same address, reachable again
        ip_before = mesh.ip6("r3c3")
        mesh.stop_agent("r3c3", sig=signal.SIGKILL)
        assert mesh.ping("r1c1", "r3c3", timeout=1) is None
        mesh.start_agent("r3c3")
        wait_until(lambda: mesh.ping("r1c1", "r3c3", timeout=1) is not None, 20, "r3c3 back after its restart", 0)
        assert mesh.agent("r3c3").call("status")["ip6"] == ip_before
        assert host_view() == before, "the run changed the host namespace"
    finally:
        mesh.down()
    assert_gone(state, run_dir)
    assert host_view() == before
