"""Node agents on real namespaces: ping6/iperf3 over the fc00::/8 addresses, encryption on the wire, malformed
input, agent restart, link emulation through the control API, clean shutdown.

Every mesh is a real run built by the pytest plugin's `mesh` fixture (lines of nodes n1, n2, ...; interfaces
n1-eth0, ...), so these tests exercise the agents exactly as `pktlab up` starts them. Needs root."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.agent.control_client import AgentError
from node.cjdns import labels
from testbed import runs
from testbed.agent_configs import AGENT_UDP_PORT
from testbed.backends import exec_in
from testbed.waiting import wait_until

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]


def ping6(mesh, src, dst, count=3, interval=0.2, size=56, wait=5):
    r = mesh.exec(src, ["ping", "-6", "-n", "-c", str(count), "-i", str(interval), "-s", str(size), "-W", str(wait),
                        mesh.ip6(dst)], timeout=count * (interval + wait) + 10)
    m = re.search(r"(\d+) received", r.stdout)
    received = int(m.group(1)) if m else 0
    rtt = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return received, float(rtt.group(1)) if rtt else None


def reachable(mesh, src, dst, within=30):
    return wait_until(lambda: ping6(mesh, src, dst, count=1, wait=2)[0] == 1, within, interval=0)


def iperf3(mesh, server, client, seconds=3):
    """TCP goodput (Mbit/s) from client to server."""
    srv = exec_in(mesh.run, server, ["iperf3", "-s", "-1", "-B", mesh.ip6(server)], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.5)
        r = mesh.exec(client, ["iperf3", "-c", mesh.ip6(server), "-t", str(seconds), "-J"], timeout=seconds + 30)
        data = json.loads(r.stdout)
        assert "error" not in data, data.get("error")
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(5)


def underlay(mesh, a, b):
    """(a's address, b's address) on the a--b link."""
    for rec in mesh.run.state["links"]:
        if (rec["a"], rec["b"]) == (a, b):
            return rec["a_addr"], rec["b_addr"]
        if (rec["a"], rec["b"]) == (b, a):
            return rec["b_addr"], rec["a_addr"]
    raise KeyError(f"{a}--{b}")


@pytest.mark.mesh("line:3", seed=3)
def test_three_node_line_ping_iperf_and_control_api(mesh):
    received, rtt = ping6(mesh, "n1", "n3", count=5)
    assert received == 5
    # the agent's own end-to-end ping through the mesh
    res = mesh.agent("n3").call("ping", dest=mesh.ip6("n1"))
    assert res["reachable"] and res["rtt_ms"] > 0
    mbps = iperf3(mesh, "n3", "n1", seconds=3)
    print(f"3-node line: ping rtt {rtt} ms, iperf3 TCP {mbps:.1f} Mbit/s")
    assert mbps > 5
    # sessions are end to end: n1 has one with n3, and the middle node only switches the flow (its links carried
    # the iperf packets, its own TUN got none of them)
    sa = {s["ip6"]: s for s in mesh.agent("n1").call("sessions")["sessions"]}
    assert sa[mesh.ip6("n3")]["established"]
    cb = mesh.agent("n2").call("counters")
    # its data in on one link (frames of up to the TUN MTU, so bytes, not packets, measure it), the ACKs on the other
    links = cb["interfaces"].values()
    assert max(v["rx_bytes"] for v in links) >= 0.9 * mbps * 1e6 * 3 / 8, cb["interfaces"]
    assert all(v["rx_packets"] > 100 for v in links), cb["interfaces"]
    assert cb["tun"]["tun_tx_packets"] < 100
    st = mesh.agent("n2").call("status")
    assert st["node"] == "n2" and st["ip6"] == mesh.ip6("n2") and st["healthy"]
    assert {p["peer_name"] for p in mesh.agent("n2").call("peers")["peers"]} == {"n1", "n3"}
    cfg = mesh.agent("n1").call("config")["config"]
    assert "private_key" not in cfg and mesh.ip6("n3") in cfg["paths"]


@pytest.mark.mesh("line:2", seed=3)
def test_control_api_rejects_bad_requests_and_keeps_running(mesh):
    cl = mesh.agent("n1")
    assert not cl.request({"cmd": "nope"})["ok"]
    assert not cl.request({"no": "cmd"})["ok"]
    with pytest.raises(AgentError, match="no peer link"):
        cl.call("set_link", ifname="missing", delay_s=1)
    with pytest.raises(AgentError, match="loss"):
        cl.call("set_link", ifname="n1-eth0", loss=3)
    with pytest.raises(AgentError):
        cl.call("ping", dest="10.0.0.1")
    with pytest.raises(AgentError):
        cl.call("set_paths", paths={"fc00::1": {"public_key": "x.k", "label": "1"}})
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(mesh.run.path("nodes", "n1", "agent.sock")))
        s.sendall(b"{not json\n")
        assert b'"ok": false' in s.recv(4096)
    assert cl.call("status")["healthy"]
    assert cl.call("ping", dest=mesh.ip6("n2"))["reachable"]


@pytest.mark.mesh("line:3", seed=3)
def test_wire_carries_no_plaintext(mesh):
    marker = "PKTLAB-MARKER-7f3a9c"
    pcap = str(mesh.run.path("mid.pcap"))
    dump = exec_in(mesh.run, "n2", ["tcpdump", "-i", "n2-eth1", "-U", "-w", pcap, "udp"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(1.0)
        send = ("import socket,sys\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
                f"[s.sendto(b'{marker}'*20, ('{mesh.ip6('n3')}', 9999)) for _ in range(20)]\n")
        assert mesh.exec("n1", [sys.executable, "-c", send]).returncode == 0
        mesh.exec("n1", ["ping", "-6", "-c", "3", "-i", "0.2", "-p", marker[:16].encode().hex(), mesh.ip6("n3")])
        time.sleep(1.0)
    finally:
        os.killpg(dump.pid, signal.SIGTERM)
        dump.wait(5)
    with open(pcap, "rb") as f:
        captured = f.read()
    from scapy.all import UDP, rdpcap
    packets = [p for p in rdpcap(pcap) if UDP in p and p[UDP].dport == AGENT_UDP_PORT]
    assert len(packets) >= 20          # the traffic really crossed this link
    assert marker.encode() not in captured
    assert marker[:16].encode() not in captured
    # the destination really received the marker datagrams (on its TUN)
    assert mesh.agent("n3").call("counters")["tun"]["tun_tx_packets"] >= 20


INJECT = """
import sys
from scapy.all import IPv6, UDP, Raw, send
src, dst, port, hexes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
for h in hexes:
    send(IPv6(src=src, dst=dst) / UDP(sport=port, dport=port) / Raw(bytes.fromhex(h)), verbose=False)
