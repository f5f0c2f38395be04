"""Fault parsing (testbed/faults/base.py): every kind from text and from a mapping, round trips through describe()
and to_dict(), the errors for bad faults, and no other exception for any text."""
import pytest
from hypothesis import given, settings, strategies as st

from testbed import faults as F

EXAMPLES = {
    "loss": "loss n1--n2 10% burst=200ms",
    "delay": "delay n1->n2 50ms jitter=10ms",
    "jitter": "jitter n1--n2 10ms",
    "reorder": "reorder n1--n2 25% delay=10ms",
    "duplicate": "duplicate n1--n2 5%",
    "corrupt": "corrupt n1--n2 1%",
    "rate": "rate n1--n2 1mbit",
    "link-down": "link-down n1--n2",
    "flap": "flap n1--n2 period=2s jitter=0.5s",
    "partition": "partition n1,n2|n3",
    "crash": "crash n3",
    "restart": "restart n3",
    "pause": "pause n3",
    "malformed": "malformed n1->n2 count=50",
    "clock-skew": "clock-skew n3 -30s",
    "route-server-loss": "route-server-loss n3",
    "forged-announcement": "forged-announcement n3 count=4",
    "replayed-announcement": "replayed-announcement n3 count=2",
}


def test_every_kind_has_an_example_in_registry_order():
    assert list(F.KINDS) == list(EXAMPLES)


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_round_trip(kind):
    f = F.parse_fault(EXAMPLES[kind])
    assert type(f) is F.KINDS[kind] and f.kind == kind
    assert F.parse_fault(f.describe()) == f
    assert F.parse_fault(f.to_dict()) == f
    assert f.target() == EXAMPLES[kind].split()[1]


def test_text_and_mapping_agree():
    assert F.parse_fault("loss n1--n2 loss 5%") == F.parse_fault({"kind": "loss", "link": "n1--n2", "loss": "5%"})
    f = F.parse_fault({"type": "link_down", "link": "a--b", "id": "f3", "state": {"x": 1}})
    assert isinstance(f, F.LinkDown) and f.id == "f3" and f.state == {"x": 1}
    assert F.parse_fault("malformed a->b 7").count == 7
    assert F.parse_fault("delay a--b 20ms").describe() == "delay a--b 20ms"


@pytest.mark.parametrize("spec, message", [
    ("", "empty fault"),
    ("bogus a--b", "unknown fault kind 'bogus'"),
    ("clock-skew n1 soon", "clock-skew: "),
    ({"kind": "route-server-loss", "node": "n1", "offset": "1s"}, "unknown parameter(s) offset"),
    ("loss", "what does it apply to"),
    ("loss n1n2 10%", "write it as a--b or a-b (both directions), a:b or 'a->b' (one way"),
    ("loss a--b 10% 20%", "unexpected '20%'"),
    ("delay a--b 5", "delay: "),
    ("rate a--b 0mbit", "rate must be positive"),
    ("rate a--b fast", "rate: "),
    ("loss a--b foo=1", "unknown parameter(s) foo"),
    ("malformed a->b count=x", "count must be an integer"),
    ({"kind": "crash", "node": "n1", "bad": 2}, "unknown parameter(s) bad"),
    (5, "a fault is a string or a mapping"),
])
def test_bad_faults(spec, message):
    with pytest.raises(F.FaultError) as e:
        F.parse_fault(spec)
    assert message in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(EXAMPLES) + ["a--b", "a->b", "n1", "10%", "5ms", "x=1", "count=3", "=",
                                                  "burst", "loss=", "--", "a,b|c", "1mbit", "period=0"])
                | st.text(max_size=8), max_size=6))
def test_any_text_parses_or_raises_fault_error(words):
    try:
        f = F.parse_fault(" ".join(words))
    except F.FaultError:
        return
    assert f.kind in F.KINDS
