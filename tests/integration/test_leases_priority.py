"""PKT leases on real namespaces: two customers flood one congested link through a routing device.

    A (n0) --lease a_in--\\
                          D (n1) --lease isp, 2000 kbit/s paced by D--> C (n2)
    B (n3) --lease b_in--/

A and B mark their packets priority 15 + customer ("origin"); D meters each incoming lease against its
max-priority-bandwidth. UDP floods from A and B to C are measured at C's receiver (limits 2000:200 -> 10:1).
Then signed configuration requests through D's control API set both limits to 1000 live (-> 1:1), and a
replayed or wrongly signed request is rejected with its reason. A second test turns a_in into a peer lease
(clear-customer-bit) and isp into deprioritize-non-customer = 4, and checks the traffic classes in a capture on
C's veth; then cuts every lease to priority 0 and checks the device is still reachable (fail-open).

Needs root (namespaces, TUN). Uses tests/integration/agent_harness.py, which removes everything it creates.
"""

import ipaddress
import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agent_harness import PYTHON, Mesh  # noqa: E402

from node.leases import requests as cr  # noqa: E402
from node.cjdns import keys, labels  # noqa: E402
from testbed.udp_receiver import kbit_after  # noqa: E402

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and TUN")]

HOLDER = keys.Identity.from_seed(b"pktlab-lease-it", 99)
CAPACITY_KBIT = 2000
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
ifname, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
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
    if struct.unpack_from(">H", ip, 42)[0] != port:
        continue
    seen.append(struct.unpack_from(">H", ip, 48 + 10)[0])    # switch header traffic class
