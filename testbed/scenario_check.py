"""Checking a scenario in full before anything is built: its shape (a JSON Schema of every field) and then, once
its topology is known and its placeholders are filled, its meaning (every node, link and fault target exists,
every heal names a fault applied before it, every action is one the runner knows, every value parses).

    check_shape(data, where)        the file as loaded: types, required fields, ranges; raises ScenarioError
    check_against(plan, topo, where)   the filled traffic, timeline and assertions against the topology

A scenario that passes both can still fail when it runs (that is what it is for), but never because it named
something that does not exist: an unknown node used to crash a traffic thread after the mesh was built while
the scenario reported PASSED.
"""
from __future__ import annotations

import difflib
import math

import jsonschema

from testbed import faults as F
from testbed.topology import TopologyError, parse_rate
from testbed.topology.leases import parse_term

ASSERTION_KINDS = ("reachable", "unreachable", "throughput", "outage", "path_changed", "counters", "agent_healthy",
                   "chain_height", "chains_agree", "reorg", "balance", "swap", "lease_active", "contended_throughput")
TIMELINE_VERBS = ("fault", "heal", "action", "expect")
TRAFFIC_KINDS = ("ping", "iperf", "command")
PLACEHOLDERS = ("{random_node}", "{random_link}", "{random_spare_link}")
MAX_SECONDS = 3600
MAX_TOPOLOGY_TEXT = 4096          # a path or generator string; longer is a mistake (or an attack)


class ScenarioError(ValueError):
    pass


# -- the schema ---------------------------------------------------------------------------------------------

_seconds = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}
_node = {"type": "string", "minLength": 1, "maxLength": 256}
_nodes = {"anyOf": [_node, {"type": "array", "items": _node, "minItems": 1, "maxItems": 1000}]}
_rate = {"type": ["string", "number"]}
_port = {"type": "integer", "minimum": 1, "maximum": 65535}
_mss = {"type": "integer", "minimum": 88, "maximum": 9000}
_count = {"type": "integer", "minimum": 0, "maximum": 10**9}
_parallel = {"type": "integer", "minimum": 1, "maximum": 128}    # iperf's TCP connections at once
_token = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}  # a market Name (node/market/wire.py)


def _obj(required: tuple, **props) -> dict:
    return {"type": "object", "required": list(required), "properties": props, "additionalProperties": False}


ASSERTION_BODIES = {
    "reachable": _obj(("from", "to"), **{"from": _nodes, "to": _nodes}),
    "unreachable": _obj(("from", "to"), **{"from": _nodes, "to": _nodes}),
    "throughput": _obj(("from", "to"), **{"from": _node, "to": _node, "at_least": _rate, "at_most": _rate,
                                          "seconds": {**_seconds, "exclusiveMinimum": 0}, "port": _port,
                                          "mss": _mss, "parallel": _parallel}),
    "outage": _obj(("from", "to", "at_most"), **{"from": _node, "to": _node, "at_most": _seconds,
                                                 "at_least": _seconds}),
    "path_changed": _obj(("from", "to"), **{"from": _node, "to": _node}),
    "counters": _obj(("node",), node=_node, counter={"type": "string", "minLength": 1},
                     at_least={"type": "number"}, at_most={"type": "number"}),
    "agent_healthy": _obj(("node",), node=_node),
    # the PKT chain (testbed/services.py): heights, tips and reorgs of the chain nodes, a wallet's spendable PKT
    "chain_height": _obj(("at_least",), at_least=_count, nodes=_nodes),
    "chains_agree": _obj((), within_blocks=_count, nodes=_nodes),
    "reorg": _obj((), node=_node, at_least=_count),
    "balance": _obj(("node", "at_least"), node=_node, at_least={"type": "number", "minimum": 0}),
    # the bandwidth market (testbed/market_view.py): how the buyer's last swap of a token ended; who holds a lease
    "swap": _obj(("buyer", "token", "outcome"), buyer=_node, token=_token,
                 outcome={"enum": ["completed", "refunded"]}),
    "lease_active": _obj(("lease", "holder"), lease=_token, holder=_node),
    # UDP floods from `from` and `against` at once (testbed/labs/checking.flood): what `from` gets
    "contended_throughput": _obj(("from", "against", "to"), **{"from": _node, "against": _node, "to": _node,
                                                              "at_least": _rate, "at_most": _rate}),
}
ASSERTION = {"type": "object", "additionalProperties": False, "minProperties": 1,
             "properties": {**ASSERTION_BODIES, "within": _seconds, "name": {"type": "string"}}}
