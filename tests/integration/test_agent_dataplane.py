"""Node agents on real namespaces: ping6/iperf3 over the fc00::/8 addresses, encryption on the wire, malformed
input, agent restart, link emulation through the control API, clean shutdown.

Needs root (namespaces, TUN). Uses tests/integration/agent_harness.py, which removes everything it creates.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agent_harness import UDP_PORT, Mesh  # noqa: E402

from node.agent.control_client import AgentError  # noqa: E402

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()


def ping6(mesh, src, dst, count=3, interval=0.2, size=56, wait=5):
    r = mesh.run(src, "ping", "-6", "-c", str(count), "-i", str(interval), "-s", str(size), "-W", str(wait),
                 dst.ip6, timeout=count * (interval + wait) + 10)
    m = re.search(r"(\d+) received", r.stdout)
    received = int(m.group(1)) if m else 0
    rtt = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return received, float(rtt.group(1)) if rtt else None


def wait_reachable(mesh, src, dst, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping6(mesh, src, dst, count=1, wait=2)[0] == 1:
            return True
    return False


def iperf3(mesh, server, client, seconds=3):
    srv = mesh.popen(server, "iperf3", "-s", "-1", "-B", server.ip6, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = mesh.run(client, "iperf3", "-c", server.ip6, "-t", str(seconds), "-J", timeout=seconds + 30)
        data = json.loads(r.stdout)
        assert "error" not in data, data.get("error")
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(5)


def test_three_node_line_ping_iperf_and_control_api(mesh):
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    received, rtt = ping6(mesh, a, c, count=5)
    assert received == 5
    # the agent's own end-to-end ping through the mesh
    res = mesh.client(c).call("ping", dest=a.ip6)
    assert res["reachable"] and res["rtt_ms"] > 0
    mbps = iperf3(mesh, c, a, seconds=3)
    print(f"3-node line: ping rtt {rtt} ms, iperf3 TCP {mbps:.1f} Mbit/s")
    assert mbps > 5
    # sessions are established end to end, only between the far ends (the middle node just switches)
    sa = mesh.client(a).call("sessions")["sessions"]
    assert [s["ip6"] for s in sa] == [c.ip6] and sa[0]["established"]
    assert mesh.client(b).call("sessions")["sessions"] == []
    cb = mesh.client(b).call("counters")
    # the middle node switched the flow: its data in on one link (frames of up to the TUN MTU, so bytes, not
    # packets, measure it), the acks on the other
    links = cb["interfaces"].values()
    assert max(v["rx_bytes"] for v in links) >= 0.9 * mbps * 1e6 * 3 / 8, cb["interfaces"]
    assert all(v["rx_packets"] > 100 for v in links), cb["interfaces"]
    st = mesh.client(b).call("status")
    assert st["node"] == b.name and st["ip6"] == b.ip6 and st["healthy"]
    assert {p["peer_name"] for p in mesh.client(b).call("peers")["peers"]} == {a.name, c.name}
    cfg = mesh.client(a).call("config")["config"]
    assert "private_key" not in cfg and c.ip6 in cfg["paths"]


def test_control_api_rejects_bad_requests_and_keeps_running(mesh):
    a, b = mesh.line(2)
    mesh.start()
    cl = mesh.client(a)
    assert not cl.request({"cmd": "nope"})["ok"]
    assert not cl.request({"no": "cmd"})["ok"]
    with pytest.raises(AgentError, match="no peer link"):
        cl.call("set_link", ifname="missing", delay_s=1)
    with pytest.raises(AgentError, match="loss"):
        cl.call("set_link", ifname="l1a", loss=3)
    with pytest.raises(AgentError):
        cl.call("ping", dest="10.0.0.1")
    with pytest.raises(AgentError):
        cl.call("set_paths", paths={"fc00::1": {"public_key": "x.k", "label": "1"}})
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(a.socket)
        s.sendall(b"{not json\n")
        assert b'"ok": false' in s.recv(4096)
    assert cl.call("status")["healthy"]
    assert cl.call("ping", dest=b.ip6)["reachable"]


def test_wire_carries_no_plaintext(mesh):
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    marker = "PKTLAB-MARKER-7f3a9c"
    pcap = os.path.join(mesh.dir, "mid.pcap")
    dump = mesh.popen(b, "tcpdump", "-i", "l2a", "-U", "-w", pcap, "udp", stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        send = ("import socket,sys\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
                f"[s.sendto(b'{marker}'*20, ('{c.ip6}', 9999)) for _ in range(20)]\n")
        mesh.run(a, sys.executable, "-c", send, check=True)
        mesh.run(a, "ping", "-6", "-c", "3", "-i", "0.2", "-p", marker[:16].encode().hex(), c.ip6)
        time.sleep(1.0)
    finally:
        os.killpg(dump.pid, signal.SIGTERM)
        dump.wait(5)
    with open(pcap, "rb") as f:
        captured = f.read()
    from scapy.all import UDP, rdpcap
    packets = [p for p in rdpcap(pcap) if UDP in p and p[UDP].dport == UDP_PORT]
    assert len(packets) >= 20          # the traffic really crossed this link
    assert marker.encode() not in captured
    assert marker[:16].encode() not in captured
    # the destination really received the marker datagrams (on its TUN)
    assert mesh.client(c).call("counters")["tun"]["tun_tx_packets"] >= 20


INJECT = """
import sys
from scapy.all import IPv6, UDP, Raw, send
src, dst, port, hexes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
for h in hexes:
    send(IPv6(src=src, dst=dst) / UDP(sport=port, dport=port) / Raw(bytes.fromhex(h)), verbose=False)
