"""Fuzz: the switch header, route labels and encoding schemes, and the switch that uses them.

Must hold: the header codec raises only SwitchHeaderError and round-trips; the label functions raise only
LabelError and keep their algebra (unsplice undoes splice, a spliced path routes through its first part, text
round-trips); an encoding scheme either parses to a sane scheme that serializes back or raises LabelError; the
switch answers every packet with exactly one counted outcome (forwarded, or one drop reason) and at most one
packet: the forwarded one (same length, a known interface) or an ERROR back out of the interface it came from."""
from hypothesis import strategies as st

from node.cjdns import control, labels
from node.cjdns.labels import CANONICAL, LabelError, SCHEMES, EncodingScheme
from node.cjdns.switch import FORWARDED, ROUTER, Switch
from node.cjdns.switch_header import SIZE, SwitchHeader, SwitchHeaderError

from fuzzing import harness

INTERFACES = (0, 2, 3, 5, 17, 100, 256)
u64 = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 2**12), st.sampled_from([1, 2**63, 2**64 - 1]))
label_arg = st.one_of(u64, st.integers(-2**70, 2**70), st.none(), st.booleans(), st.text(max_size=3))
header_fields = st.tuples(u64, st.integers(0, 127), st.booleans(), st.integers(0, 3), st.integers(0, 63),
                          st.integers(0, 0xFFFF))
packet = st.one_of(
    st.tuples(st.just("header"), header_fields, st.binary(max_size=64)),
    st.tuples(st.just("control"), header_fields, st.binary(max_size=64)),     # header + 0xffffffff + control
    st.tuples(st.just("raw"), st.binary(max_size=40)),
)


def build(spec) -> bytes:
    if spec[0] == "raw":
        return spec[1]
    header = SwitchHeader(*spec[1]).pack()
    return header + (b"\xff\xff\xff\xff" if spec[0] == "control" else b"") + spec[2]


@harness(st.tuples(st.sampled_from((ROUTER,) + INTERFACES + (7,)), packet), ci=2000)
def test_fuzz_switch(case):
    source, spec = case
    data = build(spec)
    try:
        header = SwitchHeader.unpack(data)
        assert header.pack() == data[:SIZE]
    except SwitchHeaderError:
        assert len(data) < SIZE
    switch = Switch()
    for i in INTERFACES:
        switch.add_interface(i)
    out = switch.receive(source, data)
    outcomes = {k: v for k, v in switch.counters.items() if k == FORWARDED or k.startswith("drop_")}
    assert sum(outcomes.values()) == 1, switch.counters
    assert len(out) <= 1
    if switch.counters[FORWARDED]:
        [(dest, forwarded)] = out
        assert dest in switch.interfaces and len(forwarded) == len(data)
        assert SwitchHeader.unpack(forwarded).label_shift >= SwitchHeader.unpack(data).label_shift
    elif out:
        [(dest, error)] = out
        assert dest == source and SwitchHeader.unpack(error).suppress_errors
        assert isinstance(control.unframe(error[SIZE:]), control.Error)


@harness(st.tuples(label_arg, label_arg, st.sampled_from(sorted(SCHEMES)),
                   st.one_of(st.integers(-2, 5), st.just(CANONICAL))), ci=2000)
def test_fuzz_labels(case):
    a, b, scheme_name, form = case
    scheme = SCHEMES[scheme_name]
    try:
        spliced = labels.splice(a, b)
    except LabelError:
        pass
    else:
        assert labels.unsplice(spliced, b) == a
        assert labels.routes_through(spliced, b)
        assert labels.parse_label_text(labels.label_text(spliced)) == spliced
    for fn, args in ((labels.routes_through, (a, b)), (labels.unsplice, (a, b)), (labels.is_one_hop, (scheme, a)),
                     (labels.convert_label, (scheme, a, form)), (labels.label_text, (a,)),
                     (labels.parse_label_text, (b,)), (labels.splice_path, ([a, b],)),
                     (labels.build_label, ([(None, a), (b, None)], scheme))):
        try:
            fn(*args)
        except LabelError:
            pass
    if isinstance(a, int) and not isinstance(a, bool) and 0 <= a < 2**64:
        assert labels.bit_reverse64(labels.bit_reverse64(a)) == a


@harness(st.binary(max_size=24), ci=2000)
def test_fuzz_encoding_scheme(data):
    try:
        scheme = EncodingScheme.parse(data)
    except LabelError:
        return
    assert EncodingScheme.parse(scheme.serialize()) == scheme