COMMAND = _obj(("node", "run"), node=_node, run={"type": "string", "minLength": 1},
               timeout={**_seconds, "exclusiveMinimum": 0}, check={"type": "boolean"})
MARKET_SELL = _obj(("market_sell",), market_sell=_obj(
    ("node", "lease", "price", "term"), node=_node, lease=_token, price={"type": "number", "exclusiveMinimum": 0},
    term={"type": "string", "minLength": 1}))
MARKET_BUY = _obj(("market_buy",), market_buy=_obj(
    ("buyer", "seller", "token"), buyer=_node, seller=_node, token=_token,
    wait={**_seconds, "exclusiveMinimum": 0}))
MARKET_ACTION = {"market_sell": MARKET_SELL, "market_buy": MARKET_BUY}
TRAFFIC = {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1, "properties": {
    "ping": _obj(("from", "to"), **{"from": _node, "to": _node,
                                    "interval": {"type": "number", "minimum": 0.01, "maximum": 60}}),
    "iperf": _obj(("from", "to"), **{"from": _node, "to": _node, "at": _seconds,
                                     "seconds": {**_seconds, "exclusiveMinimum": 0}, "port": _port, "mss": _mss,
                                     "parallel": _parallel}),
    "command": {**COMMAND, "properties": {**COMMAND["properties"], "at": _seconds}},
}}
_height = _obj(("height",), height=_count)        # at: {height: N}: when the first chain node reaches block N
STEP = {"type": "object", "additionalProperties": False, "properties": {
    "at": {"anyOf": [_seconds, _height]}, "name": {"type": "string", "minLength": 1}, "check": {"type": "boolean"},
    "within": {**_seconds, "exclusiveMinimum": 0},       # a step at a block height: how long to wait for it
    "fault": {"type": ["string", "object"], "minLength": 1},
    "heal": {"type": "string", "minLength": 1},
    "action": {"anyOf": [{"type": "string", "minLength": 1}, COMMAND, MARKET_SELL, MARKET_BUY]},
    "expect": ASSERTION,
}}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "pktlab scenario",
    "type": "object", "additionalProperties": False, "required": ["topology"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string"},
        "topology": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_TOPOLOGY_TEXT},
                               {"type": "object"}]},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "reduce": {"type": "integer", "minimum": 2, "maximum": 100000},
        "requires": {"type": "array", "items": {"type": "string"}},
        "traffic": {"type": "array", "items": TRAFFIC, "maxItems": 1000},
        "timeline": {"type": "array", "items": STEP, "maxItems": 10000},
        "assertions": {"type": "array", "items": ASSERTION, "maxItems": 1000},
        "duration": _seconds,
        "wait": {**_seconds, "exclusiveMinimum": 0},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def check_shape(data, where: str) -> None:
    """The loaded file against SCHEMA plus the rules a schema says badly (exactly one verb per step, one kind
    per assertion, finite numbers); raises ScenarioError naming the field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a mapping (name, topology, traffic, timeline, assertions), "
                            f"got {type(data).__name__}")
    _plain_values(data, where)
    for i, step in enumerate(data.get("timeline") if isinstance(data.get("timeline"), list) else []):
        if isinstance(step, dict):
            verbs = [v for v in TIMELINE_VERBS if v in step]
            if len(verbs) != 1:
                raise ScenarioError(f"{where}: timeline[{i}]: exactly one of {', '.join(TIMELINE_VERBS)}, got "
                                    f"{', '.join(verbs) or 'none'}")
            if "expect" in step:
                _one_kind(step["expect"], f"{where}: timeline[{i}].expect")
    for i, a in enumerate(data.get("assertions") if isinstance(data.get("assertions"), list) else []):
        _one_kind(a, f"{where}: assertions[{i}]")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        shown = [f"{_path(e.absolute_path) or 'top level'}: {_message(e)}" for e in errors[:3]]
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ScenarioError(f"{where}: " + "; ".join(shown) + more)


def _one_kind(a, where: str) -> None:
    if isinstance(a, dict):
        kinds = [k for k in ASSERTION_KINDS if k in a]
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: exactly one of {', '.join(ASSERTION_KINDS)} (plus within, name), got "
                                f"{', '.join(kinds) or 'none'}")


def _plain_values(value, where: str) -> None:
    """No field given twice (the YAML loader remembers), no NaN or infinity (a schema's minimum lets NaN by)."""
    stack = [(value, "")]
    while stack:
        v, p = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ScenarioError(f"{where}: {p or 'top level'}: {v} is not a finite number")
        if isinstance(v, dict):
            for key in getattr(v, "duplicates", ()):
                raise ScenarioError(f"{where}: {p or 'top level'}: field {key!r} given twice")
            stack.extend((item, f"{p}.{k}" if p else str(k)) for k, item in v.items())
        elif isinstance(v, list):
            stack.extend((item, f"{p}[{i}]") for i, item in enumerate(v))


def _path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(e: jsonschema.ValidationError) -> str:
    value = repr(e.instance)
    value = value if len(value) <= 40 else value[:37] + "..."
    if e.validator == "additionalProperties":
        allowed = ", ".join(e.schema.get("properties", {}))
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})), key=str)
        return f"unknown field(s) {', '.join(map(repr, extra))} (allowed: {allowed})"
    if e.validator == "type":
        kinds = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        return f"expected {' or '.join(kinds)}, got {value}"
    if e.validator == "required":
        return e.message.replace("is a required property", "is missing")
    if e.validator == "anyOf" and e.schema is STEP["properties"]["action"] and isinstance(e.instance, dict) \
            and len(e.instance) == 1 and next(iter(e.instance)) in ("market_sell", "market_buy"):
        inner = next(jsonschema.Draft202012Validator(MARKET_ACTION[next(iter(e.instance))]).iter_errors(e.instance))
        return f"{_path(inner.absolute_path)}: {_message(inner)}"
    if e.validator == "anyOf" and e.schema is STEP["properties"]["action"]:
        return (f"expected reroute, restart NODE, {{node:, run:}}, {{market_sell: {{node, lease, price, term}}}} or "
                f"{{market_buy: {{buyer, seller, token, wait}}}}, got {value}")
    if e.validator == "anyOf":
        return f"expected {' or '.join(s.get('type', 'object') for s in e.validator_value)}, got {value}"
    return e.message if len(e.message) <= 200 else e.message[:197] + "..."


