"""A ping between real data planes (node.dataplane.Node) on a 4-node line, every frame on every link captured into a
pcap and dissected: the echo crosses three hops, each hop rewrites only the label (and label shift), and the
dissection shows it. No root: nodes are joined by in-memory links and run on a fake clock."""
import struct
from collections import deque

from scapy.all import IPv6, UDP, Raw, wrpcap

from node.agent_config import parse_config
from node.dataplane import Node
from node.link_emulation import LinkEmulator
from node.path_provider import static_paths
from node.tun_switch import control, keys, labels, switch_header as SH
from testbed import dissect as D

PORT = D.PEER_LINK_PORT


class Timer:
    def cancel(self):
        pass


class Loop:
    def __init__(self):
        self.now = 50.0

    def clock(self):
        return self.now

    def add_reader(self, *a):
        pass

    def remove_reader(self, *a):
        pass

    def call_later(self, *a):
        return Timer()

    call_at = call_every = call_later


class Link:
    """One end of an in-memory link; frames wait on the shared queue and are recorded as they are delivered."""

    def __init__(self, queue, switch_index, ifname, addr):
        self.queue, self.switch_index, self.ifname, self.addr = queue, switch_index, ifname, addr
        self.peer_name, self.peer_addr, self.peer_public_key = "", "", None
        self.emulator = LinkEmulator()
        self.rx_packets = self.rx_bytes = self.tx_packets = 0
        self.last_pong = self.rtt_ms = None
        self.was_up = False
        self.pings_sent = 0
        self.remote = None

    def send(self, packet):
        self.tx_packets += 1
        self.queue.append((self, packet))

    def counters(self):
        return {}


def build_line(n):
    queue, loop = deque(), Loop()
    ids = [keys.Identity.from_seed(b"capture", i) for i in range(n)]
    names = [f"n{i}" for i in range(n)]
    adj = {name: {} for name in names}
    for a, b in zip(names, names[1:]):
        adj[a][b] = 0 if a == "n0" else 2
        adj[b][a] = 0
    nodes = []
    for i, name in enumerate(names):
        paths = {ids[names.index(d)].ip6_text: {"public_key": ids[names.index(d)].pubkey_text,
                                                "label": labels.label_text(label)}
                 for d, label in static_paths(adj, name).items()}
        cfg = parse_config({"node": name, "private_key": ids[i].private_key.hex(), "control_socket": "/tmp/x",
                            "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": PORT, "peers": [],
                            "paths": paths})
        node = Node(cfg, loop, clock=loop.clock)
        node.delivered = []
        node.deliver = node.delivered.append
        nodes.append(node)
    for i in range(n - 1):
        la = Link(queue, adj[names[i]][names[i + 1]], f"to{i + 1}", f"fd00:{i + 1}::1")
        lb = Link(queue, adj[names[i + 1]][names[i]], f"to{i}", f"fd00:{i + 1}::2")
        la.remote, lb.remote = (nodes[i + 1], lb), (nodes[i], la)
        nodes[i].add_link(la)
        nodes[i + 1].add_link(lb)
    return queue, loop, nodes


def pump(queue, captured, loop, nodes=()):
    """Deliver queued frames (recording each one) until the mesh is quiet; echo requests that reach a node's
    TUN are answered like its kernel would."""
    while queue:
        while queue:
            link, packet = queue.popleft()
            node, far = link.remote
            captured.append((link.addr, far.addr, packet))
            loop.now += 0.001
            node.receive_from_link(far, packet)
        for node in nodes:
            for pkt in node.delivered:
                if pkt[6] == 58 and pkt[40] == 128:
                    node.send_ip6(echo_reply(pkt))
            node.delivered.clear()


def echo_reply(request):
    src, dst, body = request[8:24], request[24:40], bytearray(request[40:])
    body[0], body[2:4] = 129, b"\0\0"
    pseudo = dst + src + struct.pack(">IxxxB", len(body), 58) + bytes(body)
    body[2:4] = struct.pack(">H", control.checksum(pseudo))
    return request[:8] + dst + src + bytes(body)