print(json.dumps(seen))
"""


def ohl(i):
    return labels.one_hop_label(i)


def lease(lid, interface, port, **extra):
    d = {"id": lid, "interface": interface, "udp_port": port, "holder": HOLDER.pubkey_text}
    d.update(extra)
    return d


class LeaseMesh(Mesh):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.leases = {}        # node name -> "leases" section
        self.paths = {}         # node name -> extra path entries

    def config_for(self, node):
        cfg = super().config_for(node)
        if node.name in self.leases:
            cfg["leases"] = self.leases[node.name]
        cfg["paths"].update(self.paths.get(node.name, {}))
        return cfg


@pytest.fixture
def mesh(tmp_path):
    m = LeaseMesh(tmp_path, seed=b"pktlab-lease-it")
    try:
        yield m
    finally:
        m.cleanup()


def build(mesh, limit_a, limit_b):
    """A, B -> D -> C as in the module docstring; ``None`` limits are unlimited."""
    a, d, c, b = (mesh.add_node() for _ in range(4))
    mesh.add_link(a, d)      # l1a / l1b
    mesh.add_link(d, c)      # l2a / l2b
    mesh.add_link(b, d)      # l3a / l3b
    origin = {"priority": 15, "customer": True}
    mesh.leases[a.name] = {"links": {"l1a": {"leases": [lease("a_in", 20, 7301)]}}, "origin": origin}
    mesh.leases[b.name] = {"links": {"l3a": {"leases": [lease("b_in", 21, 7302)]}}, "origin": origin}
    mesh.leases[d.name] = {"links": {
        "l1b": {"leases": [lease("a_in", 20, 7301, max_priority_bandwidth=limit_a)]},
        "l3b": {"leases": [lease("b_in", 21, 7302, max_priority_bandwidth=limit_b)]},
        "l2a": {"capacity_kbit": CAPACITY_KBIT, "leases": [lease("isp", 22, 7303)]}}}
    mesh.leases[c.name] = {"links": {"l2b": {"leases": [lease("isp", 22, 7303)]}}}
    for src, iface in ((a, 20), (b, 21)):
        label = labels.build_label([(None, ohl(iface)), (ohl(iface), ohl(22)), (ohl(22), None)])[0]
        mesh.paths[src.name] = {c.ip6: {"public_key": c.identity.pubkey_text, "label": labels.label_text(label)}}
    mesh.start()
    return a, b, c, d


def flood(mesh, senders, receiver, pps=300):
    """kbit/s per source address received after the warm-up."""
    rx = mesh.popen(receiver, PYTHON, "-m", "testbed.udp_receiver", str(PORT), str(FLOOD_S), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = [mesh.popen(s, PYTHON, "-c", SENDER, receiver.ip6, str(pps), str(FLOOD_S)) for s in senders]
    try:
        out, err = rx.communicate(timeout=FLOOD_S + 20)
    finally:
        for p in tx:
            p.wait(timeout=10)
    assert rx.returncode == 0, err
    return {ipaddress.ip_address(addr).compressed: kbit_after(per_second, WARMUP_S, FLOOD_S)
            for addr, per_second in json.loads(out).items()}


def warm_up(mesh, a, b, c):
    # sessions A->C and B->C (handshakes) before measuring
    for src in (a, b):
        r = mesh.client(src).call("ping", dest=c.ip6, timeout_s=5)
        assert r["reachable"], r


def test_max_priority_bandwidth_shares_a_congested_link_and_signed_requests_change_it(mesh):
    # 2000 kbit/s = 250 kB/s; the limits bind when their sum is under 15 x 250 priority x kB/s
    a, b, c, d = build(mesh, limit_a=2000, limit_b=200)
    warm_up(mesh, a, b, c)
    got = flood(mesh, [a, b], c)
    ra, rb = (got.get(ipaddress.ip_address(n.ip6).compressed, 0) for n in (a, b))
    print("10:1 ->", ra, rb)
    assert rb > 0 and ra / rb == pytest.approx(10, rel=0.2)
    assert ra + rb <= CAPACITY_KBIT * 1.05

    ctl = mesh.client(d)
    desc = ctl.call("leases")
    assert desc["interfaces"]["20"] == {"link": "l1b", "lease": "a_in"}
    assert desc["egress"]["l2a"]["drops"]["queue_full"] + desc["egress"]["l2a"]["drops"]["pushed_out"] > 0

    # the holder sets both limits to 1000: equal shares
    now = time.time()
    req_a = cr.make_request(HOLDER.private_key, "a_in", {"max_priority_bandwidth": 1000}, now).decode()
    assert ctl.call("lease_config", request=req_a)["lease"]["max_priority_bandwidth"] == 1000
    req = cr.make_request(HOLDER.private_key, "b_in", {"max_priority_bandwidth": 1000}, now).decode()
    assert ctl.call("lease_config", request=req)["lease"]["max_priority_bandwidth"] == 1000
    assert ctl.request({"cmd": "lease_config", "request": req})["error"] == cr.REPLAYED_NONCE
    other = keys.Identity.from_seed(b"pktlab-lease-it", 100)
    bad = cr.make_request(other.private_key, "b_in", {"max_priority_bandwidth": 1}, now).decode()
    assert ctl.request({"cmd": "lease_config", "request": bad})["error"] == cr.WRONG_KEY
    got = flood(mesh, [a, b], c)
    ra, rb = (got.get(ipaddress.ip_address(n.ip6).compressed, 0) for n in (a, b))
    print("1:1 ->", ra, rb)
    assert ra / rb == pytest.approx(1, rel=0.1)


def capture(mesh, node, ifname, port, seconds):
    return mesh.popen(node, PYTHON, "-c", CAPTURE, ifname, str(port), str(seconds), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)


@pytest.fixture
def plain_mesh(tmp_path):
    """Links without encryption: the test reads the traffic class of the switch headers on the wire."""
    m = LeaseMesh(tmp_path, seed=b"pktlab-lease-it", link_crypto=False)
    try:
        yield m
    finally:
        m.cleanup()


def test_peer_traffic_leaves_with_at_most_priority_p_and_leases_fail_open(plain_mesh):
    mesh = plain_mesh
    a, b, c, d = build(mesh, limit_a=None, limit_b=None)
    warm_up(mesh, a, b, c)
    ctl = mesh.client(d)
    now = time.time()
    # a_in now comes from a peer (clear-customer-bit); isp caps non-customer traffic at P = 4
    for lid, changes in (("a_in", {"clear_customer_bit": True}), ("isp", {"deprioritize_non_customer": 4})):
        assert ctl.call("lease_config", request=cr.make_request(HOLDER.private_key, lid, changes, now).decode())
    cap = capture(mesh, c, "l2b", 7303, 4.0)
    time.sleep(0.5)
    flood(mesh, [a, b], c, pps=50)
    out, err = cap.communicate(timeout=30)
    classes = json.loads(out)
    non_customer = [tc for tc in classes if tc != 0xFFFF and not tc & 0x0800]
    customer = [tc for tc in classes if tc != 0xFFFF and tc & 0x0800]
    print("captured", len(classes), "non-customer priorities", sorted({tc >> 12 for tc in non_customer}),
          "customer priorities", sorted({tc >> 12 for tc in customer}))
    assert len(non_customer) > 50 and len(customer) > 50, (len(classes), err)      # A's and B's packets
    assert max(tc >> 12 for tc in non_customer) <= 4
    assert max(tc >> 12 for tc in customer) == 15                                 # B is a customer

    # fail-open: with every paid lease cut to priority 0 (max-priority-bandwidth 0) the device still answers over
    # the free tier (A -> D uses the free leases) and B's lease path still forwards (only priority is lost)
    for lid in ("a_in", "b_in", "isp"):
        req = cr.make_request(HOLDER.private_key, lid, {"max_priority_bandwidth": 0}, time.time()).decode()
        assert ctl.call("lease_config", request=req)
    assert mesh.client(a).call("ping", dest=d.ip6, timeout_s=5)["reachable"]
    assert mesh.client(b).call("ping", dest=c.ip6, timeout_s=5)["reachable"]
