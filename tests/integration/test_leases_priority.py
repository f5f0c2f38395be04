"""PKT leases on real namespaces: two customers flood one congested link through a routing device.

    a1 --lease a_in--\
                      core1 --2000 kbit/s, paced by core1, leases a_up / b_up--> sink
    b1 --lease b_in--/

The topology (tests/integration/topologies/leases-priority.yaml) declares the leases: a1 and b1 mark their packets
priority 15 + customer ("origin"); core1 meters each incoming lease against its max-priority-bandwidth. UDP floods
from a1 and b1 to sink are measured at sink's receiver (limits 2000:200 -> 10:1). Then signed configuration
requests from the holders set both limits to 1000 live (-> 1:1), and a replayed or wrongly signed request is
rejected with its reason. A second test turns a_in into a peer lease (clear-customer-bit) and the uplink leases
into deprioritize-non-customer = 4, and checks the traffic classes in a capture on sink's veth; then cuts every
lease to priority 0 and checks the device is still reachable (fail-open). Needs root.
"""

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.cjdns import keys
from node.leases import requests as cr
from testbed.backends import exec_in
from testbed.topology.leases import holder_identity
from testbed.udp_receiver import kbit_after

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN"),
              pytest.mark.mesh(str(Path(__file__).parent / "topologies" / "leases-priority.yaml"))]

CAPACITY_BPS = 2_000_000
PORT = 9000
FLOOD_S, WARMUP_S = 8.0, 3.0

SENDER = r"""
import socket, sys, time
dest, pps, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
payload = bytes(900); start = time.monotonic(); sent = 0
while True:
    now = time.monotonic() - start
    if now >= duration:
        break
    while sent < now * pps:
        try:
            s.sendto(payload, (dest, %d))
        except OSError:
            pass
        sent += 1
    time.sleep(0.002)
""" % PORT


CAPTURE = r"""
import json, socket, struct, sys, time
ifname, duration, ports = sys.argv[1], float(sys.argv[2]), {int(p) for p in sys.argv[3:]}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
s.bind((ifname, 0)); s.settimeout(0.2)
seen = []; start = time.monotonic()
while time.monotonic() - start < duration:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    ip = frame[14:]
    if len(ip) < 48 + 12 or ip[6] != 17:
        continue
    if struct.unpack_from(">H", ip, 42)[0] not in ports:
        continue
    seen.append(struct.unpack_from(">H", ip, 48 + 10)[0])    # switch header traffic class
print(json.dumps(seen))
"""


def configure(mesh, holder_isp, lease, changes, key=None):
    """A signed configuration request to core1 as the lease's holder would send it; core1's answer."""
    key = key or holder_identity(mesh.run.state["seed"], holder_isp).private_key
    request = cr.make_request(key, lease, changes, time.time()).decode()
    return mesh.agent("core1").request({"cmd": "lease_config", "request": request}, timeout=5), request


def ifname_towards(mesh, node, peer):
    return next(p["ifname"] for p in mesh.agent(node).call("peers")["peers"] if p["peer_name"] == peer)


def warm_up(mesh):
    # sessions a1->sink and b1->sink (handshakes) before measuring
    for src in ("a1", "b1"):
        r = mesh.agent(src).call("ping", dest=mesh.ip6("sink"), timeout_s=5)
        assert r["reachable"], r


