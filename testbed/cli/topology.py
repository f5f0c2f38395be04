"""`pktlab validate`, `schema`, `graph`: topologies without building them."""
from __future__ import annotations

import json
import os

from testbed.cli.common import console, out
from testbed.console import styled
from testbed.runs import RunError
from testbed.topology import json_schema, load, save


def cmd_validate(args):
    topo = load(args.topology, seed=args.seed, allow_disconnected=args.allow_disconnected)
    for w in topo.warnings:
        console.print(styled(("warning: ", "yellow"), w))
    out.print(f"{topo.source}: ok, {len(topo.nodes)} nodes, {len(topo.links)} links, {len(topo.isps)} Cloud ISPs")


def cmd_schema(args):
    print(json.dumps(json_schema(), indent=2))


def cmd_graph(args):
    topo = load(args.topology, seed=args.seed, allow_disconnected=True)
    parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(parent):
        raise RunError(f"cannot write {args.output}: no directory {parent}")
    try:
        save(topo, args.output)
    except OSError as e:
        raise RunError(f"cannot write {args.output}: {e.strerror}") from None
    out.print(f"wrote {args.output}")


def register(add) -> None:
    sp = add("validate", cmd_validate, "check a topology file or generator string without building it")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--allow-disconnected", action="store_true", default=None,
                    help="every component of a disconnected topology (an imported mesh: by default its largest)")

    add("schema", cmd_schema, "print the JSON Schema of topology files (for editors)")

    sp = add("graph", cmd_graph, "draw a topology: -o topo.png (or .dot, .graphml, .gml, .yaml, .json)")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("-o", "--output", required=True)
    sp.add_argument("--seed", type=int)
