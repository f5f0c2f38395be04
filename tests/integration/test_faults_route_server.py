"""Route-server plane faults on real namespaces: a node's clock skew, the loss of a route server (its node keeps
switching) and forged / replayed announcements sent by a node in its real session. Each is applied with its
check (it must bite) and healed with its check (the baseline must be back). The bundled `failover` topology (a
ring of six with a chord, one Cloud ISP with route servers r1 and r4), shared by the module through the pytest
plugin's `mesh` fixture, which heals what a test leaves behind."""
import os

import pytest

from testbed import faults as F
from testbed.waiting import wait_until
from testbed.faults.route_server import server_of, users_of

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces"),
              pytest.mark.mesh("failover", scope="module", seed=31, wait=30)]

SERVERS = ("r1", "r4")


def test_clock_skew_is_rejected_then_followed_and_healed(mesh):
    before = mesh.agent("r3").call("routes")["counters"].get("ann_rejected_clock_skew", 0)
    f = F.apply_fault(mesh, "clock-skew r3 45s")              # checked: rejected, then stamped in server time
    assert mesh.agent("r3").call("status")["clock_offset_s"] == 45
    routes = mesh.agent("r3").call("routes")
    assert routes["counters"]["ann_rejected_clock_skew"] > before and abs(routes["skew_ms"] + 45_000) < 2000
    assert "rejected for clock skew" in f.state["effect"]
    assert mesh.ping("r5", "r3", timeout=2) is not None     # the mesh keeps routing to it
    [healed] = F.heal(mesh, f.id)
    assert mesh.agent("r3").call("status")["clock_offset_s"] == 0
    assert abs(mesh.agent("r3").call("routes")["skew_ms"]) < 2000, healed.state["healed"]
    with pytest.raises(F.FaultError):
        F.parse_fault("clock-skew r3 soon")


def test_clock_skew_of_a_route_server_is_followed_by_its_nodes(mesh):
    # a node keeps the first server it found, so which server has the most users varies from run to run
    server = max(SERVERS, key=lambda s: len(users_of(mesh, s)))
    users = [n for n in users_of(mesh, server) if n not in SERVERS]
    assert users
    f = F.apply_fault(mesh, f"clock-skew {server} -20s")        # checked: its nodes' estimates read -20 s
    assert "clients of this route server" in f.state["effect"]
    assert all(abs(mesh.agent(n).call("routes")["skew_ms"] + 20_000) < 2000 for n in users)
    F.heal(mesh, f.id)


def test_route_server_loss_moves_its_nodes_and_a_fresh_server_rebuilds(mesh):
    # the server with users (a node keeps the first server it found, so that varies from run to run)
    lost = max(SERVERS, key=lambda s: len(users_of(mesh, s)))
    other = next(s for s in SERVERS if s != lost)
    users = [n for n in users_of(mesh, lost) if n not in SERVERS]
    assert users
    f = F.apply_fault(mesh, f"route-server-loss {lost}")        # checked: its users move to the other server
    assert f"moved to {other}" in f.state["effect"]
    assert all(server_of(mesh, n) == other for n in users)
    assert wait_until(lambda: server_of(mesh, lost) == other, 10)   # the node itself uses the other one too
    assert mesh.agent(lost).call("status")["healthy"]           # the node itself still switches
    assert mesh.ping("r2", "r6", timeout=2) is not None
    with pytest.raises(Exception, match="not running"):
        mesh.agent(lost).call("rs_status")
    [healed] = F.heal(mesh, f.id)                              # checked: the fresh server holds a graph again
    st = mesh.agent(lost).call("rs_status")
    assert st["nodes"] >= 2 and "back" in healed.state["healed"]
    with pytest.raises(F.FaultError, match="not a route server"):
        F.apply_fault(mesh, "route-server-loss r3")


@pytest.mark.parametrize("kind,reason", [("forged-announcement", "bad_signature"),
                                         ("replayed-announcement", "replay")])
def test_bad_announcements_are_rejected_and_counted(mesh, kind, reason):
    node = "r3"
    server = server_of(mesh, node)
    before = mesh.agent(server).call("rs_status")["rejected"].get(reason, 0)
    f = F.apply_fault(mesh, f"{kind} {node} count=3")           # instant; checked: counted, own anns still accepted
    assert mesh.agent(server).call("rs_status")["rejected"].get(reason, 0) - before >= 3
    assert "still accepted" in f.state["effect"]
    assert not F.active_faults(mesh)
    assert mesh.ping(node, "r1", timeout=2) is not None