"""


# injected on the n1-n2 link as if from n1's agent: a runt, a header whose label names no interface of n2, data for
# n2's router with an unknown handle, a handshake with garbage, and random junk
GARBAGE = [
    "0102",
    "00000000000000ff" + "02000000" + "00" * 20,
    "0000000000000001" + "02000000" + "deadbeef" + "00" * 40,
    "0000000000000001" + "02000000" + "00000000" + "ab" * 150,
    os.urandom(300).hex(),
]
PLAIN_LINKS = str(Path(__file__).parent / "topologies" / "line3-plain-links.yaml")


def inject_garbage(mesh):
    """GARBAGE on the n1-n2 link; n2's counters before and after."""
    before = mesh.agent("n2").call("counters")
    src, dst = underlay(mesh, "n1", "n2")
    r = mesh.exec("n1", [sys.executable, "-c", INJECT, src, dst, str(AGENT_UDP_PORT), *GARBAGE])
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    return before, mesh.agent("n2").call("counters")


@pytest.mark.mesh(PLAIN_LINKS)
def test_malformed_frames_on_a_plaintext_link_are_counted_by_the_switch(mesh):
    """With link encryption off the garbage reaches the switch and the sessions, which count it by reason."""
    assert reachable(mesh, "n1", "n3")
    before, after = inject_garbage(mesh)
    assert after["interfaces"]["n2-eth0"]["rx_packets"] >= before["interfaces"]["n2-eth0"]["rx_packets"] + 5
    sw_drops = sum(v for k, v in after["switch"].items() if k.startswith("drop"))
    node_drops = sum(after["drops"].values())
    sw_before = sum(v for k, v in before["switch"].items() if k.startswith("drop"))
    assert sw_drops + node_drops >= sw_before + sum(before["drops"].values()) + 4, after
    sw, drops = after["switch"], after["drops"]
    assert sw.get("drop_runt", 0) >= before["switch"].get("drop_runt", 0) + 1
    assert sw.get("drop_malformed_address", 0) >= before["switch"].get("drop_malformed_address", 0) + 1
    assert drops.get("session_unknown_handle", 0) >= 1
    assert sum(v for k, v in drops.items() if k.startswith("session_") and k != "session_unknown_handle") >= 1
    assert mesh.agent("n2").call("status")["healthy"]
    assert reachable(mesh, "n1", "n3")
    assert ping6(mesh, "n1", "n3", count=3)[0] == 3


