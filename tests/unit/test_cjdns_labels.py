"""cjdns labels, encoding schemes, splicing (pkt-reference.md §2.2, §2.4)."""
import random

import pytest
from hypothesis import assume, given, settings, strategies as st

from node.cjdns import labels as L
from node.cjdns.labels import V358, V48, F4, F8, CANONICAL


def test_scheme_serialization_vectors():
    assert V358.serialize().hex() == "6114458100"
    assert F4.serialize().hex() == "8000"
    assert F8.serialize().hex() == "0001"
    assert V48.serialize().hex() == "810c08"
    for s in (V358, F4, F8, V48):
        assert L.EncodingScheme.parse(s.serialize()) == s
    # switch/test/EncodingScheme_test.c
    raw = bytes.fromhex("4ff4ff29d9ff7f89eeff07")
    assert L.EncodingScheme.parse(raw).serialize() == raw


def test_insane_schemes_rejected():
    for forms in [(), ((4, 1, 0),), ((0, 0, 0),), ((8, 1, 0), (4, 1, 1)), ((4, 1, 1), (8, 1, 1)),
                  ((4, 0, 0), (8, 1, 0)), ((32, 0, 0),)]:
        with pytest.raises(L.LabelError):
            L.EncodingScheme(forms)


def test_form_num():
    assert V358.get_form_num(0x13) == 0
    assert V358.get_form_num(0x1110) == 2
    assert V358.get_form_num(0x96) == 1
    assert F8.get_form_num(0x12345) == 0


def test_splice_vectors():
    assert L.splice(0x04, 0x04) == 0x10
    assert L.splice(0x0200000000001111, 0x5) == 0x0800000000004445
    with pytest.raises(L.LabelTooLong):
        L.splice(0x0400000000001111, 0x5)
    assert L.splice_path([0x13, 0x15]) == 0x153
    path = [0x15, 0x8e, 0xa2, 0x1d, 0x414, 0x1b]
    full = L.splice_path(path)
    assert full == 0x0000001B053510E5
    for hop in path:
        assert L.routes_through(full, hop)
        full = L.unsplice(full, hop)
    assert full == 0x1


def test_unsplice_and_routes_through_vectors():
    assert L.unsplice(0x13, 1) == 0x13
    assert L.unsplice(0x153, 0x13) == 0x15
    assert not L.routes_through(0x0000900AEA95CA55, 0x000001652639C655)
    assert L.routes_through(0x0000900AEA95CA55, 1)


def test_one_hop_vectors():
    for label, want in [(0x13, True), (0x15, True), (0x96, True), (0x400, True), (0x1, False),
                        (0x115, False), (0x166, False), (0x1400, False), (0x153, False)]:
        assert L.is_one_hop(V358, label) is want, hex(label)
    for label, want in [(0x21, True), (0x23, True), (0x220, True), (0x210, True), (0x12, False),
                        (0x110, False), (0x1, False)]:
        assert L.is_one_hop(V48, label) is want, hex(label)


def test_convert_label_vectors():
    assert L.convert_label(V358, 0x15, 0) == 0x15
    assert L.convert_label(V358, 0x15, 1) == 0x86
    assert L.convert_label(V358, 0x15, 2) == 0x404
    assert L.convert_label(V358, 0x404, CANONICAL) == 0x15
    assert L.convert_label(V48, 0x0040000000000067, 1) == 0x0400000000000606
    with pytest.raises(L.LabelError):
        L.convert_label(V358, 0x1, 1)          # the self route cannot be re-encoded
    with pytest.raises(L.LabelError):
        L.convert_label(V358, 0x49c, 0)        # interface 40 does not fit 3 bits


def test_build_label_vector():
    hops = [(None, 0x15), (0x9E, 0x8E), (0x13, 0xA2), (0x1B, 0x1D), (0xEE, 0x1B), (0x19, 0x1B), (0x13, None)]
    label, path = L.build_label(hops)
    assert path == [0x15, 0x8E, 0xA2, 0x1D, 0x92, 0x1B]
    assert label == 0x0000000364B510E5


def test_one_hop_labels_of_interfaces():
    want = {0: 0x13, 2: 0x15, 3: 0x17, 7: 0x1F, 8: 0x9E, 9: 0xA2, 10: 0xA6, 40: 0x49C}
    for iface, label in want.items():
        assert L.one_hop_label(iface) == label
    for iface in range(0, 257):
        if iface == 1:
            continue
        label = L.one_hop_label(iface)
        assert L.is_one_hop(V358, label)
        assert L.decompress(label, L.bits_for_label(label)) == iface
    with pytest.raises(L.LabelError):
        L.one_hop_label(257)


