"""What a fault is: the Fault base class, where it acts (link ends, nodes), the registry of kinds and the parser
that turns `loss a--b 10% burst=200ms` or {"kind": "loss", ...} into one."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from testbed.topology import TopologyError, parse_fraction, parse_rate, parse_time


class FaultError(RuntimeError):
    """A fault that cannot be parsed, applied, or that did not take effect / did not go away."""


class FaultCheckFailed(FaultError):
    """The fault was applied but its check did not see it bite (it was healed again); the message says what was
    measured against what tolerance, and what else may explain it."""


# -- where a fault acts -----------------------------------------------------------------------------------

@dataclass
class End:
    """One end of a link: the node and the interface whose egress carries traffic towards the other end."""
    node: str
    ifname: str
    addr: str
    peer: str
    peer_addr: str
    link_index: int
    side: str  # "ab" if node is the topology link's a, else "ba"


# Node names are letters, digits and '_' (testbed/topology/model.py), so '-' and ':' can separate them. Forms
# without shell metacharacters need no quoting: a-b (= a--b) and a:b (= 'a->b', a's end towards b, as in
# `pktlab capture a:b`).
_LINK = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*(--|->|-|:)\s*([A-Za-z][A-Za-z0-9_]*)\s*")
LINK_FORMS = "a--b or a-b (both directions), a:b or 'a->b' (one way: a's end towards b)"


def parse_link(spec: str) -> tuple[str, str, bool]:
    """`a--b`, `a-b` -> (a, b, False); `a->b`, `a:b` -> (a, b, True): one way, only a's end towards b."""
    m = _LINK.fullmatch(spec) if isinstance(spec, str) else None
    if not m:
        if isinstance(spec, str) and spec.rstrip().endswith("-"):
            raise FaultError(f"link {spec!r} looks cut by the shell: an unquoted `{spec.strip()}>b` sends the "
                             "output to a file named b (remove that file). Quote it, 'a->b', or write a:b")
        raise FaultError(f"link {spec!r}: write it as {LINK_FORMS}")
    a, sep, b = m.groups()
    if a == b:
        raise FaultError(f"link {spec!r}: a link joins two different nodes")
    return a, b, sep in ("->", ":")


def link_ends(mesh, spec: str) -> tuple[list[End], bool]:
    """Both ends of the link (a--b), or only a's end (one way). Returns (ends, one_way)."""
    a, b, one_way = parse_link(spec)
    for i, rec in enumerate(mesh.run.state.get("links", [])):
        if {rec["a"], rec["b"]} == {a, b}:
            ea = end_of(rec, i, a)
            eb = end_of(rec, i, b)
            return ([ea] if one_way else [ea, eb]), one_way
    raise FaultError(f"run {mesh.run.name} has no link between {a!r} and {b!r}")


def topology_link(topo, spec: str) -> None:
    """Before a mesh exists: the topology has the link spec names (FaultError naming what is missing)."""
    a, b, _ = parse_link(spec)
    for n in (a, b):
        topology_node(topo, n)
    if not any({l.a, l.b} == {a, b} for l in topo.links):
        near = sorted(l.b if l.a == a else l.a for l in topo.links if a in (l.a, l.b))
        raise FaultError(f"topology {topo.name} has no link between {a!r} and {b!r} ({a}'s links go to "
                         f"{', '.join(near) or 'no node'})")


def topology_node(topo, node: str) -> str:
    if node not in topo.nodes:
        shown = ", ".join(list(topo.nodes)[:12]) + (" ..." if len(topo.nodes) > 12 else "")
        raise FaultError(f"topology {topo.name} has no node {node!r} (nodes: {shown})")
    return node


def end_of(rec: dict, index: int, node: str) -> End:
    """node's end of the run's link record number `index`."""
    if rec["a"] == node:
        return End(node, rec["a_if"], rec["a_addr"], rec["b"], rec["b_addr"], index, "ab")
    return End(node, rec["b_if"], rec["b_addr"], rec["a"], rec["a_addr"], index, "ba")


def check_node(mesh, node: str) -> str:
    if node not in mesh.run.state.get("nodes", {}):
        raise FaultError(f"run {mesh.run.name} has no node {node!r}")
    return node


# -- the fault base class ---------------------------------------------------------------------------------

KINDS: dict[str, type[Fault]] = {}     # filled by the Fault subclasses that name a kind
UNITS = (("loss", parse_fraction), ("duplicate", parse_fraction), ("corrupt", parse_fraction),
         ("reorder", parse_fraction), ("delay", parse_time), ("jitter", parse_time), ("period", parse_time),
         ("burst", parse_time), ("rate", parse_rate))


