"""A ping between real data planes (node.tun_switch.node.Node) on a 4-node line, every frame on every link captured into a
pcap and dissected: the echo crosses three hops, each hop rewrites only the label (and label shift), and the
dissection shows it. No root: nodes are joined by in-memory links and run on a fake clock."""
import os
import struct
import sys

from scapy.all import IPv6, UDP, Raw, wrpcap

from node.cjdns import control, labels, switch_header as SH
from testbed import dissect as D

sys.path.insert(0, os.path.dirname(__file__))
from meshes import build_line  # noqa: E402

PORT = D.PEER_LINK_PORT


def capture(wire):
    """Record every frame the wire delivers as (sender address, receiver address, frame)."""
    captured = []
    wire.taps.append(lambda link, frame: captured.append((link_addr(link), link_addr(link.remote[1]), frame)))
    return captured


def link_addr(link):
    """The IPv6 address of a link end: the link n_i - n_i+1 is fd00:<i+1>::/64, ::1 on n_i and ::2 on n_i+1."""
    mine, theirs = int(link.owner[1:]), int(link.ifname[2:])
    return f"fd00:{min(mine, theirs) + 1}::{1 if mine < theirs else 2}"


def pump(wire, nodes=()):
    """Deliver queued frames until the mesh is quiet; echo requests that reach a node's TUN are answered like its
    kernel would."""
    while wire.queue:
        wire.pump()
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
    wire, loop, nodes = build_line(4, seed=b"capture", udp_port=PORT)
    a, d = nodes[0], nodes[3]
    captured, results = capture(wire), []
    for _ in range(3):                     # Hello/Key, then established data packets
        a.ping(d.ip6, results.append)
        pump(wire, nodes)
    assert [r["reachable"] for r in results] == [True, True, True]

    pcap = tmp_path / "ping.pcap"
    pkts = []
    for src, dst, frame in captured:
        p = IPv6(src=src, dst=dst) / UDP(sport=PORT, dport=PORT) / Raw(frame)
        p.time = len(pkts) * 0.001
        pkts.append(p)
    wrpcap(str(pcap), pkts)
    summaries = D.dissect_pcap(pcap, link_crypto=False)
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
    wire, loop, nodes = build_line(2, seed=b"capture", udp_port=PORT)
    captured = capture(wire)
    nodes[0].housekeeping()
    pump(wire)
    wrpcap(str(tmp_path / "lp.pcap"), [IPv6(src=s, dst=d) / UDP(sport=PORT, dport=PORT) / Raw(f)
                                       for s, d, f in captured])
    ping, pong = D.dissect_pcap(tmp_path / "lp.pcap", link_crypto=False)
    p, q = ping.layer("cjdns control"), pong.layer("cjdns control")
    assert (p["type"], q["type"]) == ("PING", "PONG") and p["checksum"] == q["checksum"] == "ok"
    assert p["data_bytes"] == q["data_bytes"] == struct.calcsize(">Hd")
    # sent on the one-hop label 0x13: on the wire its director is gone and the peer's self route is left
    sw = ping.layer("cjdns switch")
    assert sw["label_shift"] == 4 and labels.parse_label_text(sw["label"]) & labels.mask(60) == 1