def test_worked_example_label():
    # pkt-reference.md §2.3: A.if5 -> B.if20 -> C.if3
    assert [L.one_hop_label(i) for i in (5, 20, 3)] == [0x1B, 0xCE, 0x17]
    assert L.splice_path([0x1B, 0xCE, 0x17]) == 0xBCEB
    assert L.bit_reverse64(0x454B200000000000) == 0x4D2A2


def test_label_text():
    assert L.label_text(0x13) == "0000.0000.0000.0013"
    assert L.parse_label_text("0000.0003.64b5.10e5") == 0x364B510E5
    for bad in ["0000.0000.0000.013", "0000-0000-0000-0013", "000g.0000.0000.0013", ""]:
        with pytest.raises(L.LabelError):
            L.parse_label_text(bad)


def test_bit_reverse():
    assert L.bit_reverse64(1) == 1 << 63
    assert L.bit_reverse64(L.bit_reverse64(0x123456789ABCDEF0)) == 0x123456789ABCDEF0


# -- properties --------------------------------------------------------------------------------------------

ifaces = st.integers(0, 256).filter(lambda i: i != 1)
short_labels = st.integers(1, (1 << 29) - 1)


@given(short_labels, short_labels)
def test_splice_unsplice_inverse(go, via):
    spliced = L.splice(go, via)
    assert L.unsplice(spliced, via) == go
    assert L.routes_through(spliced, via)


@given(st.lists(ifaces, min_size=1, max_size=5))
def test_spliced_path_routes_through_every_prefix(path_ifaces):
    hops = [L.one_hop_label(i) for i in path_ifaces]
    full = L.splice_path(hops)
    for k in range(1, len(hops) + 1):
        assert L.routes_through(full, L.splice_path(hops[:k]))
    for hop in hops:
        full = L.unsplice(full, hop)
    assert full == 1


@given(ifaces, st.integers(0, 2), st.integers(1, 1 << 20))
def test_convert_label_round_trip(iface, form, rest):
    label = L.splice(rest, L.one_hop_label(iface)) if rest > 1 else L.one_hop_label(iface)
    try:
        converted = L.convert_label(V358, label, form)
    except L.LabelError:
        assume(False)
    assert V358.get_form_num(converted) == form
    bits = V358[form].size
    assert L.decompress(converted, bits) == iface
    assert converted >> bits == label >> L.bits_for_label(label)
    assert L.convert_label(V358, converted, CANONICAL) == label


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 6), st.integers(0, 63)), min_size=1, max_size=4))
def test_scheme_serialize_round_trip(raw):
    forms = []
    bit_count = 0
    for step, plen, prefix in raw:
        bit_count += step
        forms.append((bit_count, plen if len(raw) > 1 else 0, (prefix & ((1 << plen) - 1)) if len(raw) > 1 else 0))
    try:
        scheme = L.EncodingScheme(forms)
    except L.LabelError:
        assume(False)
    assert L.EncodingScheme.parse(scheme.serialize()) == scheme


def _parse_all(data: bytes, text: str):
    try:
        L.EncodingScheme.parse(data)
    except L.LabelError:
        pass
    try:
        L.parse_label_text(text)
    except L.LabelError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=24), st.text(alphabet="0123456789abcdefABCDEFg.-", max_size=22))
def test_parsers_only_raise_label_error(data, text):
    _parse_all(data, text)


@pytest.mark.slow
def test_parsers_fuzz_100k():
    rng = random.Random(3)
    for _ in range(100_000):
        n = rng.randrange(0, 24)
        data = rng.randbytes(n)
        text = "".join(rng.choice("0123456789abcdef.x") for _ in range(rng.choice((19, rng.randrange(0, 25)))))
        _parse_all(data, text)


def test_build_label_with_per_node_schemes():
    hops = [(None, 0x15), (0x9E, 0x8E), (0x13, 0xA2), (0x1B, 0x1D), (0xEE, 0x1B), (0x19, 0x1B), (0x13, None)]
    assert L.build_label(hops, [V358] * 7) == L.build_label(hops)
    with pytest.raises(L.LabelError):
        L.build_label(hops, [V358] * 3)
