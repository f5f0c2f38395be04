"""`pktlab exec`, `shell`, `ping`: working inside the nodes of a run."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from testbed import runs
from testbed.cli.common import attach, need_root, node_pid, out, run_option


def cmd_exec(args):
    need_root()
    run = runs.pick_run(args.run)
    pid = node_pid(run, args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("pktlab exec: give the command after --, e.g. pktlab exec n1 -- ip -6 addr")
    env = dict(os.environ, **{runs.TAG_VAR: run.id, "PKTLAB_NODE": args.node})
    sys.exit(subprocess.call(["mnexec", "-a", str(pid)] + command, env=env))


def cmd_shell(args):
    need_root()
    run = runs.pick_run(args.run)
    pid = node_pid(run, args.node)
    env = dict(os.environ, **{runs.TAG_VAR: run.id, "PKTLAB_NODE": args.node,
                              "PS1": f"{args.node}@{run.name}# "})
    sys.exit(subprocess.call(["mnexec", "-a", str(pid), "bash", "--norc"], env=env))


def cmd_ping(args):
    mesh = attach(args)
    for n in (args.a, args.b):
        if n not in mesh.topo.nodes:
            raise runs.RunError(f"run {mesh.run.name} has no node {n!r}")
    rtt = mesh.ping(args.a, args.b, count=args.count)
    if rtt is None:
        import networkx as nx
        why = "" if nx.has_path(mesh.topo.graph(), args.a, args.b) else " (they are in different components of the topology)"
        out.print(f"{args.a} -> {args.b} ({mesh.ip6(args.b)}): no reply{why}", style="red")
        sys.exit(1)
    out.print(f"{args.a} -> {args.b} ({mesh.ip6(args.b)}): rtt {rtt:.3f} ms")


def register(add) -> None:
    sp = add("exec", cmd_exec, "run a command inside a node: pktlab exec NODE -- CMD ...")
    run_option(sp)
    sp.add_argument("node")
    sp.add_argument("command", nargs=argparse.REMAINDER)

    sp = add("shell", cmd_shell, "an interactive shell inside a node")
    run_option(sp)
    sp.add_argument("node")

    sp = add("ping", cmd_ping, "end-to-end ping from node A to node B over the fc00::/8 addresses")
    run_option(sp)
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("-c", "--count", type=int, default=3)