# -- against the topology ---------------------------------------------------------------------------------

class _Checker:
    def __init__(self, topo, where: str):
        self.topo = topo
        self.where = where

    def fail(self, path: str, problem: str):
        raise ScenarioError(f"{self.where}: {path}: {problem}")

    def node(self, name, path: str) -> None:
        if name not in self.topo.nodes:
            hint = difflib.get_close_matches(str(name), list(self.topo.nodes), n=1)
            also = (f" (did you mean {hint[0]!r}?)" if hint else
                    f" (placeholders: {', '.join(PLACEHOLDERS)})" if "{" in str(name) else "")
            shown = ", ".join(list(self.topo.nodes)[:12]) + (" ..." if len(self.topo.nodes) > 12 else "")
            self.fail(path, f"topology {self.topo.name} has no node {name!r}{also}; its nodes: {shown}")

    def nodes(self, value, path: str) -> None:
        for n in value if isinstance(value, list) else [value]:
            self.node(n, path)

    def rate(self, value, path: str) -> None:
        try:
            parse_rate(str(value))
        except TopologyError as e:
            self.fail(path, str(e))

    def assertion(self, a: dict, path: str) -> None:
        kind = next(k for k in ASSERTION_KINDS if k in a)
        body = a[kind]
        for key in ("from", "to", "node", "nodes", "buyer", "holder", "against"):
            if key in body:
                self.nodes(body[key], f"{path}.{kind}.{key}")
        for key in ("at_least", "at_most"):
            if kind in ("throughput", "contended_throughput") and key in body:
                self.rate(body[key], f"{path}.{kind}.{key}")

    def fault(self, spec, path: str):
        try:
            fault = F.parse_fault(spec)
            fault.check_topology(self.topo)
        except F.FaultError as e:
            self.fail(path, str(e))
        return fault

    def action(self, action, path: str) -> None:
        if isinstance(action, dict) and "market_sell" in action:
            body = action["market_sell"]
            self.node(body["node"], f"{path}.market_sell.node")
            try:
                parse_term(body["term"])
            except ValueError as e:
                self.fail(f"{path}.market_sell.term", str(e))
            if body["node"] not in self.topo.nodes_with_role("issuer"):
                self.fail(f"{path}.market_sell.node", f"{body['node']} runs no market (give it the role issuer)")
            return
        if isinstance(action, dict) and "market_buy" in action:
            body = action["market_buy"]
            for key in ("buyer", "seller"):
                self.node(body[key], f"{path}.market_buy.{key}")
                if body[key] not in self.topo.nodes_with_role("issuer"):
                    self.fail(f"{path}.market_buy.{key}", f"{body[key]} runs no market (give it the role issuer)")
            return
        if isinstance(action, dict):
            self.node(action["node"], f"{path}.node")
            return
        words = action.split()
        if words == ["reroute"]:
            return
        if len(words) == 2 and words[0] == "restart":
            self.node(words[1], path)
            return
        self.fail(path, f"unknown action {action!r}: reroute, restart NODE, or {{node: NODE, run: COMMAND}}")