"""


# injected on the a-b link as if from a's agent: a runt, a header whose label names no interface of b, data for
# b's router with an unknown handle, a handshake with garbage, and random junk
GARBAGE = [
    "0102",
    "00000000000000ff" + "02000000" + "00" * 20,
    "0000000000000001" + "02000000" + "deadbeef" + "00" * 40,
    "0000000000000001" + "02000000" + "00000000" + "ab" * 150,
    os.urandom(300).hex(),
]


def inject_garbage(mesh, a, b):
    """GARBAGE on the a-b link; b's counters before and after."""
    before = mesh.client(b).call("counters")
    script = os.path.join(mesh.dir, "inject.py")
    with open(script, "w") as f:
        f.write(INJECT)
    r = mesh.run(a, sys.executable, script, "fd00:1::1", "fd00:1::2", str(UDP_PORT), *GARBAGE, timeout=60)
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    return before, mesh.client(b).call("counters")


def test_malformed_frames_on_a_plaintext_link_are_counted_by_the_switch(tmp_path):
    """With link encryption off the garbage reaches the switch and the sessions, which count it by reason."""
    mesh = Mesh(tmp_path, link_crypto=False)
    try:
        malformed_frames_are_counted(mesh)
    finally:
        mesh.cleanup()


def malformed_frames_are_counted(mesh):
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    before, after = inject_garbage(mesh, a, b)
    assert after["interfaces"]["l1b"]["rx_packets"] >= before["interfaces"]["l1b"]["rx_packets"] + 5
    sw_drops = sum(v for k, v in after["switch"].items() if k.startswith("drop"))
    node_drops = sum(after["drops"].values())
    sw_before = sum(v for k, v in before["switch"].items() if k.startswith("drop"))
    assert sw_drops + node_drops >= sw_before + sum(before["drops"].values()) + 4, after
    sw, drops = after["switch"], after["drops"]
    assert sw.get("drop_runt", 0) >= before["switch"].get("drop_runt", 0) + 1
    assert sw.get("drop_malformed_address", 0) >= before["switch"].get("drop_malformed_address", 0) + 1
    assert drops.get("session_unknown_handle", 0) >= 1
    assert sum(v for k, v in drops.items() if k.startswith("session_") and k != "session_unknown_handle") >= 1
    assert mesh.client(b).call("status")["healthy"]
    assert wait_reachable(mesh, a, c)
    assert ping6(mesh, a, c, count=3)[0] == 3


