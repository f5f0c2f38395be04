"""Switch header and the label switch (pkt-reference.md §2.1, §2.3)."""
import random

import pytest
from hypothesis import assume, example, given, settings, strategies as st

from node.cjdns import control
from node.cjdns import switch_header as SH
from node.cjdns.labels import (LabelTooLong, bit_reverse64, bits_for_label, bits_for_number, build_label,
                                    one_hop_label, splice_path)
from node.cjdns.switch import DROP_UNDELIVERABLE, Switch
from node.cjdns.switch_header import SwitchHeader


# -- switch header ---------------------------------------------------------------------------------------

def test_header_vector():
    raw = bytes.fromhex("000000000000001300480000")
    h = SwitchHeader.unpack(raw)
    assert (h.label, h.congestion, h.suppress_errors, h.version, h.label_shift, h.traffic_class) == \
        (0x13, 0, False, 1, 8, 0)
    assert h.pack() == raw


def test_header_runt_and_range_errors():
    with pytest.raises(SH.SwitchHeaderError):
        SwitchHeader.unpack(b"\x00" * 11)
    with pytest.raises(SH.SwitchHeaderError):
        SwitchHeader(1 << 64).pack()
    with pytest.raises(SH.SwitchHeaderError):
        SwitchHeader(1, label_shift=64).pack()


headers = st.builds(SwitchHeader, st.integers(0, 2**64 - 1), st.integers(0, 127), st.booleans(),
                    st.integers(0, 3), st.integers(0, 63), st.integers(0, 0xFFFF))


@given(headers)
def test_header_round_trip(h):
    assert SwitchHeader.unpack(h.pack()) == h


@settings(max_examples=300)
@given(st.binary(max_size=20))
def test_header_parser_only_raises_its_error(data):
    try:
        h = SwitchHeader.unpack(data)
    except SH.SwitchHeaderError:
        return
    assert h.pack() == data[:12]


def test_traffic_class_layout():
    assert SH.priority_of(SH.UNCLASSED) == SH.DEFAULT_PRIORITY
    assert not SH.is_customer(SH.UNCLASSED)
    for prio in range(16):
        for cust in (False, True):
            tc = SH.make_traffic_class(prio, cust)
            assert tc != SH.UNCLASSED
            assert SH.priority_of(tc) == prio and SH.is_customer(tc) is cust
    assert SwitchHeader(1, traffic_class=SH.make_traffic_class(9, True)).priority == 9
    with pytest.raises(SH.SwitchHeaderError):
        SH.make_traffic_class(16)


# -- switch ----------------------------------------------------------------------------------------------

def full_switch(**kw):
    s = Switch(**kw)
    for i in range(257):
        if i != 1:
            s.add_interface(i)
    return s


def send(sw, src, label, payload=b"payload", **hdr):
    return sw.receive(src, SwitchHeader(label, **hdr).pack() + payload)


def test_worked_example_hop_by_hop():
    sw = full_switch()
    steps = [(1, 0xBCEB, 5, 0x8000000000000BCE), (7, 0x8000000000000BCE, 20, 0x5900000000000017),
             (2, 0x5900000000000017, 3, 0xA590000000000001), (9, 0xA590000000000001, 1, 0x454B200000000000)]
    for src, label, dest, out_label in steps:
        [(d, pkt)] = send(sw, src, label)
        assert d == dest
        assert SwitchHeader.unpack(pkt).label == out_label
        assert pkt[12:] == b"payload"


class Net:
    """Switches joined by links {(node, iface): (node, iface)}; runs a packet until it reaches a router."""

    def __init__(self, links):
        self.switches = {}
        self.links = {}
        for (a, ia), (b, ib) in links:
            for n, i in ((a, ia), (b, ib)):
                self.switches.setdefault(n, Switch()).add_interface(i)
            self.links[(a, ia)] = (b, ib)
            self.links[(b, ib)] = (a, ia)

    def run(self, node, packet, src=1):
        for _ in range(20):
            result = self.switches[node].receive(src, packet)
            if not result:  # cjdns drops silently when the label shift would pass 63 (UNDELIVERABLE)
                return "dropped", (node, packet, src)
            [(dest, out)] = result
            if dest == src and SwitchHeader.unpack(out).suppress_errors:
                return "error", (packet, src, control.unframe(out[12:]).name)
            packet = out
            if dest == 1:
                return node, packet
            node, src = self.links[(node, dest)]
        raise AssertionError("loop")


def test_worked_example_network_and_return_path():
    net = Net([(("A", 5), ("B", 7)), (("B", 20), ("C", 2)), (("C", 3), ("D", 9))])
    label = splice_path([one_hop_label(5), one_hop_label(20), one_hop_label(3)])
    assert label == 0xBCEB
    node, pkt = net.run("A", SwitchHeader(label).pack() + b"hi")
    assert node == "D"
    arrived = SwitchHeader.unpack(pkt)
    assert arrived.label == 0x454B200000000000
    back = bit_reverse64(arrived.label)
    assert back == 0x4D2A2
    node, pkt = net.run("D", SwitchHeader(back).pack() + b"hi back")
    assert node == "A" and pkt[12:] == b"hi back"


iface_ids = st.integers(0, 256).filter(lambda i: i != 1)


@given(st.lists(st.tuples(iface_ids, iface_ids).filter(lambda t: t[0] != t[1]), min_size=1, max_size=6),
       iface_ids, iface_ids)