def check_against(plan: dict, topo, where: str) -> None:
    """The filled traffic, timeline (sorted by time) and assertions against the topology they will run on."""
    c = _Checker(topo, where)
    for i, t in enumerate(plan["traffic"]):
        kind = next(iter(t))
        for key in ("from", "to", "node"):
            if key in t[kind]:
                c.node(t[kind][key], f"traffic[{i}].{kind}.{key}")
    applied: dict[str, bool] = {}      # fault name -> instant
    for i, step in enumerate(plan["timeline"]):
        at = step.get("at", 0)
        path = f"timeline[{i}] (at {'block %d' % at['height'] if isinstance(at, dict) else '%g s' % at})"
        if isinstance(at, dict) and not topo.nodes_with_role("chain"):
            c.fail(f"{path}.at", "a step at a block height needs a topology with a chain node (role chain)")
        if "fault" in step:
            fault = c.fault(step["fault"], f"{path}.fault")
            applied[step.get("name", "")] = fault.instant
        elif "heal" in step:
            name = step["heal"]
            if name != "all" and name not in applied:
                named = ", ".join(n for n in applied if n) or "none"
                c.fail(f"{path}.heal", f"no fault named {name!r} is applied before it (named so far: {named}; "
                                       "give the fault step a name:, or heal: all)")
            if applied.get(name):
                c.fail(f"{path}.heal", f"fault {name!r} is instant (done when applied): nothing to heal")
        elif "action" in step:
            c.action(step["action"], f"{path}.action")
        else:
            c.assertion(step["expect"], f"{path}.expect")
    for i, a in enumerate(plan["assertions"]):
        c.assertion(a, f"assertions[{i}]")
