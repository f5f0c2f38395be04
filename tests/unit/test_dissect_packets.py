"""testbed.dissect: crafted peer-link frames (built with the node/ builders) written to a pcap and read back."""
import io

import pytest
from hypothesis import given, settings, strategies as st
from scapy.all import IPv6, UDP, Raw, wrpcap

from node.chain.packetcrypt import announcement as pc_ann
from node.route_server import announcement as rs_ann
from node.cjdns import control, keys, labels, switch_header as SH
from node.cjdns.sessions import SessionManager, pack_data_header
from node.cjdns.switch import Switch
from testbed import dissect as D

PORT = D.PEER_LINK_PORT
A = keys.Identity.from_seed(b"dissect", 0)
B = keys.Identity.from_seed(b"dissect", 1)


def udp(frame, sport=PORT, dport=PORT, src="fd00:1::1", dst="fd00:1::2"):
    return IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(bytes(frame))


def roundtrip(tmp_path, packets, **kw):
    path = tmp_path / "cap.pcap"
    wrpcap(str(path), packets)
    return D.dissect_pcap(path, **{"link_crypto": False, **kw})   # plaintext frames


@pytest.fixture(scope="module")
def session_frames():
    """Hello, Key and a data packet of one real session, behind a classed switch header."""
    ma, mb = SessionManager(A), SessionManager(B)
    tc = SH.make_traffic_class(priority=5, customer=True)
    hdr = SH.SwitchHeader(0x153, label_shift=3, traffic_class=tc).pack()
    hello = hdr + ma.wrap(B.public_key, pack_data_header(58) + b"hello")
    mb.unwrap(hello[SH.SIZE:])
    key = hdr + mb.wrap(A.public_key, pack_data_header(58) + b"key")
    ma.unwrap(key[SH.SIZE:])
    data = hdr + ma.wrap(B.public_key, pack_data_header(58) + b"data payload")
    return {"hello": hello, "key": key, "data": data, "b_handle": mb.peers[A.public_key].my_handle}


def test_hello_key_and_data(tmp_path, session_frames):
    f = session_frames
    hello, key, data = roundtrip(tmp_path, [udp(f["hello"]), udp(f["key"], src="fd00:1::2", dst="fd00:1::1"),
                                            udp(f["data"])])
    sw = hello.layer("cjdns switch")
    assert sw["label"] == "0000.0000.0000.0153" and sw["label_shift"] == 3 and sw["version"] == 1
    assert sw["priority"] == 5 and sw["customer"] is True and sw["traffic_class"] == "0x5800"
    ca = hello.layer("CryptoAuth handshake")
    assert ca["state"] == "HELLO" and ca["auth"] == "none"
    assert ca["key"] == f"{A.pubkey_text} {A.ip6_text}"
    assert ca["random_nonce"] == f["hello"][SH.SIZE + 16:SH.SIZE + 40].hex()
    assert hello.notes == [] and hello.src == f"[fd00:1::1]:{PORT}"

    kca = key.layer("CryptoAuth handshake")
    assert kca["state"] == "KEY" and kca["key"].startswith(B.pubkey_text)

    dd = data.layer("CryptoAuth data")
    assert dd["handle"] == f"{f['b_handle']:#010x}"
    assert dd["nonce"] == 4
    assert dd["tag"] == f["data"][SH.SIZE + 8:SH.SIZE + 24].hex()
    assert dd["ciphertext_bytes"] == len(f["data"]) - SH.SIZE - 24
    assert data.layer("CryptoAuth handshake") is None


def test_waypoint_frames_before_session_data(tmp_path, session_frames):
    from node.cjdns import waypoints
    data = session_frames["data"]
    framed = data[:SH.SIZE] + waypoints.frames([0x17], waypoints.RETURN) + waypoints.frames([0x1555]) + data[SH.SIZE:]
    [pkt] = roundtrip(tmp_path, [udp(framed)])
    assert [(w["kind"], w["label"]) for w in pkt.all("pktlab waypoint")] == [("return", "0000.0000.0000.0017"),
                                                                         ("waypoint", "0000.0000.0000.1555")]
    assert pkt.layer("CryptoAuth data")["handle"] == f"{session_frames['b_handle']:#010x}" and pkt.notes == []


