"""JSON Schema (draft 2020-12) of the native topology file format, for editors (`pktlab schema`)."""
from __future__ import annotations

from testbed.topology.leases import json_schema as lease_schema
from testbed.topology.model import IFNAME_MAX, NAME_RE, PARAMS, RELATIONS, ROLES


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the native file format."""
    rate = {"oneOf": [{"type": "null"}, {"const": 0},
                      {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
                                                    r"([kKmMgGtT]?[bB][iI][tT])\s*$"},
                      {"type": "string", "pattern": "^(unlimited|none)$"}],
            "description": "bit/s with a unit: 100bit, 512kbit, 10mbit, 1gbit; null = unshaped"}
    time = {"oneOf": [{"const": 0},
                      {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"
                                                    r"(s|ms|us|µs|ns)\s*$"}],
            "description": "a duration with a unit: 5ms, 1s, 250us"}
    fraction = {"oneOf": [{"const": 0},
                          {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*%\s*$"}],
                "description": "a percentage: 1%, 0.5%"}
    kinds = {"rate": rate, "delay": time, "jitter": time, "loss": fraction, "duplicate": fraction,
             "reorder": fraction, "corrupt": fraction}
    params = {k: {"$ref": f"#/$defs/{'rate' if k == 'rate' else 'time' if k in ('delay', 'jitter') else 'fraction'}"}
              for k in PARAMS}
    name = {"type": "string", "pattern": NAME_RE.pattern, "maxLength": IFNAME_MAX - len("-eth0")}
    isp_name = {"type": "string", "pattern": NAME_RE.pattern, "maxLength": IFNAME_MAX}
    attrs = {"type": "object"}
    node = {"type": "object", "additionalProperties": False, "properties": {
        "roles": {"type": "array", "items": {"enum": list(ROLES)}, "minItems": 1, "uniqueItems": True},
        "isp": isp_name, "attrs": attrs}}
    link = {"type": "object", "additionalProperties": False, "required": ["a", "b"], "properties": {
        "a": name, "b": name, **params,
        "a_to_b": {"$ref": "#/$defs/params"}, "b_to_a": {"$ref": "#/$defs/params"}, "attrs": attrs}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://pktlab.invalid/schema/topology.json",
        "title": "pktlab topology",
        "type": "object",
        "additionalProperties": False,
        "required": ["nodes"],
        "$defs": {"rate": kinds["rate"], "time": time, "fraction": fraction, "lease": lease_schema(),
                  "params": {"type": "object", "additionalProperties": False, "properties": params}},
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "seed": {"type": ["integer", "null"], "minimum": 0},
            "allow_disconnected": {"type": "boolean"},
            "defaults": {"$ref": "#/$defs/params"},
            "isps": {"type": "object", "propertyNames": isp_name, "additionalProperties": {
                "type": ["object", "null"], "additionalProperties": False, "properties": {
                    "relations": {"type": "object", "additionalProperties": {"enum": list(RELATIONS)}},
                    "attrs": attrs, "leases": {"type": "array", "items": {"$ref": "#/$defs/lease"}}}}},
            "nodes": {"oneOf": [
                {"type": "object", "propertyNames": name,
                 "additionalProperties": {"oneOf": [{"type": "null"}, node]}},
                {"type": "array", "items": {"oneOf": [
                    name, {**node, "required": ["name"], "properties": {**node["properties"], "name": name}}]}}]},
            "links": {"type": "array", "items": {"oneOf": [
                {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*--[A-Za-z][A-Za-z0-9_]*$"}, link]}},
            "attrs": attrs,
            "chain": {"type": "object", "additionalProperties": False, "properties": {   # testbed/services.py
                **{k: {"type": "integer", "minimum": 1} for k in ("block_time", "retarget_interval", "burn_depth",
                                                                  "maturity", "lock_blocks", "genesis_bits")},
                "time_scale": {"type": "number", "minimum": 1}, "ann_rate": {"type": "number", "minimum": 0}}},
            "chains": {"type": "object", "propertyNames": name, "additionalProperties": {   # testbed/services.py
                "type": "object", "additionalProperties": False, "required": ["nodes"], "properties": {
                    **{k: {"type": "integer", "minimum": 1} for k in (
                        "block_time", "retarget_interval", "burn_depth", "maturity", "lock_blocks", "genesis_bits",
                        "net_magic", "port")},
                    "time_scale": {"type": "number", "minimum": 1},
                    "nodes": {"type": "array", "minItems": 1, "items": name}, "miner": name}}},
        },
    }