def test_malformed_frames_on_an_encrypted_link_end_at_its_session(mesh):
    """With link encryption (the default) nothing unauthenticated reaches the switch: every garbage datagram is a
    drop of the link session, counted on the interface, and traffic goes on."""
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    before, after = inject_garbage(mesh, a, b)
    link_drops = [sum(v for k, v in counters["interfaces"]["l1b"]["drops"].items() if k.startswith("link_"))
                  for counters in (before, after)]
    assert link_drops[1] - link_drops[0] == len(GARBAGE), after["interfaces"]["l1b"]["drops"]
    switch_drops = [{k: v for k, v in counters["switch"].items() if k.startswith("drop")} for counters in (before, after)]
    assert switch_drops[0] == switch_drops[1] and after["drops"] == before["drops"]     # none reached the switch
    assert mesh.client(b).call("status")["healthy"]
    assert ping6(mesh, a, c, count=3)[0] == 3


def test_restarted_agent_with_same_identity_restores_connectivity(mesh):
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    assert mesh.stop_agent(c, signal.SIGKILL) is not None
    assert ping6(mesh, a, c, count=2, wait=1)[0] == 0
    mesh.start_agent(c)
    # traffic from the surviving side alone must recover (its old session is stale)
    assert wait_reachable(mesh, a, c, timeout=30)
    assert wait_reachable(mesh, c, a, timeout=20)
    assert mesh.client(c).call("sessions")["sessions"][0]["established"]


def test_link_emulation_through_control_api_bites_and_is_removable(mesh):
    a, b = mesh.line(2)
    mesh.start()
    assert wait_reachable(mesh, a, b)
    base = ping6(mesh, a, b, count=5)[1]
    mesh.client(a).call("set_link", ifname="l1a", delay_s=0.1)
    delayed = ping6(mesh, a, b, count=5)[1]
    assert delayed > base + 90
    mesh.client(a).call("set_link", ifname="l1a", params={"loss": 1.0}, )
    assert ping6(mesh, a, b, count=3, wait=1)[0] == 0
    assert mesh.client(a).call("counters")["interfaces"]["l1a"]["emulation"]["lost"] >= 3
    mesh.client(a).call("set_link", ifname="l1a", params={"reset": True})
    received, rtt = ping6(mesh, a, b, count=5)
    assert received == 5 and rtt < delayed - 50
    assert mesh.client(a).call("peers")["peers"][0]["link_emulation"]["delay_s"] == 0


def test_sigterm_and_shutdown_remove_tun_and_socket(mesh):
    a, b = mesh.line(2)
    mesh.start()
    assert "tun0" in mesh.run(a, "ip", "link").stdout
    assert mesh.stop_agent(a) == 0
    assert not os.path.exists(a.socket)
    assert "tun0" not in mesh.run(a, "ip", "link").stdout
    # the control API's shutdown does the same
    assert mesh.client(b).call("shutdown")["shutting_down"]
    assert b.proc.wait(10) == 0
    assert not os.path.exists(b.socket)
    assert "tun0" not in mesh.run(b, "ip", "link").stdout


def test_switch_error_from_a_dead_hop_is_counted_and_reported(mesh):
    a, b, c = mesh.line(3)
    mesh.start()
    assert wait_reachable(mesh, a, c)
    # b's interface towards c disappears (as if that link died): b's switch answers with an error
    from node.cjdns import labels
    # a -> b over a's interface 0, then b's interface 7, which does not exist
    bad_label = labels.label_text(labels.splice(labels.one_hop_label(7), labels.one_hop_label(0)))
    mesh.client(a).call("set_paths", paths={c.ip6: {"public_key": c.identity.pubkey_text, "label": bad_label}})
    assert ping6(mesh, a, c, count=2, wait=1)[0] == 0
    time.sleep(0.3)
    counters = mesh.client(a).call("counters")
    assert counters["tun"]["switch_errors_received"] >= 2
    assert counters["drops"].get("switch_error_malformed_address", 0) >= 2
    assert mesh.client(b).call("counters")["switch"].get("errors_sent", 0) >= 2
    assert counters["path_failures"].get(c.ip6, 0) >= 2
    # putting the right path back restores traffic
    mesh.client(a).call("set_paths", paths=json.loads(open(a.config_path).read())["paths"])
    assert wait_reachable(mesh, a, c)
    assert ping6(mesh, a, c, count=2)[0] == 2


