"""The `pktlab` command line."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from testbed import runs
from testbed.topology import TopologyError, bundled_examples, json_schema, load

# modules with a `register(add)` that adds their subcommands
EXTENSIONS = ["testbed.cli_faults", "testbed.cli_routes", "testbed.cli_leases"]

console = Console(stderr=True)
out = Console()

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


def _need_root():
    if os.geteuid() != 0:
        raise SystemExit("pktlab: this command needs root (network namespaces, veth, tc): run it with sudo")


class _Bars:
    """One rich progress bar per build step."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks = {}

    def __call__(self, step, done, total):
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=done, total=total)


def cmd_up(args):
    _need_root()
    from testbed.mesh import Mesh
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as progress:
        mesh = Mesh.up(args.topology, name=args.name, seed=args.seed, agents=not args.no_agents,
                       progress=_Bars(progress), wait=args.wait, allow_disconnected=args.allow_disconnected,
                       **_backend_args(args))
    for w in mesh.topo.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if args.json:
        print(json.dumps(_status(mesh.run)))
    else:
        console.print(f"[green]run {mesh.run.name} is up[/]: {len(mesh.topo.nodes)} nodes, {len(mesh.topo.links)} "
                      f"links; run directory {mesh.run.dir}")
        console.print(f"next: pktlab status --run {mesh.run.name} | pktlab down --run {mesh.run.name}")


def _backend_args(args) -> dict:
    """--hosts INVENTORY means the ssh backend; --backend says it explicitly (vagrant: VMs)."""
    backend = args.backend or ("ssh" if args.hosts else "netns")
    return {"backend": backend, **({"hosts": args.hosts} if args.hosts else {})}


def _status(run) -> dict:
    from testbed.backends.base import for_run
    states = for_run(run).node_states()
    return {
        "run": run.name, "id": run.id, "status": run.condition(), "dir": str(run.dir),
        "source": run.state.get("source"), "seed": run.state.get("seed"), "prefix": run.state.get("prefix"),
        "backend": run.state.get("backend", "netns"),
        "nodes": {n: dict(states[n], pid=rec["pid"], ip6=run.state.get("addresses", {}).get(n))
                  for n, rec in run.state.get("nodes", {}).items()},
        "links": run.state.get("links", []),
        "nodes_alive": sum(bool(st["alive"]) for st in states.values()), "nodes_total": len(states),
    }


def cmd_status(args):
    run = runs.pick_run(args.run)
    st = _status(run)
    if args.json:
        print(json.dumps(st, indent=1))
        return
    out.print(f"run [bold]{st['run']}[/] ({st['status']}), {st['nodes_alive']}/{st['nodes_total']} nodes alive, "
              f"from {st['source']}, seed {st['seed']}, underlay {st['prefix']}, backend {st['backend']}")
    hosts = any(rec["host"] for rec in st["nodes"].values())
    t = Table("node", *(["host"] if hosts else []), "fc00::/8 address", "agent", "links")
    links_of = {}
    for rec in st["links"]:
        links_of.setdefault(rec["a"], []).append(f"{rec['a_if']} {rec['a_addr']}")
        links_of.setdefault(rec["b"], []).append(f"{rec['b_if']} {rec['b_addr']}")
    for n, rec in st["nodes"].items():
        agent = {True: "[green]running[/]", False: "[red]down[/]", None: "-"}[rec["agent"]]
        t.add_row(n, *([rec["host"]] if hosts else []), rec["ip6"] or "-", agent, "\n".join(links_of.get(n, [])))
    out.print(t)


def cmd_list(args):
    rs = runs.list_runs()
    if args.json:
        print(json.dumps([{"run": r.name, "id": r.id, "status": r.condition(), "nodes": len(r.state.get("nodes", {})),
                           "source": r.state.get("source")} for r in rs]))
        return
    if not rs:
        out.print("no runs")
        return
    t = Table("run", "status", "nodes", "links", "topology", "directory")
    for r in rs:
        t.add_row(r.name, r.condition(), str(len(r.state.get("nodes", {}))), str(len(r.state.get("links", []))),
                  str(r.state.get("source")), str(r.dir))
    out.print(t)


