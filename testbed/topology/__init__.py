"""The topology package: what a mesh is made of, and every way to get one.

    units       values with units ("10mbit", "5ms", "1%") and TopologyError
    model       Node, Link, Isp, Topology, LinkParams (one link direction) and the native file form
    leases      bandwidth leases declared by Cloud ISPs: format and checks
    dataplane   per-link encryption and fair share, switched on and off in attrs
    servers     where route servers go when a topology names none (route_servers=N, big meshes)
    check       validate(topo): every problem of a whole topology at once
    reader      the native YAML/JSON format -> Topology
    formats     meshnet-lab JSON, GraphML, GML, dot and PNG import/export
    generators  grid:3x3, multi-isp:2,4, ... (generator strings)
    load        load(spec) from a path, generator string, bundled example or bundled real mesh; save/dumps
    schema      JSON Schema of the native format

Imports go down this list only. The names below are the package's public face.
"""
from testbed.topology.check import validate
from testbed.topology.load import bundled_examples, dumps, load, real_meshes, save
from testbed.topology.model import (PARAMS, RELATIONS, ROLES, RUNNING_ROLES, Isp, Link, LinkParams, Node, Topology,
                                    idle_roles)
from testbed.topology.reader import from_dict, parse_text
from testbed.topology.schema import json_schema
from testbed.topology.units import (TopologyError, format_fraction, format_rate, format_time, parse_fraction,
                                    parse_rate, parse_time)

__all__ = ["TopologyError", "LinkParams", "Node", "Link", "Isp", "Topology", "load", "save", "dumps", "validate",
           "from_dict", "parse_text", "json_schema", "parse_rate", "parse_time", "parse_fraction", "format_rate",
           "format_time", "format_fraction", "bundled_examples", "real_meshes", "ROLES", "RUNNING_ROLES", "idle_roles",
           "RELATIONS", "PARAMS"]
