"""A session across three hops through real switches (node/tun_switch/switch.py), every hop's frame captured in
a pcap and dissected: the labels show each hop's rewrite (pkt-reference.md §2.3 worked example).

Path A.if5 -> B(in if7) -> B.if20 -> C(in if2) -> C.if3 -> D(in if9); one-hop labels 0x1b, 0xce, 0x17 splice to
0xbceb. Each switch pops its director from the low bits, pushes the bit-reversed director of the interface the
frame came in on at the top, and adds the director width to the label shift. The label at D's router,
0x454b200000000000, is the reference's vector; the middle ones follow from the §2.3 algorithm by hand:
  A: 0xbceb >> 4 | rev(0001)                       = 0x8000000000000bce  shift 4
  B: 0x8000000000000bce >> 7 | rev(7-bit if7)      = 0x5900000000000017  shift 11
  C: 0x5900000000000017 >> 4 | rev(4-bit if2)      = 0xa590000000000001  shift 15
  D: 0xa590000000000001 >> 7 | rev(7-bit if9)      = 0x454b200000000000  shift 22   (to D's router)
"""
from scapy.all import IPv6, UDP, Raw, wrpcap

from node.cjdns import keys, labels, switch_header as SH
from node.cjdns.sessions import SessionManager, pack_data_header
from node.cjdns.switch import ROUTER, Switch
from testbed import dissect as D

PORT = D.PEER_LINK_PORT
HOPS = [0x1B, 0xCE, 0x17]
FORWARD = [(0x8000000000000BCE, 4), (0x5900000000000017, 11), (0xA590000000000001, 15)]
AT_D_ROUTER = (0x454B200000000000, 22)


class Node:
    def __init__(self, name, ifaces, seed):
        self.name = name
        self.switch = Switch()
        for i in ifaces:
            self.switch.add_interface(i)
        self.identity = keys.Identity.from_seed(b"3hop", seed)
        self.sessions = SessionManager(self.identity)


# (node, out interface) -> (next node, its in interface, link addresses for the capture)
def build():
    a, b, c, d = Node("A", [5], 0), Node("B", [7, 20], 1), Node("C", [2, 3], 2), Node("D", [9], 3)
    wires = {("A", 5): (b, 7, "fd00:ab::1", "fd00:ab::2"), ("B", 7): (a, 5, "fd00:ab::2", "fd00:ab::1"),
             ("B", 20): (c, 2, "fd00:bc::1", "fd00:bc::2"), ("C", 2): (b, 20, "fd00:bc::2", "fd00:bc::1"),
             ("C", 3): (d, 9, "fd00:cd::1", "fd00:cd::2"), ("D", 9): (c, 3, "fd00:cd::2", "fd00:cd::1")}
    return (a, b, c, d), wires


def send(src, frame, wires, captured):
    """Switch ``frame`` from src's router hop by hop; every frame on a wire goes into ``captured``.
    Returns (node whose router got it, the frame as delivered)."""
    node, iface, frame = src, ROUTER, frame
    for _ in range(10):
        [(out, frame)] = node.switch.receive(iface, frame)
        if out == ROUTER:
            return node, frame
        nxt, nxt_iface, s, d = wires[(node.name, out)]
        captured.append(IPv6(src=s, dst=d) / UDP(sport=PORT, dport=PORT) / Raw(frame))
        node, iface = nxt, nxt_iface
    raise AssertionError("routing loop")


def test_three_hop_session_shows_each_label_rewrite(tmp_path):
    (a, b, c, d), wires = build()
    label = labels.splice_path(HOPS)
    assert label == 0xBCEB
    forward, backward = [], []

    # A -> D: Hello carrying an ICMPv6 echo
    hello = SH.SwitchHeader(label).pack() + a.sessions.wrap(d.identity.public_key, pack_data_header(58) + b"ping")
    at, delivered = send(a, hello, wires, forward)
    assert at is d
    d_label = SH.SwitchHeader.unpack(delivered).label
    key, content = d.sessions.unwrap(delivered[SH.SIZE:])
    assert key == a.identity.public_key and content.endswith(b"ping")

    # D answers on the return path (the bit-reversed label it received): the Key back through C and B
    return_path = labels.bit_reverse64(d_label)
    reply = SH.SwitchHeader(return_path).pack() + d.sessions.wrap(a.identity.public_key,
                                                                 pack_data_header(58) + b"pong")
    at, delivered_back = send(d, reply, wires, backward)
    assert at is a
    assert a.sessions.unwrap(delivered_back[SH.SIZE:])[1].endswith(b"pong")
    a_label = SH.SwitchHeader.unpack(delivered_back).label

    path = tmp_path / "three_hops.pcap"
    wrpcap(str(path), forward + backward)
    summaries = D.dissect_pcap(path, link_crypto=False)
    assert len(summaries) == 6 and all(not s.notes for s in summaries)

    fwd = [s.layer("cjdns switch") for s in summaries[:3]]
    assert [(x["label"], x["label_shift"]) for x in fwd] == [(labels.label_text(l), sh) for l, sh in FORWARD]
    assert [s.dst for s in summaries[:3]] == [f"[fd00:ab::2]:{PORT}", f"[fd00:bc::2]:{PORT}", f"[fd00:cd::2]:{PORT}"]
    assert all(s.layer("CryptoAuth handshake")["state"] == "HELLO" for s in summaries[:3])
    assert (d_label, SH.SwitchHeader.unpack(delivered).label_shift) == AT_D_ROUTER
    assert return_path == 0x4D2A2          # routes back D.if9 -> C.if2 -> B.if7 -> A (the reference's value)

    # the reply: each hop rewrites again, and what reaches A's router mirrors the forward label
    back = [s.layer("cjdns switch") for s in summaries[3:]]
    assert [x["label_shift"] for x in back] == [7, 11, 18]
    assert len({x["label"] for x in back}) == 3
    assert all(s.layer("CryptoAuth handshake")["state"] == "KEY" for s in summaries[3:])
    assert labels.bit_reverse64(a_label) == label

    # the printed dissection lists the three hop labels in order
    text = D.format_summaries(summaries[:3])
    positions = [text.index(f"label={labels.label_text(l)}") for l, _ in FORWARD]
    assert positions == sorted(positions)


def test_unsplicing_matches_the_low_bits_of_each_hop():
    """The forward part of each hop's label is the path label with the passed hops unspliced."""
    (a, b, c, d), wires = build()
    label = labels.splice_path(HOPS)
    captured = []
    send(a, SH.SwitchHeader(label).pack() + bytes(8), wires, captured)
    remaining = label
    for hop, pkt in zip(HOPS, captured):
        remaining = labels.unsplice(remaining, hop)
        got = labels.parse_label_text(D.dissect_frame(bytes(pkt[Raw].load))[0][0][1]["label"])
        shift = SH.SwitchHeader.unpack(bytes(pkt[Raw].load)).label_shift
        assert got & labels.mask(64 - shift) == remaining
