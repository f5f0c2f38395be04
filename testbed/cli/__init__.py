"""The `pktlab` command line: one module per group of verbs, each with a `register(add)` that adds its
subcommands (`add(name, fn, help)` returns an argparse subparser whose `fn` gets the parsed arguments).

    runs      up, down, status, list, cleanup          nodes     exec, shell, ping
    topology  validate, schema, graph                  inspect   capture, dissect, report, doctor
    faults    fault, heal, faults, run (scenarios)     leases    leases, lease-config
    routes    routes, rs                               common    consoles, root check, --run, attach
    chain     chain, mining, wallet (the PKT chain, pools and miners)
"""
from __future__ import annotations

import argparse

from testbed.runs import RunError
from testbed.cli import faults, inspect, leases, nodes, routes, runs, topology
from testbed.cli import labs, ui  # issue 18
from testbed.cli import chain  # issue 14
from testbed.cli.common import console
from testbed.topology import TopologyError, bundled_examples

GROUPS = (runs, nodes, topology, inspect, faults, routes, leases)
GROUPS += (labs, ui)
GROUPS += (chain,)

DESCRIPTION = """\
pktlab builds an emulated PKT Network on this machine: every node a Linux network namespace running a
cjdns-compatible PKT routing device (TUN device, fc00::/8 address, end-to-end encryption, source-routed
switch), every link a veth pair with real traffic control.

TOPOLOGY is a file (pktlab YAML/JSON, meshnet-lab JSON, GraphML, GML), a bundled example or a generator:
  bundled:    {bundled}
  generators: line:N ring:N star:N grid:RxC grid8:RxC tree:DxF full:N random:N,P geometric:N,R
              smallworld:N,K,P scalefree:N,M multi-isp:I,N  (e.g. grid:5x5,rate=10mbit,delay=5ms)
"""

EPILOG = """\
examples:
  pktlab up grid:3x3                 build a 3x3 grid and wait until every node reaches every other
  pktlab status                      nodes, addresses, agents of the running mesh
  pktlab ping r1c1 r3c3              end-to-end ping over the fc00::/8 addresses
  pktlab exec r1c1 -- iperf3 -s -D   run a command inside a node
  pktlab down                        remove the run and everything it created
  pktlab cleanup --stale             remove runs whose orchestrator died (kill -9, crash)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pktlab", description=DESCRIPTION.format(bundled=", ".join(bundled_examples())),
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    def add(name, fn, help_):
        # argparse %-formats help strings (not descriptions): "10%" must stay literal in both
        sp = sub.add_parser(name, help=help_.replace("%", "%%"), description=help_)
        sp.set_defaults(fn=fn)
        return sp

    for group in GROUPS:
        group.register(add)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (TopologyError, RunError) as e:
        console.print(f"[red]pktlab: error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("pktlab: interrupted; nothing of this run is left behind")
        return 130
    except RuntimeError as e:  # backend and netlink failures carry their own explanation
        console.print(f"[red]pktlab: error:[/] {e}", highlight=False)
        return 1
    return 0