def test_control_ping_pong_and_getsnode(tmp_path):
    hdr = SH.SwitchHeader(0x13).pack()
    snode = keys.Identity.from_seed(b"dissect", 7)
    msgs = [control.Ping(22, b"\x00\x05abc"), control.Ping(22, b"\x00\x05abc", pong=True),
            control.GetSnode(22, 21, 1000, snode.public_key, 0x153, reply=True),
            control.KeyPing(22, A.public_key, b"x")]
    ping, pong, snor, keyping = roundtrip(tmp_path, [udp(hdr + control.frame(m)) for m in msgs])
    c = ping.layer("cjdns control")
    assert c["type"] == "PING" and c["checksum"] == "ok" and c["version"] == 22 and c["data_bytes"] == 5
    assert pong.layer("cjdns control")["type"] == "PONG"
    g = snor.layer("cjdns control")
    assert g["type"] == "GETSNODE_REPLY" and g["path_to_snode"] == "0000.0000.0000.0153"
    assert g["snode_key"].startswith(snode.pubkey_text) and g["kbps"] == 1000 and g["snode_version"] == 21
    assert keyping.layer("cjdns control")["key"].startswith(A.pubkey_text)


def test_switch_error_shows_cause(tmp_path, session_frames):
    sw = Switch()
    sw.add_interface(0)
    bad = SH.SwitchHeader(0x17).pack() + session_frames["data"][SH.SIZE:]    # interface 3 does not exist
    [(iface, err)] = sw.receive(0, bad)
    [s] = roundtrip(tmp_path, [udp(err)])
    outer, cause = s.all("cjdns switch")
    assert outer["S"] == 1 and outer["label"] == labels.label_text(labels.bit_reverse64(0x17))
    c = s.layer("cjdns control")
    assert c["type"] == "ERROR" and c["error_type"] == "MALFORMED_ADDRESS" and c["checksum"] == "ok"
    assert c["cause_label"] == cause["label"] == "0000.0000.0000.0017"
    assert s.layer("CryptoAuth data")["handle"] == f"{session_frames['b_handle']:#010x}"
    assert "\n        cjdns switch: label=0000.0000.0000.0017" in s.text()     # the cause, indented under the error


def test_bad_checksum_and_runts_are_notes_not_exceptions(tmp_path):
    good = bytearray(SH.SwitchHeader(0x13).pack() + control.frame(control.Ping(22)))
    good[-1] ^= 0xFF
    runt_ca = SH.SwitchHeader(0x13).pack() + b"\x00\x00\x00\x00" + b"x" * 20
    s_bad, s_runt, s_tiny = roundtrip(tmp_path, [udp(good), udp(runt_ca), udp(b"\x01\x02")])
    c = s_bad.layer("cjdns control")
    assert c["checksum"] == "BAD" and "checksum" in c["error"] and s_bad.notes
    assert "runt handshake" in s_runt.layer("CryptoAuth handshake")["error"]
    assert s_tiny.notes            # shorter than a switch header