@example(middle=[(0, 33)] * 5, first_out=0, last_in=33)  # wide return directors use up the label shift
def test_random_chains_deliver_and_return(middle, first_out, last_in):
    """A chain of nodes; middle nodes enter on t[0] and leave on t[1]; build_label re-encodes as needed."""
    ports = [(None, first_out)] + middle + [(last_in, None)]
    links = [((k, ports[k][1]), (k + 1, ports[k + 1][0])) for k in range(len(ports) - 1)]
    net = Net(links)
    hops = [(None if p is None else one_hop_label(p), None if n is None else one_hop_label(n)) for p, n in ports]
    try:
        label, _ = build_label(hops)
    except LabelTooLong:
        assume(False)
    node, pkt = net.run(0, SwitchHeader(label).pack() + b"xxxx")  # long enough to be quoted in an error
    if node == "dropped":
        # wide return directors can use up the 64 bits of label shift before the packet arrives
        at, packet, src = pkt
        h = SwitchHeader.unpack(packet)
        assert net.switches[at].counters[DROP_UNDELIVERABLE] == 1
        assert h.label_shift + max(bits_for_label(h.label), bits_for_number(src)) > 63
        return
    if node == "error":
        # cjdns issue #93: at the destination the return path must fit left of 0001 plus the source director
        packet, src, name = pkt
        assert name == "RETURN_PATH_INVALID"
        assert SwitchHeader.unpack(packet).label_shift + 4 + bits_for_number(src) > 64 - 4
        return
    assert node == len(ports) - 1
    back = bit_reverse64(SwitchHeader.unpack(pkt).label)
    node, pkt = net.run(node, SwitchHeader(back).pack() + b"yyyy")
    assert node == 0


def parse_error(pkt):
    h = SwitchHeader.unpack(pkt)
    assert h.suppress_errors
    return h, control.unframe(pkt[12:])


def test_error_to_missing_interface():
    sw = Switch()
    sw.add_interface(0)
    cause = SwitchHeader(one_hop_label(5)).pack() + b"\x00\x00\x00\x09data"
    [(dest, pkt)] = sw.receive(0, cause)
    assert dest == 0
    h, err = parse_error(pkt)
    assert err.name == "MALFORMED_ADDRESS"
    assert err.cause == cause
    assert h.label == bit_reverse64(one_hop_label(5))
    assert sw.counters["drop_malformed_address"] == 1


def test_return_path_invalid_and_source_larger():
    sw = full_switch()
    [(_, pkt)] = send(sw, 40, 0x31)          # for us, but no room for a 10-bit return director
    assert parse_error(pkt)[1].name == "RETURN_PATH_INVALID"
    [(_, pkt)] = send(sw, 40, 0x13)          # 10-bit source, 4-bit destination director
    assert parse_error(pkt)[1].name == "MALFORMED_ADDRESS"
    [(_, pkt)] = send(sw, 0, 0x15 | (1 << 8))  # self route must be 0001: 0x...0101 is interface 2
    assert sw.counters["forwarded"] == 1
    [(_, pkt)] = send(sw, 0, 0x9)            # 1001 decodes to interface 4, fine; 0x11 is 0001 -> router
    [(d, _)] = send(sw, 0, 0x11)
    assert d == 1


def test_suppressed_errors_runts_and_error_loops():
    sw = Switch()
    sw.add_interface(0)
    assert send(sw, 0, one_hop_label(5), suppress_errors=True) == []
    assert sw.receive(0, b"short") == []
    assert sw.counters["drop_runt"] == 1
    err = SwitchHeader(one_hop_label(5)).pack() + control.frame(control.Error(1, b"x" * 16))
    assert sw.receive(0, err) == []
    assert sw.receive(99, SwitchHeader(0x13).pack()) == []   # unknown source interface


def test_label_shift_overflow_is_undeliverable():
    sw = full_switch()
    assert send(sw, 0, 0x15, label_shift=62) == []
    assert sw.counters["drop_undeliverable"] == 1
    [(_, pkt)] = send(sw, 0, 0x15, label_shift=59)
    assert SwitchHeader.unpack(pkt).label_shift == 63


def test_traffic_class_kept_or_unclassed():
    tc = SH.make_traffic_class(7, True)
    [(_, pkt)] = send(full_switch(), 0, 0x15, traffic_class=tc)
    assert SwitchHeader.unpack(pkt).traffic_class == tc
    [(_, pkt)] = send(full_switch(keep_traffic_class=False), 0, 0x15, traffic_class=tc)
    assert SwitchHeader.unpack(pkt).traffic_class == SH.UNCLASSED


def _fuzz_switch(sw, rng, n):
    for _ in range(n):
        src = rng.choice((0, 1, 2, 9, 40, 256, 300))
        pkt = rng.randbytes(rng.randrange(0, 40))
        for dest, out in sw.receive(src, pkt):
            assert 0 <= dest <= 256 and len(out) >= 12


def test_switch_random_packets_never_raise():
    _fuzz_switch(full_switch(), random.Random(5), 500)


@pytest.mark.slow
def test_switch_and_header_fuzz_100k():
    rng = random.Random(11)
    _fuzz_switch(full_switch(), rng, 100_000)
    for _ in range(100_000):
        try:
            SwitchHeader.unpack(rng.randbytes(rng.randrange(0, 16)))
        except SH.SwitchHeaderError:
            pass