@dataclass
class Fault:
    kind: ClassVar[str] = ""
    instant: ClassVar[bool] = False    # done when applied (restart, malformed): logged, never listed as active
    id: str = ""
    state: dict = field(default_factory=dict)   # what apply recorded: baseline measurement, helper pid, ...

    # parsing: the word after the kind fills TARGET, the next bare argument MAIN, key=value (or "key value")
    # the rest
    TARGET: ClassVar[str] = "link"
    MAIN: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:      # a class naming its own kind is one; abstract bases are not
            KINDS[cls.kind] = cls

    def target(self) -> str:
        return getattr(self, self.TARGET)

    def describe(self) -> str:
        """The fault as one parses it back: `delay n1--n2 20ms jitter=5ms`."""
        params = self.params()
        main = params.pop(self.MAIN, None) if self.MAIN else None
        words = [self.kind, self.target()] + ([str(main)] if main not in (None, "") else [])
        words += [f"{k}={v}" for k, v in params.items() if v not in (None, "")]
        return " ".join(words)

    def params(self) -> dict:
        skip = {"id", "state", "link", "node", "groups"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def validate(self) -> None:
        """Parse every value now, so a bad fault fails before anything is applied (raises TopologyError for a
        bad unit, FaultError otherwise)."""
        for name, parse in UNITS:
            v = getattr(self, name, None)
            if v:
                parse(v)
        if hasattr(self, "link"):
            try:
                parse_link(self.link)
            except FaultError as e:
                raise FaultError(f"{self.kind}: {e}") from None

    def check_topology(self, topo) -> None:
        """Before anything is built: the fault's target exists in the topology (FaultError if not)."""
        if self.TARGET == "link":
            topology_link(topo, self.link)

    # -- behaviour (overridden) --
    def baseline(self, mesh) -> None:
        """Measure what the check compares against, before applying."""

    def apply(self, mesh) -> None:
        raise NotImplementedError

    def heal(self, mesh) -> None:
        raise NotImplementedError

    def check(self, mesh) -> str:
        """Measure that the fault bites; return what was seen, raise FaultError if it does not."""
        return "not measured"

    def check_healed(self, mesh) -> str:
        return "not measured"


# -- parsing ----------------------------------------------------------------------------------------------

def parse_fault(spec) -> Fault:
    """A fault from a string (`loss a--b 10% burst=200ms`) or a dict ({"kind": "loss", "link": "a--b", ...})."""
    if isinstance(spec, Fault):
        return spec
    if isinstance(spec, str):
        spec = _dict_from_text(spec)
    if not isinstance(spec, dict):
        raise FaultError(f"a fault is a string or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    kind = str(spec.pop("kind", spec.pop("type", ""))).replace("_", "-")
    cls = _kind_class(kind)
    names = {f.name for f in fields(cls)}
    fault_id = str(spec.pop("id", "") or "")
    state = spec.pop("state", None)
    unknown = set(spec) - names
    if unknown:
        raise FaultError(f"{kind}: unknown parameter(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(names - {'id', 'state'}))})")
    values = {k: (str(v) if k != "count" else v) for k, v in spec.items()}
    try:
        fault = cls(**values)
    except TypeError as e:
        raise FaultError(f"{kind}: {e}") from None
    fault.id = fault_id
    if state:
        fault.state = state
    try:
        fault.validate()
    except TopologyError as e:
        raise FaultError(f"{fault.kind}: {e}") from None
    return fault


def _kind_class(kind: str) -> type[Fault]:
    cls = KINDS.get(kind)
    if cls is None:
        raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    return cls


def _dict_from_text(text: str) -> dict:
    words = text.split()
    if not words:
        raise FaultError("empty fault")
    kind = words[0]
    cls = KINDS.get(kind.replace("_", "-")) or _kind_class(kind)
    if len(words) < 2:
        raise FaultError(f"{kind}: what does it apply to? e.g. `{kind} a--b`")
    out = {"kind": kind, cls.TARGET: words[1]}
    rest = words[2:]
    i = 0
    while i < len(rest):
        w = rest[i]
        if "=" in w:
            k, v = w.split("=", 1)
            out[k] = v
        elif i + 1 < len(rest) and w.isidentifier() and not _looks_like_value(w):
            out[w] = rest[i + 1]
            i += 1
        elif cls.MAIN and cls.MAIN not in out:
            out[cls.MAIN] = w
        else:
            raise FaultError(f"{text!r}: unexpected {w!r}")
        i += 1
    if "count" in out:
        try:
            out["count"] = int(out["count"])
        except ValueError:
            raise FaultError(f"{text!r}: count must be an integer") from None
    return out


def _looks_like_value(word: str) -> bool:
    return bool(re.match(r"^[\d.]", word))