def test_route_announcement_recognised_by_signature(tmp_path):
    peer = keys.Identity.from_seed(b"dissect", 3)
    ann = rs_ann.Announcement.build(A, keys.parse_ip6_text("fc00::1"), 1_700_000_000_000, [
        rs_ann.EncodingSchemeEntity(labels.V358), rs_ann.VersionEntity(22),
        rs_ann.PeerEntity(peer.ip6, 0x15, peer_num=0x13, mtu8=1000 // 8)]).raw
    forged = bytearray(ann)
    forged[-1] ^= 1
    good, bad = roundtrip(tmp_path, [udp(ann, 9000, 9001), udp(bytes(forged), 9000, 9001)])
    r = good.layer("route announcement")
    assert r["signature"] == "ok" and r["node"] == A.ip6_text and r["key"] == A.pubkey_text
    assert r["timestamp_ms"] == 1_700_000_000_000 and r["reset"] is False
    assert "encoding scheme V358" in r["entities"] and "version 22" in r["entities"]
    assert any(e.startswith(f"peer {peer.ip6_text} label 0000.0000.0000.0015 peerNum 0x0013") for e in r["entities"])
    assert bad.layers == [] and "no pktlab port" in bad.notes[0]


def test_packetcrypt_announcement_on_its_port(tmp_path):
    D.bind_packetcrypt_port(9100)
    ann = pc_ann.Announcement(version=1, soft_nonce=0x123456, hard_nonce=77, work_bits=0x2000FFFF,
                              parent_block_height=4242, content_type=2, content_length=5,
                              content_hash=b"hello".ljust(32, b"\0"), merkle_root=bytes(range(64)))
    [s] = roundtrip(tmp_path, [udp(ann.pack(), 9100, 9100)])
    p = s.layer("PacketCrypt announcement")
    assert (p["version"], p["soft_nonce"], p["hard_nonce"], p["parent_block_height"]) == (1, 0x123456, 77, 4242)
    assert p["work_bits"] == "0x2000ffff" and p["content_length"] == 5 and p["signing_key"] == "none"
    assert p["hash"] == ann.hash().hex()
    [short] = roundtrip(tmp_path, [udp(ann.pack()[:500], 9100, 9100)])
    assert "1024" in short.layer("PacketCrypt announcement")["error"]


def test_other_ports_and_explicit_peer_ports(tmp_path, session_frames):
    frame = session_frames["data"]
    [s] = roundtrip(tmp_path, [udp(frame, 5555, 5555)])
    assert s.layers == [] and s.notes
    [s] = roundtrip(tmp_path, [udp(frame, 5555, 5555)], peer_ports={5555})
    assert s.layer("CryptoAuth data")["nonce"] == 4


def test_print_pcap(tmp_path, session_frames):
    path = tmp_path / "p.pcap"
    wrpcap(str(path), [udp(session_frames["hello"]), udp(session_frames["data"])])
    out = io.StringIO()
    assert D.print_pcap(path, out, link_crypto=False) == 2
    text = out.getvalue()
    assert "#1 " in text and "#2 " in text and "label=0000.0000.0000.0153" in text
    assert "state=HELLO" in text and A.pubkey_text in text and "priority=5 customer=True" in text
    assert [s.index for s in D.dissect_pcap(path, limit=1, link_crypto=False)] == [1]


def test_encrypted_links_show_only_their_link_session(tmp_path, session_frames):
    """By default a peer link carries its own CryptoAuth session: the dissector shows the handshake's keys and the
    data packets' nonces, and nothing of the switch frames inside."""
    from node.cjdns.link_session import LinkSession
    a, b = LinkSession(A, B.public_key, 1.0), LinkSession(B, A.public_key, 1.0)
    ping = SH.SwitchHeader(label=1).pack() + control.frame(control.Ping(22, b"x"))
    hello = a.seal(ping, 1.0)
    b.open(hello, 1.0)
    key = b.seal(ping, 1.0)
    a.open(key, 1.0)
    data = a.seal(session_frames["data"], 1.0)
    summaries = roundtrip(tmp_path, [udp(hello), udp(key), udp(data), udp(b"\0\0\0\x09" + bytes(5))],
                          link_crypto=True)
    assert [s.layers[0][0] for s in summaries[:3]] == ["link handshake", "link handshake", "link data"]
    assert summaries[0].layers[0][1]["state"] == "HELLO" and A.pubkey_text in summaries[0].layers[0][1]["key"]
    assert summaries[1].layers[0][1]["state"] == "KEY" and B.pubkey_text in summaries[1].layers[0][1]["key"]
    assert summaries[2].layers[0][1]["nonce"] == 4
    assert summaries[2].layers[0][1]["ciphertext_bytes"] == len(session_frames["data"])
    assert all(len(s.layers) == 1 for s in summaries[:3])           # nothing readable inside
    assert "runt" in summaries[3].notes[0]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_link_datagram_dissects_without_raising(data):
    s = D.summarize(IPv6(bytes(udp(data))))
    assert isinstance(s.layers, list) and isinstance(s.notes, list)
    assert not s.layers or s.layers[0][0] in ("link handshake", "link data")


def test_scapy_layers_build_and_show():
    pkt = D.CjdnsSwitch(label=0x153) / D.CjdnsControl(type=control.PING) / D.CjdnsPing(
        magic=control.MAGIC[control.PING], version=22, data=b"abc")
    raw = bytes(pkt)
    assert raw == SH.SwitchHeader(0x153).pack() + control.frame(control.Ping(22, b"abc"))
    again = D.CjdnsSwitch(raw)
    assert again[D.CjdnsPing].version == 22
    assert "0000.0000.0000.0153" in again.show(dump=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_frame_dissects_without_raising(data):
    layers, notes = D.dissect_frame(data)
    assert isinstance(layers, list) and isinstance(notes, list)
    if len(data) >= SH.SIZE:
        assert layers[0][0] == "cjdns switch"


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([0xFFFFFFFF, 0, 1, 2, 3, 9]), st.binary(max_size=300))
def test_truncated_frames_of_each_kind_never_raise(first, rest):
    frame = SH.SwitchHeader(0x13).pack() + first.to_bytes(4, "big") + rest
    layers, notes = D.dissect_frame(frame)
    assert layers[0][1]["label"] == "0000.0000.0000.0013"


def test_default_peer_port_is_the_mesh_agents_port():
    from testbed import agent_configs
    assert agent_configs.AGENT_UDP_PORT in D.PEER_PORTS
