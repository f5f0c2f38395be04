"""Route servers on a 25-node grid of two Cloud ISPs, on real namespaces brought up by `Mesh.up`.

The left three columns are isp1 with two route servers (n0x2, n4x0), the right two isp2 with one (n0x4); the
servers federate across the ISPs. Shown here (issue 5):

* every ordered pair (600) answers an ICMPv6 echo within 30 s of `up`, all pairs probed concurrently;
* forged (bad signature), replayed and clock-skewed announcements, sent to the route server inside its real
  CryptoAuth session by a node of the mesh (its agent's `rs_inject`), are rejected and counted by reason
  (`rs_status`, what `pktlab rs` shows);
* a route-server crash (its agent stopped) does not break an established flow, and the ISP's second route server
  takes over the look-ups of the nodes that used the crashed one.

Needs root (namespaces, TUN). One mesh for the module; `Mesh.down` removes everything it made.
"""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from testbed import faults
from testbed.backends import exec_in
from testbed.mesh import Mesh
from testbed.topology.generators import two_isp_grid

from testbed.waiting import wait_until

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]

ROWS = COLS = 5
ISP1_SERVERS = ("n0x2", "n4x0")
ISP2_SERVER = "n0x4"
REACH_WITHIN_S = 30

# Pings every other node until each answered once (raw ICMPv6: the kernel does the checksum); prints the
# seconds until each answered, or null.
PROBE = r"""
import json, os, select, socket, struct, sys, time
targets = json.loads(sys.argv[1]); deadline = time.monotonic() + float(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); s.setblocking(False)
ident = os.getpid() & 0xFFFF; start = time.monotonic(); got = {}; nxt = 0.0
while len(got) < len(targets) and time.monotonic() < deadline:   # got: by address bytes
    now = time.monotonic()
    if now >= nxt:
        for i, t in enumerate(targets):
            if socket.inet_pton(socket.AF_INET6, t) not in got:
                try:
                    s.sendto(struct.pack(">BBHHH", 128, 0, 0, ident, i) + b"pktlab", (t, 0))
                except OSError:
                    pass
        nxt = now + 0.5
    if select.select([s], [], [], 0.1)[0]:
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                break
            if data[0] == 129 and struct.unpack(">H", data[4:6])[0] == ident:
                got.setdefault(socket.inet_pton(socket.AF_INET6, addr[0]), round(time.monotonic() - start, 2))
print(json.dumps({t: got.get(socket.inet_pton(socket.AF_INET6, t)) for t in targets}))
"""


@pytest.fixture(scope="module")
def grid():
    started = {}

    def progress(step, done, total):      # "up" for this test: the moment the first agent starts
        started.setdefault(step, time.monotonic())

    topo = two_isp_grid(ROWS, COLS)
    assert set(topo.nodes_with_role("route_server")) == set(ISP1_SERVERS + (ISP2_SERVER,))
    mesh = Mesh.up(topo, name=f"rs-grid-{os.getpid()}", seed=11, wait=REACH_WITHIN_S,
                   progress=progress)
    mesh.up_at = started["agents"]
    try:
        yield mesh
    finally:
        mesh.down()


def rs_status(mesh, node):
    return mesh.agent(node).call("rs_status", timeout=5)