def test_ping_across_three_hops_dissected(tmp_path):
    queue, loop, nodes = build_line(4)
    a, d = nodes[0], nodes[3]
    captured, results = [], []
    for _ in range(3):                     # Hello/Key, then established data packets
        a.ping(d.ip6, results.append)
        pump(queue, captured, loop, nodes)
    assert [r["reachable"] for r in results] == [True, True, True]

    pcap = tmp_path / "ping.pcap"
    pkts = []
    for src, dst, frame in captured:
        p = IPv6(src=src, dst=dst) / UDP(sport=PORT, dport=PORT) / Raw(frame)
        p.time = len(pkts) * 0.001
        pkts.append(p)
    wrpcap(str(pcap), pkts)
    summaries = D.dissect_pcap(pcap)
    assert len(summaries) == len(captured) and all(not s.notes for s in summaries)

    # the last echo request: one CryptoAuth data frame on each of the three links, A towards D
    path_label = a.paths.lookup(d.ip6)[1]
    requests = [(s, f) for s, (src, dst, f) in zip(summaries, captured)
                if s.layer("CryptoAuth data") and src.endswith("::1") and src.startswith("fd00:")][-3:]
    assert [s.dst for s, _ in requests] == [f"[fd00:{i}::2]:{PORT}" for i in (1, 2, 3)]
    hops = [s.layer("cjdns switch") for s, _ in requests]
    shifts = [h["label_shift"] for h in hops]
    assert shifts == sorted(shifts) and len(set(shifts)) == 3
    assert len({h["label"] for h in hops}) == 3                     # every hop rewrote the label
    assert len({f[SH.SIZE:] for _, f in requests}) == 1              # ... and nothing else
    assert len({s.layer("CryptoAuth data")["handle"] for s, _ in requests}) == 1
    # the forward part of each hop's label is the path label with the passed hops unspliced
    remaining = path_label
    one_hops = [labels.one_hop_label(n.links[idx].switch_index)
                for n, idx in ((nodes[0], 0), (nodes[1], 2), (nodes[2], 2))]
    for h, hop in zip(hops, one_hops):
        remaining = labels.unsplice(remaining, hop)
        assert labels.parse_label_text(h["label"]) & labels.mask(64 - h["label_shift"]) == remaining

    # the handshake of the first echo is visible: a Hello from A's key, a Key from D's key
    states = [(s.layer("CryptoAuth handshake")["state"], s.layer("CryptoAuth handshake")["key"].split()[0])
              for s in summaries if s.layer("CryptoAuth handshake")]
    assert ("HELLO", a.identity.pubkey_text) in states and ("KEY", d.identity.pubkey_text) in states


def test_link_pings_are_control_frames_with_the_link_ping_payload(tmp_path):
    queue, loop, nodes = build_line(2)
    captured = []
    nodes[0].housekeeping()
    pump(queue, captured, loop)
    wrpcap(str(tmp_path / "lp.pcap"), [IPv6(src=s, dst=d) / UDP(sport=PORT, dport=PORT) / Raw(f)
                                       for s, d, f in captured])
    ping, pong = D.dissect_pcap(tmp_path / "lp.pcap")
    p, q = ping.layer("cjdns control"), pong.layer("cjdns control")
    assert (p["type"], q["type"]) == ("PING", "PONG") and p["checksum"] == q["checksum"] == "ok"
    assert p["data_bytes"] == q["data_bytes"] == struct.calcsize(">Hd")
    # sent on the one-hop label 0x13: on the wire its director is gone and the peer's self route is left
    sw = ping.layer("cjdns switch")
    assert sw["label_shift"] == 4 and labels.parse_label_text(sw["label"]) & labels.mask(60) == 1
