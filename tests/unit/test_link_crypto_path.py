"""Per-hop encryption on the data path, without root: Nodes on in-memory links whose frames ride in link sessions
(node/cjdns/link_session.py), a sniffer tapping every link (MemoryWire.taps)."""
import os
import struct
import sys

from node.cjdns import control
from node.cjdns.cryptoauth import FIRST_DATA_NONCE, HANDSHAKE_SIZE

sys.path.insert(0, os.path.dirname(__file__))
from meshes import build_line  # noqa: E402
from test_agent_packet_path import ip6_packet  # noqa: E402

MARKER = b"IPv6 payload the sniffer must not see " * 3
PING_MAGIC = struct.pack(">I", control.MAGIC[control.PING])
PONG_MAGIC = struct.pack(">I", control.MAGIC[control.PONG])


def up_line(n, link_crypto):
    """A line whose links answered their pings (with link crypto: whose link sessions are established)."""
    wire, loop, nodes = build_line(n, link_crypto=link_crypto)

    def ready():
        return all(node.link_up(link) and (not link_crypto or link.session.established)
                   for node in nodes for link in node.links.values())
    for _ in range(5):
        # housekeeping runs once a second; a peer heard lately is not probed, so the end that answered first has
        # its session established when the peer's next probe comes, up to QUIET_S later
        loop.now += 1.0
        for node in nodes:
            node.housekeeping()
        wire.pump()
        if ready():
            break
    assert ready()
    return wire, loop, nodes


def sniff(wire):
    seen = []
    wire.taps.append(lambda link, packet: seen.append((link.owner, packet)))
    return seen


def exchange(nodes, wire, rounds=5):
    a, z = nodes[0], nodes[-1]
    for _ in range(rounds):
        a.send_ip6(ip6_packet(a.identity, z.identity, MARKER))
        wire.pump()
        z.send_ip6(ip6_packet(z.identity, a.identity, MARKER[::-1]))
        for node in nodes:
            node.housekeeping()                 # link pings and pongs on the wire too
        wire.pump()


def test_with_link_crypto_a_sniffer_on_any_link_sees_only_ciphertext():
    wire, loop, nodes = up_line(4, link_crypto=True)
    seen = sniff(wire)
    exchange(nodes, wire)
    assert len(nodes[-1].delivered) == 5 and len(nodes[0].delivered) == 5     # the traffic got through
    assert {owner for owner, _ in seen} == {"n0", "n1", "n2", "n3"}           # every link end sent something
    for owner, packet in seen:
        assert struct.unpack_from(">I", packet)[0] >= FIRST_DATA_NONCE, "a handshake after the sessions are up"
        assert MARKER[:16] not in packet and MARKER[::-1][:16] not in packet
        assert PING_MAGIC not in packet and PONG_MAGIC not in packet            # no switch control in the clear
        assert b"\xff\xff\xff\xff" not in packet[12:16]


def test_every_hop_decrypts_and_re_encrypts():
    """Without link sessions a packet crosses the hops with the same end-to-end ciphertext; with them no two
    links carry a common 16-byte run of the same packet."""
    for link_crypto in (False, True):
        wire, loop, nodes = up_line(3, link_crypto=link_crypto)
        seen = sniff(wire)
        exchange(nodes, wire, rounds=1)
        by_sender = {}
        for owner, packet in seen:
            if len(packet) > 100:                 # the data packets, not the link pings
                by_sender.setdefault(owner, []).append(packet)
        first_hop, second_hop = by_sender["n0"][0], by_sender["n1"][0]    # n0 -> n1 -> n2
        shared = any(first_hop[i:i + 16] in second_hop for i in range(0, len(first_hop) - 16, 4))
        assert shared is not link_crypto


def test_without_link_crypto_the_switch_control_is_in_the_clear():
    """What the link sessions hide: labels and link pings are readable on a plaintext link."""
    wire, loop, nodes = up_line(2, link_crypto=False)
    seen = sniff(wire)
    loop.now += 2.0                             # quiet for a while: the peers are probed
    for node in nodes:
        node.housekeeping()
    wire.pump()
    assert any(PING_MAGIC in p for _, p in seen) and any(PONG_MAGIC in p for _, p in seen)


def test_the_handshake_carries_the_link_pings_encrypted():
    wire, loop, nodes = build_line(2, link_crypto=True)
    seen = sniff(wire)
    nodes[0].housekeeping()
    wire.pump()
    hello, key = seen[0][1], seen[1][1]
    assert struct.unpack_from(">I", hello)[0] == 0 and struct.unpack_from(">I", key)[0] == 2
    assert len(hello) > HANDSHAKE_SIZE and PING_MAGIC not in hello and PONG_MAGIC not in key
    link = next(iter(nodes[0].links.values()))
    assert nodes[0].link_up(link)                                  # the pong inside the Key counted


def test_a_link_session_refuses_forged_frames_and_counts_them():
    wire, loop, nodes = up_line(2, link_crypto=True)
    link = next(iter(nodes[1].links.values()))
    before, forwarded = dict(link.drops), nodes[1].switch.counters["forwarded"]
    forged = [bytes(11), struct.pack(">I", 7) + bytes(40), struct.pack(">I", 0) + bytes(HANDSHAKE_SIZE)]
    for frame in forged:
        nodes[1].receive_from_link(link, frame)
    new = {k: v - before.get(k, 0) for k, v in link.drops.items() if v != before.get(k, 0)}
    assert new == {"link_runt": 1, "link_decrypt_failed": 1, "link_wrong_key": 1}
    assert nodes[1].switch.counters["forwarded"] == forwarded and not nodes[1].drops   # none reached the switch
    exchange(nodes, wire, rounds=1)
    assert nodes[1].delivered                                      # the session lives on