@pytest.mark.mesh("line:3", seed=3)
def test_malformed_frames_on_an_encrypted_link_end_at_its_session(mesh):
    """With link encryption (the default) nothing unauthenticated reaches the switch: every garbage datagram is a
    drop of the link session, counted on the interface, and traffic goes on."""
    assert reachable(mesh, "n1", "n3")
    before, after = inject_garbage(mesh)
    link_drops = [sum(v for k, v in counters["interfaces"]["n2-eth0"]["drops"].items() if k.startswith("link_"))
                  for counters in (before, after)]
    assert link_drops[1] - link_drops[0] == len(GARBAGE), after["interfaces"]["n2-eth0"]["drops"]
    switch_drops = [{k: v for k, v in counters["switch"].items() if k.startswith("drop")}
                    for counters in (before, after)]
    assert switch_drops[0] == switch_drops[1] and after["drops"] == before["drops"]     # none reached the switch
    assert mesh.agent("n2").call("status")["healthy"]
    assert ping6(mesh, "n1", "n3", count=3)[0] == 3


@pytest.mark.mesh("line:3", seed=3)
def test_restarted_agent_with_same_identity_restores_connectivity(mesh):
    mesh.stop_agent("n3", signal.SIGKILL)
    assert ping6(mesh, "n1", "n3", count=2, wait=1)[0] == 0
    mesh.start_agent("n3")
    # traffic from the surviving side alone must recover (its old session is stale)
    assert reachable(mesh, "n1", "n3", within=30)
    assert reachable(mesh, "n3", "n1", within=20)
    assert mesh.agent("n3").call("sessions")["sessions"][0]["established"]


@pytest.mark.mesh("line:2", seed=3)
def test_link_emulation_through_control_api_bites_and_is_removable(mesh):
    base = ping6(mesh, "n1", "n2", count=5)[1]
    n1 = mesh.agent("n1")
    n1.call("set_link", ifname="n1-eth0", delay_s=0.1)
    delayed = ping6(mesh, "n1", "n2", count=5)[1]
    assert delayed > base + 90
    n1.call("set_link", ifname="n1-eth0", params={"loss": 1.0})
    assert ping6(mesh, "n1", "n2", count=3, wait=1)[0] == 0
    assert n1.call("counters")["interfaces"]["n1-eth0"]["emulation"]["lost"] >= 3
    n1.call("set_link", ifname="n1-eth0", params={"reset": True})
    received, rtt = ping6(mesh, "n1", "n2", count=5)
    assert received == 5 and rtt < delayed - 50
    assert n1.call("peers")["peers"][0]["link_emulation"]["delay_s"] == 0


def _has_tun(mesh, node):
    return "tun0" in mesh.exec(node, ["ip", "link"]).stdout


@pytest.mark.mesh("line:2", seed=3)
def test_sigterm_and_shutdown_remove_tun_and_socket(mesh):
    assert _has_tun(mesh, "n1")
    rec = mesh.run.state["agents"]["n1"]
    mesh.stop_agent("n1")                          # SIGTERM
    assert not runs.alive(rec["pid"], rec["start"])
    assert not mesh.run.path("nodes", "n1", "agent.sock").exists()
    assert not _has_tun(mesh, "n1")
    # the control API's shutdown does the same
    rec = mesh.run.state["agents"]["n2"]
    assert mesh.agent("n2").call("shutdown")["shutting_down"]
    wait_until(lambda: not runs.alive(rec["pid"], rec["start"]), 10, "n2's agent gone after shutdown")
    assert not mesh.run.path("nodes", "n2", "agent.sock").exists()
    assert not _has_tun(mesh, "n2")