def test_every_ordered_pair_is_reachable_within_30_s_of_up(grid):
    nodes = list(grid.topo.nodes)
    left = max(1.0, REACH_WITHIN_S - (time.monotonic() - grid.up_at))
    procs = {}
    for n in nodes:
        targets = [grid.ip6(m) for m in nodes if m != n]
        procs[n] = exec_in(grid.run, n, [sys.executable, "-c", PROBE, json.dumps(targets), str(left)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    missing, slowest = [], 0.0
    by_ip6 = {grid.ip6(m): m for m in nodes}
    for n, p in procs.items():
        out, err = p.communicate(timeout=left + 30)
        assert p.returncode == 0, err
        for ip6, t in json.loads(out).items():
            if t is None:
                missing.append(f"{n}->{by_ip6[ip6]}")
            else:
                slowest = max(slowest, t)
    pairs = len(nodes) * (len(nodes) - 1)
    assert pairs == 600
    assert not missing, f"{len(missing)} of {pairs} pairs unreachable {REACH_WITHIN_S} s after up: {missing[:8]}"
    print(f"all {pairs} pairs reachable; the last answered {slowest:.1f} s into the probe")


def test_forged_replayed_and_skewed_announcements_are_rejected_and_counted(grid):
    attacker = "n4x4"                    # isp2: its route server is n0x4
    before = rs_status(grid, ISP2_SERVER)
    # the node's agent sends them to its route server inside its real CryptoAuth session (what the
    # forged-announcement and replayed-announcement faults do)
    for kind in ("forged", "replayed", "skewed"):
        sent = grid.agent(attacker).call("rs_inject", kind=kind, count=1)
        assert sent["server"] == grid.ip6(ISP2_SERVER) and sent["sent"] == 1

    def counted():
        after = rs_status(grid, ISP2_SERVER)["rejected"]
        grew = {k: after.get(k, 0) - before["rejected"].get(k, 0) for k in after}
        return grew if grew.get("bad_signature", 0) >= 1 and grew.get("clock_skew", 0) >= 1 and \
            grew.get("replay", 0) >= 1 else None
    grew = wait_until(counted, 10, "the three rejections counted")
    print(f"rejections counted by reason: {grew}")
    # `pktlab rs` shows the same counters
    cli = subprocess.run([sys.executable, "-m", "testbed.cli", "rs", ISP2_SERVER, "--run", grid.run.name],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ, COLUMNS="300"))
    assert cli.returncode == 0, cli.stderr
    assert "bad_signature" in cli.stdout and "clock_skew" in cli.stdout, cli.stdout
    # and `pktlab routes` the node's side: its route server, its cached paths hop by hop, its counters
    cli = subprocess.run([sys.executable, "-m", "testbed.cli", "routes", attacker, "--run", grid.run.name],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ, COLUMNS="300"))
    assert cli.returncode == 0, cli.stderr
    assert f"uses route server {ISP2_SERVER}" in cli.stdout and "look-ups answered" in cli.stdout, cli.stdout
    assert re.search(rf"{attacker} -> \S+ -> ", cli.stdout), cli.stdout


def test_route_server_crash_keeps_flows_and_the_second_server_takes_over(grid):
    # nodes of isp1 that use the first server; one of them keeps a flow to a far node through the crash
    crashed, second = ISP1_SERVERS
    users = wait_until(lambda: [n for n in grid.topo.nodes if grid.topo.nodes[n].isp == "isp1" and n not in
                              ISP1_SERVERS and grid.agent(n).call("routes")["route_server"] == grid.ip6(crashed)],
                     10, f"isp1 nodes using {crashed}")
    # a flow whose path avoids the crashed node itself (stopping its agent also stops its switch)
    # (both ways: the echo replies follow the path the other end looked up)
    def avoids(s, d):
        grid.ping(s, d, count=2, timeout=1)
        return crashed not in [hop[0] for hop in grid.route(s, d) + grid.route(d, s)] and grid.route(d, s)
    src, dst = next((s, d) for s in users for d in ("n4x4", "n3x4", "n4x3", "n2x4", "n4x1", "n3x1")
                    if avoids(s, d))
    queries_before = rs_status(grid, second)["counters"].get("query_gr", 0)
    flow = exec_in(grid.run, src, ["ping", "-6", "-n", "-i", "0.1", "-c", "100", "-W", "1", grid.ip6(dst)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)                          # established: echoes go both ways (seq 1..30)
    # still away from the crashed node: paths on a healthy mesh stay put (both ends get the same path)
    there, back = [h[0] for h in grid.route(src, dst)], [h[0] for h in grid.route(dst, src)]
    print(f"flow {src} -> {dst}: {there} back {back}")
    assert crashed not in there + back, f"the flow's path moved onto {crashed} on a healthy mesh"
    grid.stop_agent(crashed)
    try:
        out, _ = flow.communicate(timeout=30)
        got = {int(x) for x in re.findall(r"icmp_seq=(\d+)", out)}
        assert got & set(range(15, 26)), f"the flow was not established before the crash: {sorted(got)}"
        lost = sorted(set(range(32, 101)) - got)
        assert len(lost) <= 3, f"the established flow lost {len(lost)} echoes after the crash: {lost}"
        wait_until(lambda: grid.agent(src).call("routes")["route_server"] == grid.ip6(second), 15,
                 f"{src} uses {second}")
        # a new look-up after the crash: cut a link in the middle of src's path to dst; the switch error makes
        # src ask again, and only the second server can answer
        hops = grid.route(src, dst)
        assert len(hops) >= 3, hops
        fault = faults.apply_fault(grid, f"link-down {hops[1][0]}--{hops[2][0]}", check=False)
        try:
            try:
                wait_until(lambda: grid.ping(src, dst, count=1, timeout=1) is not None, 15,
                         f"{src} reaches {dst} again")
            except AssertionError:
                print(json.dumps(grid.agent(src).call("routes"), indent=1)[:3000])
                raise
            wait_until(lambda: rs_status(grid, second)["counters"].get("query_gr", 0) > queries_before, 15,
                     f"{second} answers path look-ups")
            assert grid.route(src, dst)[:2] != hops[:2]
        finally:
            faults.heal(grid, fault.id, check=False)
    finally:
        grid.start_agent(crashed)
