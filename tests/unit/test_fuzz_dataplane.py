"""Fuzz: whole frames from a peer link into a node's data plane (switch, control messages, CryptoAuth sessions,
the route-server glue's GETSNODE/RPATH handling), and the control-message codec.

Must hold: control messages parse (ControlError only) and encode back to the same message; a node fed any frame
on a link raises nothing and catches nothing at its handler edges (handler_errors stays empty), a pong it did not
ask for marks no link up, and the session its honest peer has with it still carries traffic both ways after the
frame (one frame cannot break a node or a session). The frames mutated are the pair's own (a replay within the
session's life); a Hello replayed from an earlier session of the same peer is another matter (it restarts the
session, as in cjdns): test_hostile_edges.py shows the session recovers from it."""
import struct

from hypothesis import strategies as st

from node.cjdns import control, labels
from node.cjdns.switch_header import SwitchHeader

from fuzzing import harness
from meshes import build_line
from test_fuzz_cryptoauth import mutate, mutation
from test_hostile_link_pong import two_nodes


def control_body(t, magic, body):
    raw = struct.pack(">HH", 0, t) + (struct.pack(">I", control.MAGIC[t]) if magic and t in control.MAGIC
                                      else b"") + body
    return struct.pack(">H", control.checksum(raw)) + raw[2:]


control_raw = st.one_of(
    st.builds(control_body, st.integers(0, 14), st.booleans(), st.binary(max_size=80)),
    st.binary(max_size=80),
)


@harness(control_raw, ci=2000)
def test_fuzz_control_messages(raw):
    try:
        msg = control.parse(raw)
    except control.ControlError:
        return
    assert control.parse(control.encode(msg)) == msg


def ip6_packet(src, dst, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), 17, 64, src.ip6, dst.ip6) + payload


def established():
    """n0 - n1 with a session that carried traffic both ways; every frame on the wire, for mutation."""
    wire, loop, (n0, n1) = build_line(2)
    frames = []
    wire.taps.append(lambda link, packet: frames.append(packet))
    n0.housekeeping()
    n1.housekeeping()
    for i in range(2):
        n0.send_ip6(ip6_packet(n0.identity, n1.identity, b"ping %d" % i))
        wire.pump()
        n1.send_ip6(ip6_packet(n1.identity, n0.identity, b"pong %d" % i))
        wire.pump()
    assert len(n1.delivered) == 2 and len(n0.delivered) == 2
    return wire, loop, n0, n1, frames


_, _, _, _, FRAMES = established()
header_fields = st.tuples(st.integers(0, 2**64 - 1) | st.sampled_from([1, 0x13, 0x15, 0x17]), st.integers(0, 127),
                          st.booleans(), st.integers(0, 3), st.integers(0, 63), st.integers(0, 0xFFFF))
frame = st.one_of(
    st.tuples(st.just("wire"), st.integers(0, len(FRAMES) - 1), st.lists(mutation, max_size=3)),
    st.tuples(st.just("control"), st.sampled_from([1, 0x13, 0x15]), control_raw),
    st.tuples(st.just("raw"), header_fields, st.binary(max_size=200)),
)


def build_frame(spec, frames) -> bytes:
    if spec[0] == "wire":
        return mutate(frames[spec[1] % len(frames)], spec[2])
    if spec[0] == "control":
        return SwitchHeader(label=spec[1]).pack() + b"\xff\xff\xff\xff" + spec[2]
    return SwitchHeader(*spec[1]).pack() + spec[2]


@harness(st.tuples(frame, st.booleans()), ci=400)
def test_fuzz_dataplane_frames(case):
    spec, to_n1 = case
    wire, loop, n0, n1, frames = established()
    target = n1 if to_n1 else n0
    link = next(iter(target.links.values()))
    last_answered = link.liveness.last_answered
    target.receive_from_link(link, build_frame(spec, frames))
    wire.pump()
    assert n0.errors.counts == {} and n1.errors.counts == {}
    assert link.liveness.last_answered == last_answered or spec[0] == "wire"   # only a real pong (replayed) counts
    # the honest session still works both ways
    n0.send_ip6(ip6_packet(n0.identity, n1.identity, b"after"))
    wire.pump()
    n1.send_ip6(ip6_packet(n1.identity, n0.identity, b"after too"))
    wire.pump()
    assert n1.delivered[-1].endswith(b"after") and n0.delivered[-1].endswith(b"after too")


@harness(st.tuples(st.sampled_from([labels.one_hop_label(3), 1, 0x13]), control_raw, st.booleans()), ci=400)
def test_fuzz_route_server_control_messages(case):
    """GETSNODE, RPATH and the rest to a node whose route-server glue takes the switch control messages."""
    label, raw, to_server = case
    wire, loop, a, b, glues = two_nodes()
    target, link = (a, a.links[2]) if to_server else (b, b.links[3])
    # as the peer's switch puts it on the wire: its one-hop label to us
    packet = SwitchHeader(label=label).pack() + b"\xff\xff\xff\xff" + raw
    target.receive_from_link(link, packet)
    wire.pump()
    for g in glues:
        g.tick()
    wire.pump()
    assert a.errors.counts == {} and b.errors.counts == {}
    assert not a.link_up(a.links[2]) and not b.link_up(b.links[3])     # nobody answered a ping yet