def flood(mesh, senders, receiver="sink", pps=300):
    """kbit/s per sender received after the warm-up."""
    rx = exec_in(mesh.run, receiver, [sys.executable, "-m", "testbed.udp_receiver", str(PORT), str(FLOOD_S)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = [exec_in(mesh.run, s, [sys.executable, "-c", SENDER, mesh.ip6(receiver), str(pps), str(FLOOD_S)])
          for s in senders]
    try:
        out, err = rx.communicate(timeout=FLOOD_S + 20)
    finally:
        for p in tx:
            p.wait(timeout=10)
    assert rx.returncode == 0, err
    got = {ipaddress.ip_address(addr).compressed: kbit_after(per_second, WARMUP_S, FLOOD_S)
           for addr, per_second in json.loads(out).items()}
    return [got.get(ipaddress.ip_address(mesh.ip6(s)).compressed, 0) for s in senders]


def test_max_priority_bandwidth_shares_a_congested_link_and_signed_requests_change_it(mesh):
    # 2000 kbit/s = 250 kB/s; the limits bind when their sum is under 15 x 250 priority x kB/s
    warm_up(mesh)
    ra, rb = flood(mesh, ["a1", "b1"])
    print("10:1 ->", ra, rb)
    assert rb > 0 and ra / rb == pytest.approx(10, rel=0.2)
    assert (ra + rb) * 1000 <= CAPACITY_BPS * 1.05       # flood() measures kbit/s

    desc = mesh.agent("core1").call("leases")
    assert {"link": ifname_towards(mesh, "core1", "a1"), "lease": "a_in"} in desc["interfaces"].values()
    uplink = ifname_towards(mesh, "core1", "sink")
    assert desc["egress"][uplink]["drops"]["queue_full"] + desc["egress"][uplink]["drops"]["pushed_out"] > 0

    # the holders set both limits to 1000: equal shares
    answer, _ = configure(mesh, "shopa", "a_in", {"max_priority_bandwidth": 1000})
    assert answer["lease"]["max_priority_bandwidth"] == 1000
    answer, request = configure(mesh, "shopb", "b_in", {"max_priority_bandwidth": 1000})
    assert answer["lease"]["max_priority_bandwidth"] == 1000
    again = mesh.agent("core1").request({"cmd": "lease_config", "request": request}, timeout=5)
    assert again["error"] == cr.REPLAYED_NONCE
    other = keys.Identity.from_seed(b"pktlab-lease-it", 100)
    answer, _ = configure(mesh, None, "b_in", {"max_priority_bandwidth": 1}, key=other.private_key)
    assert answer["error"] == cr.WRONG_KEY
    ra, rb = flood(mesh, ["a1", "b1"])
    print("1:1 ->", ra, rb)
    assert ra / rb == pytest.approx(1, rel=0.1)


def test_peer_traffic_leaves_with_at_most_priority_p_and_leases_fail_open(mesh):
    warm_up(mesh)
    # a_in now comes from a peer (clear-customer-bit); the uplink leases cap non-customer traffic at P = 4
    for holder, lid, changes in (("shopa", "a_in", {"clear_customer_bit": True}),
                                 ("shopa", "a_up", {"deprioritize_non_customer": 4}),
                                 ("shopb", "b_up", {"deprioritize_non_customer": 4})):
        assert configure(mesh, holder, lid, changes)[0]["ok"]
    config = json.loads(mesh.run.path("nodes", "sink", "agent.json").read_text())
    ifname = ifname_towards(mesh, "sink", "core1")
    ports = [str(lease["udp_port"]) for lease in config["leases"]["links"][ifname]["leases"]]
    cap = exec_in(mesh.run, "sink", [sys.executable, "-c", CAPTURE, ifname, "4.0", *ports],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    flood(mesh, ["a1", "b1"], pps=50)
    out, err = cap.communicate(timeout=30)
    classes = json.loads(out)
    non_customer = [tc for tc in classes if tc != 0xFFFF and not tc & 0x0800]
    customer = [tc for tc in classes if tc != 0xFFFF and tc & 0x0800]
    print("captured", len(classes), "non-customer priorities", sorted({tc >> 12 for tc in non_customer}),
          "customer priorities", sorted({tc >> 12 for tc in customer}))
    assert len(non_customer) > 50 and len(customer) > 50, (len(classes), err)      # a1's and b1's packets
    assert max(tc >> 12 for tc in non_customer) <= 4
    assert max(tc >> 12 for tc in customer) == 15                                 # b1 is a customer

    # fail-open: with every paid lease cut to priority 0 (max-priority-bandwidth 0) the device still answers over
    # the free tier and b1's lease path still forwards (only priority is lost)
    for holder, lid in (("shopa", "a_in"), ("shopb", "b_in"), ("shopa", "a_up"), ("shopb", "b_up")):
        assert configure(mesh, holder, lid, {"max_priority_bandwidth": 0})[0]["ok"]
    assert mesh.agent("a1").call("ping", dest=mesh.ip6("core1"), timeout_s=5)["reachable"]
    assert mesh.agent("b1").call("ping", dest=mesh.ip6("sink"), timeout_s=5)["reachable"]
