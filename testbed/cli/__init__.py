"""The `pktlab` command line: one module per group of verbs, each with a `register(add)` that adds its
subcommands (`add(name, fn, help)` returns an argparse subparser whose `fn` gets the parsed arguments).

    runs      up, down, status, list, cleanup          nodes     exec, shell, ping, pingall, iperf
    topology  validate, schema, graph                  inspect   capture, dissect, report, doctor
    faults    fault, heal, faults, run (scenarios)     leases    leases, lease-config
    routes    routes, rs                               labs, ui  lab ..., ui (issue 18)
    chain     chain, mining, wallet (the PKT chain, pools and miners)
    market    market offers|sell|buy|tokens|swaps (the bandwidth market)
    common    consoles, root check, --run, attach

This module imports nothing heavy at the top, so Ctrl-C while the rest loads ends with one line, not a traceback.
"""
from __future__ import annotations

import sys

DESCRIPTION = """\
pktlab builds an emulated PKT Network on this machine: every node a Linux network namespace running a
cjdns-compatible PKT routing device (TUN device, fc00::/8 address, end-to-end encryption, source-routed
switch), every link a veth pair with real traffic control.

TOPOLOGY is a file (pktlab YAML/JSON, meshnet-lab JSON, GraphML, GML), a bundled example or a generator:
  bundled:    {bundled}
  generators: line:N ring:N star:N grid:RxC grid8:RxC tree:DxF full:N random:N,P geometric:N,R
              smallworld:N,K,P scalefree:N,M multi-isp:I,N  (e.g. grid:5x5,rate=10mbit,delay=5ms)

RUN: commands act on the run named by --run NAME, else $PKTLAB_RUN, else the last run started from this shell,
else the only run there is.
"""

EPILOG = """\
examples:
  pktlab up grid:3x3                 build a 3x3 grid and wait until every node reaches every other
  pktlab status                      nodes, addresses, roles, links and faults of the running mesh
  pktlab ping r1c1 r3c3              end-to-end ping over the fc00::/8 addresses (loss, min/avg/max)
  pktlab pingall                     loss and RTT between every pair of nodes
  pktlab exec r1c1 "ping -c1 r3c3"   a command line inside a node (node names resolve there)
  pktlab fault loss r1c1-r1c2 10%    a fault; one way: r1c1:r1c2 (or quoted 'r1c1->r1c2')
  pktlab down                        remove the run and everything it created
  pktlab cleanup --stale             remove runs whose orchestrator died (kill -9, crash)
"""


def build_parser():
    import argparse

    from testbed.cli import chain, faults, inspect, labs, leases, market, nodes, routes, runs, topology, ui
    from testbed.topology import bundled_examples
    p = argparse.ArgumentParser(prog="pktlab", description=DESCRIPTION.format(bundled=", ".join(bundled_examples())),
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    def add(name, fn, help_):
        # argparse %-formats help strings (not descriptions): "10%" must stay literal in both
        sp = sub.add_parser(name, help=help_.split("\n")[0].rstrip(":").replace("%", "%%"), description=help_,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(fn=fn)
        return sp

    for group in (runs, nodes, topology, inspect, faults, routes, leases, labs, ui, chain, market):
        group.register(add)
    return p


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as e:   # also while the modules load; a run being built says what became of it
        print(f"pktlab: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130


def _main(argv) -> int:
    from testbed.cli.common import console
    from testbed.console import styled
    from testbed.runs import RunError
    from testbed.topology import TopologyError
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (TopologyError, RunError) as e:
        console.print(styled(("pktlab: error: ", "red"), e))
        return 2
    except RuntimeError as e:  # backend, netlink and fault failures carry their own explanation
        console.print(styled(("pktlab: error: ", "red"), e))
        return 1
    return 0
