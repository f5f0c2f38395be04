"""Property tests: parsers of units, generator strings, native documents and YAML text never fail with anything
but TopologyError, and formatting round-trips."""

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.topology import generators
from testbed.topology import (PARAMS, TopologyError, format_fraction, format_rate, format_time, load,
                              from_dict, parse_fraction, parse_rate, parse_text, parse_time, validate)

unit_like = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A-?[0-9]{0,6}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,5})? ?(bit|kbit|Mbit|gbit|s|ms|us|ns|%|x)?\Z"),
    st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@given(unit_like)
def test_unit_parsers_raise_only_topology_error(value):
    for parse in (parse_rate, parse_time, parse_fraction):
        try:
            result = parse(value)
        except TopologyError:
            continue
        if parse is parse_rate:
            assert result is None or (isinstance(result, int) and result > 0)
        else:
            assert isinstance(result, float) and math.isfinite(result) and result >= 0
            assert parse is parse_time or result <= 1


@given(st.integers(min_value=1, max_value=10**15))
def test_rate_format_round_trip(bps):
    assert parse_rate(format_rate(bps)) == bps


@given(st.floats(min_value=0, max_value=3600, allow_nan=False))
def test_time_format_round_trip(seconds):
    assert parse_time(format_time(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_fraction_format_round_trip(fraction):
    assert parse_fraction(format_fraction(fraction)) == fraction


small_numbers = st.from_regex(r"\A[0-9]{1,2}(\.[0-9])?\Z")
generator_strings = st.one_of(
    st.text(max_size=30),
    st.builds(lambda fam, args, extra: f"{fam}:{args}{extra}",
              st.sampled_from(list(generators.FAMILIES) + ["nope", "GRID", ""]),
              st.lists(st.one_of(small_numbers, st.text(max_size=4), st.just("3x3")), max_size=4).map(",".join),
              st.sampled_from(["", ",delay=5ms", ",rate=1", ",seed=3", ",seed=x", ",loss=200%", ",=", ",a=b=c"])))


@settings(max_examples=300, deadline=None)
@given(generator_strings)
def test_generator_strings_raise_only_topology_error(spec):
    try:
        topo = generators.generate(spec, seed=1)
    except TopologyError:
        return
    validate(topo)  # whatever a generator returns is a valid, connected topology


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
              st.sampled_from(["a", "b", "zz", "5ms", "10mbit", "1%", "router", "peer", "a--b", "", "x y"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(["a", "b", "zz", "1", "x"]), children, max_size=3)),
    max_leaves=12)

link_entries = st.one_of(
    st.sampled_from(["a--b", "b--c", "a--a", "a--zz", "a-b", "--"]),
    st.fixed_dictionaries({"a": st.sampled_from(["a", "b", "c", 1]), "b": st.sampled_from(["a", "b", "c", None])},
                          optional={k: json_values for k in [*PARAMS, "a_to_b", "b_to_a", "attrs", "dealy"]}))

documents = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "name": json_values, "seed": json_values, "defaults": st.dictionaries(st.sampled_from(list(PARAMS)), json_values,
                                                                          max_size=3),
    "isps": st.dictionaries(st.sampled_from(["x", "y"]), st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "relations": st.dictionaries(st.sampled_from(["x", "y", "q"]), json_values, max_size=2)}))),
    "nodes": st.one_of(st.dictionaries(st.sampled_from(["a", "b", "c", "1x", "averyveryverylongname"]),
                                       st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                                           "roles": json_values, "isp": json_values, "attrs": json_values})),
                                       max_size=3), json_values),
    "links": st.lists(link_entries, max_size=4),
    "allow_disconnected": json_values,
}))


@settings(max_examples=400, deadline=None)
@given(documents)
def test_native_documents_raise_only_topology_error(doc):
    try:
        topo = from_dict(doc, "fuzz.yaml")
        validate(topo)
    except TopologyError as e:
        assert str(e).startswith("fuzz.yaml")
        return
    again = from_dict(topo.to_dict(), "fuzz.yaml")
    assert again == topo


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), documents.map(lambda d: yaml.safe_dump(d))))
def test_yaml_text_raises_only_topology_error(text):
    try:
        validate(from_dict(parse_text(text, "fuzz.yaml", "yaml"), "fuzz.yaml"))
    except TopologyError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), generator_strings, st.text(min_size=300, max_size=5000)))
def test_load_of_any_string_raises_only_topology_error(spec):
    try:
        load(spec)
    except TopologyError:
        pass