def test_bad_config_exits_with_clear_error(mesh, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"node": "x"}))
    r = subprocess.run([sys.executable, "-m", "node.agent", str(bad)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "missing required field" in r.stderr


def test_ten_node_line_ping_and_iperf(mesh):
    nodes = mesh.line(10)
    mesh.start(timeout=30)
    first, last = nodes[0], nodes[-1]
    assert wait_reachable(mesh, first, last, timeout=30)
    received, rtt = ping6(mesh, first, last, count=5)
    assert received == 5
    mbps = iperf3(mesh, last, first, seconds=5)
    print(f"10-node line: ping rtt {rtt} ms, iperf3 TCP {mbps:.1f} Mbit/s")
    assert mbps > 1
    assert shutil.which("iperf3")


ONE_WAY = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"one-way %d" % i, (sys.argv[1], 9999))
    time.sleep(float(sys.argv[3]))
"""


def test_one_way_udp_flow_is_delivered(mesh):
    # no reply ever comes back: the handshake must still complete and keep delivering
    a, b, c = mesh.line(3)
    mesh.start()
    script = os.path.join(mesh.dir, "oneway.py")
    with open(script, "w") as f:
        f.write(ONE_WAY)
    r = mesh.run(a, sys.executable, script, c.ip6, "300", "0.02", timeout=60)
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    delivered = mesh.client(c).call("counters")["tun"]["tun_tx_packets"]
    assert delivered >= 295, mesh.client(c).call("counters")


def test_rate_and_corruption_emulation(mesh):
    a, b = mesh.line(2)
    mesh.start()
    assert wait_reachable(mesh, a, b)
    full = iperf3(mesh, b, a, seconds=2)
    mesh.client(a).call("set_link", ifname="l1a", rate_bps=20e6)
    limited = iperf3(mesh, b, a, seconds=3)
    print(f"unlimited {full:.0f} Mbit/s, rate 20 Mbit/s -> {limited:.1f} Mbit/s")
    assert 2 < limited < 24 and full > 2 * limited
    mesh.client(a).call("set_link", ifname="l1a", params={"reset": True})
    # corruption is caught by the link session at the receiver, which authenticates every bit of the frame (on a
    # plaintext link a flipped bit in a field nobody checks, e.g. the traffic class, would pass), and counted
    mesh.client(a).call("set_link", ifname="l1a", corrupt=1.0)
    received = ping6(mesh, a, b, count=30, interval=0.05, wait=1)[0]
    print(f"{received}/30 echoes through a link that flips one bit of every packet")
    assert received == 0
    drops = mesh.client(b).call("counters")["interfaces"]["l1b"]["drops"]
    assert drops.get("link_decrypt_failed", 0) >= 30, drops
    mesh.client(a).call("set_link", ifname="l1a", corrupt=0)
    assert wait_reachable(mesh, a, b)
    assert ping6(mesh, a, b, count=3)[0] == 3


def test_link_emulation_from_the_config_file(mesh):
    a, b = mesh.line(2)
    a.link_emulation = {"l1a": {"delay_s": 0.05}}
    mesh.start()
    assert wait_reachable(mesh, a, b)
    assert ping6(mesh, a, b, count=3)[1] > 50
    assert mesh.client(a).call("config")["config"]["link_emulation"]["l1a"]["delay_s"] == 0.05