@pytest.mark.mesh("line:3", seed=3)
def test_switch_error_from_a_dead_hop_is_counted_and_reported(mesh):
    n1, n3 = mesh.agent("n1"), mesh.ip6("n3")
    # n1 -> n2 over n1's interface 0, then n2's interface 7, which does not exist: n2's switch answers an error
    bad_label = labels.label_text(labels.splice(labels.one_hop_label(7), labels.one_hop_label(0)))
    n1.call("set_paths", paths={n3: {"public_key": mesh.identity("n3").pubkey_text, "label": bad_label}})
    assert ping6(mesh, "n1", "n3", count=2, wait=1)[0] == 0
    time.sleep(0.3)
    counters = n1.call("counters")
    assert counters["tun"]["switch_errors_received"] >= 2
    assert counters["drops"].get("switch_error_malformed_address", 0) >= 2
    assert mesh.agent("n2").call("counters")["switch"].get("errors_sent", 0) >= 2
    assert counters["path_failures"].get(n3, 0) >= 2
    # putting the right path back restores traffic
    paths = json.loads(mesh.run.path("nodes", "n1", "agent.json").read_text())["paths"]
    n1.call("set_paths", paths=paths)
    assert reachable(mesh, "n1", "n3")
    assert ping6(mesh, "n1", "n3", count=2)[0] == 2


def test_bad_config_exits_with_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"node": "x"}))
    r = subprocess.run([sys.executable, "-m", "node.agent", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "missing required field" in r.stderr


@pytest.mark.mesh("line:10", seed=3)
def test_ten_node_line_ping_and_iperf(mesh):
    received, rtt = ping6(mesh, "n1", "n10", count=5)
    assert received == 5
    mbps = iperf3(mesh, "n10", "n1", seconds=5)
    print(f"10-node line: ping rtt {rtt} ms, iperf3 TCP {mbps:.1f} Mbit/s")
    assert mbps > 1


ONE_WAY = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"one-way %d" % i, (sys.argv[1], 9999))
    time.sleep(float(sys.argv[3]))
"""


@pytest.mark.mesh("line:3", seed=3)
def test_one_way_udp_flow_is_delivered(mesh):
    # no reply ever comes back: the handshake must still complete and keep delivering
    before = mesh.agent("n3").call("counters")["tun"]["tun_tx_packets"]
    r = mesh.exec("n1", [sys.executable, "-c", ONE_WAY, mesh.ip6("n3"), "300", "0.02"])
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    delivered = mesh.agent("n3").call("counters")["tun"]["tun_tx_packets"] - before
    assert delivered >= 295, mesh.agent("n3").call("counters")


@pytest.mark.mesh("line:2", seed=3)
def test_rate_and_corruption_emulation(mesh):
    n1 = mesh.agent("n1")
    full = iperf3(mesh, "n2", "n1", seconds=2)
    n1.call("set_link", ifname="n1-eth0", rate_bps=20e6)
    limited = iperf3(mesh, "n2", "n1", seconds=3)
    print(f"unlimited {full:.0f} Mbit/s, rate 20 Mbit/s -> {limited:.1f} Mbit/s")
    assert 2 < limited < 24 and full > 2 * limited
    n1.call("set_link", ifname="n1-eth0", params={"reset": True})
    # corruption is caught by the link session at the receiver, which authenticates every bit of the frame (on a
    # plaintext link a flipped bit in a field nobody checks, e.g. the traffic class, would pass), and counted
    n1.call("set_link", ifname="n1-eth0", corrupt=1.0)
    received = ping6(mesh, "n1", "n2", count=30, interval=0.05, wait=1)[0]
    print(f"{received}/30 echoes through a link that flips one bit of every packet")
    assert received == 0
    drops = mesh.agent("n2").call("counters")["interfaces"]["n2-eth0"]["drops"]
    assert drops.get("link_decrypt_failed", 0) >= 30, drops
    n1.call("set_link", ifname="n1-eth0", corrupt=0)
    assert reachable(mesh, "n1", "n2")
    assert ping6(mesh, "n1", "n2", count=3)[0] == 3


@pytest.mark.mesh("line:2,delay=50ms", seed=3)
def test_link_emulation_from_the_topology(mesh):
    assert ping6(mesh, "n1", "n2", count=3)[1] > 100      # 50 ms each way
    assert mesh.agent("n1").call("config")["config"]["link_emulation"]["n1-eth0"]["delay_s"] == 0.05