def cmd_down(args):
    _need_root()
    from testbed.mesh import Mesh
    targets = runs.list_runs() if args.all else [runs.pick_run(args.run)]
    for r in targets:
        archive = None if args.archive is None else (os.path.join(args.archive, r.name) if args.all else args.archive)
        Mesh(r, None).down(archive=archive, skip_unreachable=args.skip_unreachable)
        console.print(f"run {r.name} removed" + (f"; its records are in {archive}" if archive else ""))


def cmd_cleanup(args):
    _need_root()
    all_runs = runs.list_runs()
    if args.runs:
        targets = [runs.load_run(n) for n in args.runs]
    elif args.all:
        targets = all_runs
    else:  # --stale is the default: never touch a healthy run unasked
        targets = [r for r in all_runs if r.condition() == "stale"]
    for r in targets:
        runs.destroy(r, skip_unreachable=args.skip_unreachable)
        console.print(f"run {r.name} removed")
    if not targets:
        console.print("nothing to clean up")


def _check_node(run, node):
    if node not in run.state.get("nodes", {}):
        raise runs.RunError(f"run {run.name} has no node {node!r} (nodes: {', '.join(list(run.state['nodes'])[:10])}...)")


def cmd_exec(args):
    _need_root()
    from testbed.backends.netns import exec_in
    run = runs.pick_run(args.run)
    _check_node(run, args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("pktlab exec: give the command after --, e.g. pktlab exec n1 -- ip -6 addr")
    sys.exit(exec_in(run, args.node, command).wait())


def cmd_shell(args):
    _need_root()
    from testbed.backends.netns import exec_in
    run = runs.pick_run(args.run)
    _check_node(run, args.node)
    sys.exit(exec_in(run, args.node, ["env", f"PS1={args.node}@{run.name}# ", "bash", "--norc"], tty=True).wait())


def cmd_ping(args):
    _need_root()
    from testbed.mesh import Mesh
    mesh = Mesh.attach(args.run)
    for n in (args.a, args.b):
        if n not in mesh.topo.nodes:
            raise runs.RunError(f"run {mesh.run.name} has no node {n!r}")
    rtt = mesh.ping(args.a, args.b, count=args.count)
    if rtt is None:
        import networkx as nx
        why = "" if nx.has_path(mesh.topo.graph(), args.a, args.b) else " (they are in different components of the topology)"
        out.print(f"[red]{args.a} -> {args.b} ({mesh.ip6(args.b)}): no reply{why}[/]")
        sys.exit(1)
    out.print(f"{args.a} -> {args.b} ({mesh.ip6(args.b)}): rtt {rtt:.3f} ms")


def _interface(run, spec: str) -> tuple[str, str]:
    """NODE:LINK where LINK is an interface name (n1-eth0) or the node at the other end (n1:n2)."""
    node, _, link = spec.partition(":")
    if node not in run.state.get("nodes", {}) or not link:
        raise runs.RunError(f"{spec!r}: expected NODE:INTERFACE or NODE:PEER with a node of run {run.name}")
    for rec in run.state.get("links", []):
        for me, other, ifname in ((rec["a"], rec["b"], rec["a_if"]), (rec["b"], rec["a"], rec["b_if"])):
            if me == node and link in (ifname, other):
                return node, ifname
    raise runs.RunError(f"{spec!r}: node {node} has no interface or peer {link!r}")


def cmd_capture(args):
    _need_root()
    run = runs.pick_run(args.run)
    from testbed.backends.netns import exec_in
    node, ifname = _interface(run, args.where)
    # the pcap comes back on stdout, so it lands here whichever machine the node is on
    argv = ["tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", "-"]
    if args.count:
        argv += ["-c", str(args.count)]
    console.print(f"capturing on {node}:{ifname} into {args.output} "
                  f"({'for %g s' % args.duration if args.duration else 'until Ctrl-C'})")
    with open(args.output, "wb") as pcap:
        proc = exec_in(run, node, argv, stdout=pcap, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=args.duration)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.wait()
    console.print(f"wrote {args.output}; read it with: pktlab dissect {args.output}")


def cmd_dissect(args):
    from testbed.dissect import print_pcap
    if not os.path.isfile(args.pcap):
        raise runs.RunError(f"{args.pcap}: no such file")
    print_pcap(args.pcap, limit=args.limit)


def cmd_report(args):
    from testbed.report import render_report
    run_dir = args.source if args.source and os.path.isdir(args.source) else str(runs.pick_run(args.source).dir)
    out_dir = args.output or os.path.join(run_dir, "report")
    result = render_report(run_dir, out_dir)
    out.print(f"report written to {result['index']}")


def cmd_validate(args):
    topo = load(args.topology, seed=args.seed, allow_disconnected=args.allow_disconnected)
    for w in topo.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    out.print(f"{topo.source}: ok, {len(topo.nodes)} nodes, {len(topo.links)} links, {len(topo.isps)} Cloud ISPs")


def cmd_schema(args):
    print(json.dumps(json_schema(), indent=2))


def cmd_graph(args):
    from testbed.topology import save
    topo = load(args.topology, seed=args.seed, allow_disconnected=True)
    save(topo, args.output)
    out.print(f"wrote {args.output}")


def cmd_doctor(args):
    from testbed import doctor
    rep = doctor.report()
    if args.json:
        print(json.dumps(rep, indent=1))
        return
    yes = lambda v: "[green]yes[/]" if v else "[red]no[/]"
    t = Table("check", "result", title="pktlab doctor")
    t.add_row("kernel", rep["kernel"])
    t.add_row("root", yes(rep["root"]))
    t.add_row("/dev/net/tun", yes(rep["tun"]))
    t.add_row("IPv6", yes(rep["ipv6"]))
    for q, ok in rep["qdiscs"].items():
        t.add_row(f"qdisc {q}", yes(ok))
    t.add_row("tcp congestion control", " ".join(rep["congestion_control"]))
    t.add_row("open files (soft/hard)", "/".join(map(str, rep["ulimit_nofile"])))
    t.add_row("processes (soft/hard)", "/".join(map(str, rep["ulimit_nproc"])))
    for tool, path in rep["tools"].items():
        t.add_row(f"tool {tool}", path or "[red]missing[/]")
    out.print(t)
    for line in rep["emulated_in_userspace"]:
        out.print(f"emulated in userspace: {line}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pktlab", description=DESCRIPTION.format(bundled=", ".join(bundled_examples())),
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    def add(name, fn, help_):
        # argparse %-formats help strings (not descriptions): "10%" must stay literal in both
        sp = sub.add_parser(name, help=help_.replace("%", "%%"), description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def run_opt(sp):
        sp.add_argument("--run", metavar="NAME", help="which run (default: the only one)")

    sp = add("up", cmd_up, "build a mesh from TOPOLOGY, start its agents, return when it is ready")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("--name", help="run name (default: derived from the topology)")
    sp.add_argument("--seed", type=int, help="seed for random topologies and node keys (recorded in the run)")
    sp.add_argument("--no-agents", action="store_true", help="only namespaces and links, no node agents")
    sp.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for reachability")
    sp.add_argument("--allow-disconnected", action="store_true", default=None,
                    help="accept a topology that falls apart in several components")
    sp.add_argument("--json", action="store_true", help="print the run's status as JSON when ready")
    sp.add_argument("--hosts", metavar="INVENTORY", help="spread the nodes over the SSH hosts of this inventory "
                                                         "(YAML; see docs/backends.md)")
    sp.add_argument("--backend", choices=("netns", "ssh", "vagrant"),
                    help="where the nodes live: namespaces here (default), SSH hosts (--hosts), Vagrant VMs")

    sp = add("down", cmd_down, "stop a run and remove everything it created")
    run_opt(sp)
    sp.add_argument("--all", action="store_true", help="every run on this machine")

    sp.add_argument("--archive", metavar="DIR", help="first copy the run's journal, events, counters and logs to DIR")
    sp.add_argument("--skip-unreachable", action="store_true",
                    help="SSH hosts that cannot be reached: give up their part of the run (warned about)")

    sp = add("status", cmd_status, "nodes, addresses and agents of a run")
    run_opt(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("list", cmd_list, "the runs on this machine")
    sp.add_argument("--json", action="store_true")

    sp = add("exec", cmd_exec, "run a command inside a node: pktlab exec NODE -- CMD ...")
    run_opt(sp)
    sp.add_argument("node")
    sp.add_argument("command", nargs=argparse.REMAINDER)

    sp = add("shell", cmd_shell, "an interactive shell inside a node")
    run_opt(sp)
    sp.add_argument("node")

    sp = add("ping", cmd_ping, "end-to-end ping from node A to node B over the fc00::/8 addresses")
    run_opt(sp)
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("-c", "--count", type=int, default=3)

    sp = add("cleanup", cmd_cleanup, "remove stale runs (default), named runs, or --all")
    sp.add_argument("runs", nargs="*", metavar="RUN")
    sp.add_argument("--stale", action="store_true", help="runs whose orchestrator died or whose nodes are gone "
                                                          "(the default)")
    sp.add_argument("--all", action="store_true", help="every pktlab run on this machine")
    sp.add_argument("--skip-unreachable", action="store_true",
                    help="SSH hosts that cannot be reached: give up their part of the run (warned about)")

    sp = add("validate", cmd_validate, "check a topology file or generator string without building it")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--allow-disconnected", action="store_true", default=None)

    add("schema", cmd_schema, "print the JSON Schema of topology files (for editors)")

    sp = add("graph", cmd_graph, "draw a topology: -o topo.png (or .dot, .graphml, .gml, .yaml, .json)")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("-o", "--output", required=True)
    sp.add_argument("--seed", type=int)

    sp = add("capture", cmd_capture, "write a pcap of one link end: pktlab capture NODE:LINK -o file.pcap")
    run_opt(sp)
    sp.add_argument("where", metavar="NODE:LINK", help="interface (n1:n1-eth0) or the peer at the other end (n1:n2)")
    sp.add_argument("-o", "--output", required=True)
    sp.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    sp.add_argument("--count", type=int, help="stop after this many packets")

    sp = add("dissect", cmd_dissect, "print a pcap with pktlab's protocols decoded (switch header, CryptoAuth, ...)")
    sp.add_argument("pcap")
    sp.add_argument("--limit", type=int, help="only the first N packets")

    sp = add("report", cmd_report, "render PNG plots and an HTML summary of a run (or an archived run directory)")
    sp.add_argument("source", nargs="?", metavar="RUN|DIR", help="run name or archive directory (default: the "
                                                                 "only run)")
    sp.add_argument("-o", "--output", metavar="DIR", help="where to write (default: RUN_DIR/report)")

    sp = add("doctor", cmd_doctor, "what this kernel offers and what pktlab emulates in userspace instead")
    sp.add_argument("--json", action="store_true")

    for module in EXTENSIONS:  # feature areas that bring their own subcommands
        importlib.import_module(module).register(add)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (TopologyError, runs.RunError) as e:
        console.print(f"[red]pktlab: error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("pktlab: interrupted; nothing of this run is left behind")
        return 130
    except RuntimeError as e:  # backend and netlink failures carry their own explanation
        console.print(f"[red]pktlab: error:[/] {e}", highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
