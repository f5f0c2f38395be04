"""`pktlab exec`, `shell`, `ping`, `pingall`, `iperf`: working inside the nodes of a run.

A command given as one argument is a shell command line (`pktlab exec n1 "ip -6 route | head -3"`); given as
several (after `--`), it runs as it is, without a shell. Node names resolve inside every node (testbed/hosts.py).
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys


from testbed import runs
from testbed.backends import exec_in
from testbed.cli.common import attach, console, need_root, node_pid, out, run_option
from testbed.console import data_table, styled


def _argv(words: list[str]) -> list[str]:
    words = words[1:] if words[:1] == ["--"] else words
    if not words:
        raise SystemExit('pktlab exec: give the command, e.g. pktlab exec n1 "ip -6 route | head -3"')
    return ["bash", "-c", words[0]] if len(words) == 1 else words


def _wait_passing_ctrl_c(proc: subprocess.Popen) -> int:
    """Wait for a command in a node the way a shell does: Ctrl-C goes to the command (same process group), which
    decides what to do with it; we only wait for its exit code."""
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_exec(args):
    need_root()
    run = runs.pick_run(args.run)
    if not args.all:
        if args.node is None:
            raise SystemExit("pktlab exec: give a NODE, or --all")
        node_pid(run, args.node)       # an unknown node: a RunError naming the run's nodes
        sys.exit(_wait_passing_ctrl_c(exec_in(run, args.node, _argv(args.command))))
    # `exec --all CMD`: what argparse took for a node is the command
    argv = _argv(([args.node] if args.node is not None else []) + args.command)
    procs = {n: exec_in(run, n, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in run.state["nodes"]}
    worst = 0
    for n, proc in procs.items():
        text, _ = proc.communicate()
        worst = max(worst, proc.returncode)
        for line in text.splitlines():
            out.print(styled((f"{n}: ", "bold"), line))
        if proc.returncode:
            out.print(styled((f"{n}: exit {proc.returncode}", "red")))
    sys.exit(worst)


def cmd_shell(args):
    need_root()
    run = runs.pick_run(args.run)
    node_pid(run, args.node)
    proc = exec_in(run, args.node, ["env", f"PS1={args.node}@{run.name}# ", "bash", "--norc"], tty=True)
    sys.exit(_wait_passing_ctrl_c(proc))


def _rtt(st: dict) -> str:
    return "-" if st["avg"] is None else f"{st['min']:.3f}/{st['avg']:.3f}/{st['max']:.3f} ms"


def cmd_ping(args):
    mesh = attach(args)
    st = mesh.ping_stats(args.a, args.b, count=args.count)
    line = (f"{args.a} -> {args.b} ({mesh.ip6(args.b)}): {st['sent']} sent, {st['received']} received, "
            f"{st['loss']:.0%} loss" + (f", rtt min/avg/max {_rtt(st)}" if st["avg"] is not None else ""))
    if not st["received"]:
        import networkx as nx
        why = "" if nx.has_path(mesh.topo.graph(), args.a, args.b) else \
            " (they are in different components of the topology)"
        out.print(line + why, style="red")
        sys.exit(1)
    out.print(line)


def cmd_pingall(args):
    mesh = attach(args)
    nodes = mesh.nodes
    results = mesh.pingall(count=args.count)
    if args.json:
        import json
        print(json.dumps({f"{a} {b}": st for (a, b), st in results.items()}))
    elif len(nodes) <= args.matrix_up_to:
        t = data_table("from \\ to", *nodes, title=f"run {mesh.run.name}: loss % / avg RTT ms over {args.count} pings")
        for a in nodes:
            cells = []
            for b in nodes:
                st = results.get((a, b))
                cells.append("·" if st is None else styled((f"{st['loss']:.0%}", "red" if st["loss"] else "green"),
                                                          f" {st['avg']:.2f}" if st["avg"] is not None else ""))
            t.add_row(a, *cells)
        out.print(t)
    lossy = [f"{a}->{b} {st['loss']:.0%}" for (a, b), st in results.items() if st["loss"]]
    out.print(f"{len(results) - len(lossy)} of {len(results)} pairs without loss"
              + (f"; with loss: {', '.join(lossy[:20])}" + (" ..." if len(lossy) > 20 else "") if lossy else ""))
    if lossy:
        sys.exit(1)


def cmd_iperf(args):
    mesh = attach(args)
    for n in (args.a, args.b):
        mesh.ip6(n)
    console.print(f"iperf3 TCP {args.a} -> {args.b} for {args.time:g} s ...")
    bps = mesh.iperf(args.a, args.b, seconds=args.time, reverse=args.reverse)
    if bps is None:
        out.print(f"{args.a} -> {args.b}: iperf3 got no result (is {args.b} reachable? pktlab ping {args.a} "
                  f"{args.b})", style="red")
        sys.exit(1)
    direction = f"{args.b} -> {args.a}" if args.reverse else f"{args.a} -> {args.b}"
    out.print(f"{direction}: {bps / 1e6:.2f} Mbit/s")


def register(add) -> None:
    sp = add("exec", cmd_exec, 'run a command inside a node: pktlab exec NODE "CMD | ..." (one argument: a shell '
                               'command line) or pktlab exec NODE -- CMD ARGS... (run as is); --all: every node')
    run_option(sp)
    sp.add_argument("--all", action="store_true", help="in every node, output prefixed with the node's name")
    sp.add_argument("node", nargs="?")
    sp.add_argument("command", nargs=argparse.REMAINDER)

    sp = add("shell", cmd_shell, "an interactive shell inside a node")
    run_option(sp)
    sp.add_argument("node")

    sp = add("ping", cmd_ping, "end-to-end ping from node A to node B over the fc00::/8 addresses: loss and "
                               "min/avg/max RTT")
    run_option(sp)
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("-c", "--count", type=int, default=3)

    sp = add("pingall", cmd_pingall, "ping between every pair of nodes: a loss/RTT matrix; exit 1 if any loss")
    run_option(sp)
    sp.add_argument("-c", "--count", type=int, default=3)
    sp.add_argument("--matrix-up-to", type=int, default=16, metavar="N",
                    help="draw the matrix for meshes up to N nodes (default 16), else only the summary")
    sp.add_argument("--json", action="store_true")

    sp = add("iperf", cmd_iperf, "TCP throughput from node A to node B with iperf3 over the fc00::/8 addresses")
    run_option(sp)
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("-t", "--time", type=float, default=3.0, help="seconds (default 3)")
    sp.add_argument("-R", "--reverse", action="store_true", help="B sends to A")
