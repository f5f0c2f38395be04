"""`pktlab up`, `down`, `status`, `list`, `cleanup`: the life cycle of runs."""
from __future__ import annotations

import json
import os

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from testbed import runs
from testbed.cli.common import RUN_HELP, Bars, console, need_root, out, run_option
from testbed.console import data_table, styled


def cmd_up(args):
    need_root()
    from testbed.mesh import Mesh
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as progress:
        mesh = Mesh.up(args.topology, name=args.name, seed=args.seed, agents=not args.no_agents,
                       progress=Bars(progress), wait=args.wait, allow_disconnected=args.allow_disconnected,
                       restart_agents=not args.no_restart, time_scale=args.time_scale,
                       sample_counters=args.counters, **_backend_args(args))
    for w in mesh.topo.warnings:
        console.print(styled(("warning: ", "yellow"), w))
    if args.json:
        print(json.dumps(_status(mesh.run)))
        return
    stem = runs.default_name(mesh.topo.name)
    if args.name is None and mesh.run.name != stem:
        console.print(styled(("note: ", "yellow"), f"a run named {stem} exists already, so this one is "
                                                   f"{mesh.run.name}; commands from this shell use it by default"))
    console.print(styled((f"run {mesh.run.name} is up", "green"), f": {len(mesh.topo.nodes)} nodes, "
                         f"{len(mesh.topo.links)} links; run directory {mesh.run.dir}"))
    console.print(f"next: pktlab status | pktlab pingall | pktlab down   (from another shell: --run {mesh.run.name})")


def _backend_args(args) -> dict:
    """--hosts INVENTORY means the ssh backend; --backend says it explicitly (vagrant: VMs)."""
    backend = args.backend or ("ssh" if args.hosts else "netns")
    return {"backend": backend, **({"hosts": args.hosts} if args.hosts else {})}


def _status(run) -> dict:
    from testbed.backends import for_run
    from testbed.faults.record import faults_of_run
    from testbed.topology import load, RUNNING_ROLES
    states = for_run(run).node_states()     # on SSH hosts: one call per host
    try:
        topo = load(str(run.path("topology.yaml")))
    except Exception:    # a run being built or torn down may not have it (yet): status still answers
        topo = None
    peers = {}
    for rec in run.state.get("links", []):
        peers.setdefault(rec["a"], []).append(rec["b"])
        peers.setdefault(rec["b"], []).append(rec["a"])

    def node_info(n, rec):
        node = topo.nodes.get(n) if topo else None
        return {**states[n], "pid": rec["pid"], "ip6": run.state.get("addresses", {}).get(n),
                "roles": list(node.roles) if node else [],
                "roles_without_effect": [r for r in node.roles if r not in RUNNING_ROLES] if node else [],
                "isp": node.isp if node else None, "peers": peers.get(n, [])}
    return {
        "run": run.name, "id": run.id, "status": run.condition(), "dir": str(run.dir),
        "source": run.state.get("source"), "seed": run.state.get("seed"), "prefix": run.state.get("prefix"),
        "routing": run.state.get("routing"), "backend": run.state.get("backend", "netns"),
        "nodes": {n: node_info(n, rec) for n, rec in run.state.get("nodes", {}).items()},
        "links": run.state.get("links", []),
        "faults": faults_of_run(run), "agents_down": run.agents_down(),
        "restart_agents": run.state.get("restart_agents", False),
        "nodes_alive": sum(bool(st["alive"]) for st in states.values()), "nodes_total": len(states),
    }


def cmd_status(args):
    run = runs.pick_run(args.run)
    st = _status(run)
    if args.json:
        print(json.dumps(st, indent=1))
        return
    condition = (st["status"], "red" if st["status"] in ("degraded", "stale") else "")
    out.print(styled("run ", (st["run"], "bold"), " (", condition, f"), {st['nodes_alive']}/{st['nodes_total']} "
                     f"nodes alive, from {st['source']}, seed {st['seed']}, routing {st['routing'] or '-'}, "
                     f"underlay {st['prefix']}, backend {st['backend']}"))
    if st["agents_down"]:
        out.print(f"agents down: {', '.join(st['agents_down'])}"
                  + ("; the monitor restarts an agent that died (not one a crash fault stopped)"
                     if st["restart_agents"] else "; no restart policy (up --no-restart)"), style="red")
    hosts = any(rec["host"] for rec in st["nodes"].values())
    t = data_table("node", *(["host"] if hosts else []), "roles", "ISP", "fc00::/8 address", "agent", "peers",
                   "links (interface, underlay address)")
    links_of = {}
    for rec in st["links"]:
        links_of.setdefault(rec["a"], []).append(f"{rec['a_if']} {rec['a_addr']}")
        links_of.setdefault(rec["b"], []).append(f"{rec['b_if']} {rec['b_addr']}")
    for n, rec in st["nodes"].items():
        agent = {True: styled(("running", "green")), False: styled(("down", "red")), None: "-"}[rec["agent"]]
        roles = Text(", ").join(Text(f"{r}*", "dim") if r in rec["roles_without_effect"] else Text(r)
                                for r in rec["roles"]) if rec["roles"] else "-"
        t.add_row(n, *([rec["host"]] if hosts else []), roles, rec["isp"] or "-", rec["ip6"] or "-", agent,
                  " ".join(rec["peers"]), "\n".join(links_of.get(n, [])))
    out.print(t)
    if any(rec["roles_without_effect"] for rec in st["nodes"].values()):
        out.print("* a role with no effect yet (the node agent does not run it)", style="dim")
    if st["faults"]:
        out.print("active faults: " + "; ".join(f"{f['id']} {f['description']}" for f in st["faults"]))
    else:
        out.print("active faults: none")


def cmd_list(args):
    rs = runs.list_runs()
    try:
        current = runs.current_run_name()[0] if rs else None
    except runs.RunError:
        current = None
    if args.json:
        print(json.dumps([{"run": r.name, "id": r.id, "status": r.condition(), "nodes": len(r.state.get("nodes", {})),
                           "source": r.state.get("source"), "current": r.name == current} for r in rs]))
        return
    if not rs:
        out.print("no runs")
        return
    t = data_table("run", "status", "nodes", "links", "topology", "directory")
    for r in rs:
        t.add_row(r.name + (" *" if r.name == current else ""), r.condition(), str(len(r.state.get("nodes", {}))),
                  str(len(r.state.get("links", []))), str(r.state.get("source")), str(r.dir))
    out.print(t)
    if current:
        out.print(f"* the run commands without --run use ({runs.current_run_name()[1]})")


def cmd_down(args):
    need_root()
    from testbed.mesh import Mesh
    targets = runs.list_runs() if args.all else [runs.pick_run(args.run)]
    if args.all and not targets:
        console.print("no runs")
    for r in targets:
        archive = None if args.archive is None else (os.path.join(args.archive, r.name) if args.all else args.archive)
        Mesh(r, None).down(archive=archive, skip_unreachable=args.skip_unreachable)
        console.print(f"run {r.name} removed" + (f"; its records are in {archive}" if archive else ""))


def cmd_cleanup(args):
    need_root()
    if args.runs and args.all:
        raise SystemExit("pktlab cleanup: name runs or give --all, not both")
    all_runs = runs.list_runs()
    if args.runs:
        targets = [runs.load_run(n) for n in args.runs]
    elif args.all:
        targets = all_runs
    else:  # --stale is the default: never touch a healthy run unasked
        targets = [r for r in all_runs if r.condition() == "stale"]
    from testbed import backends
    for r in targets:
        backends.destroy(r, skip_unreachable=args.skip_unreachable)
        console.print(f"run {r.name} removed")
    if not targets:
        console.print("nothing to clean up")


def register(add) -> None:
    sp = add("up", cmd_up, "build a mesh from TOPOLOGY, start its agents, return when it is ready")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("--name", help="run name (default: derived from the topology; NAME-2 ... if taken)")
    sp.add_argument("--seed", type=int, help="seed for random topologies and node keys (recorded in the run)")
    sp.add_argument("--no-agents", action="store_true", help="only namespaces and links, no node agents")
    sp.add_argument("--no-restart", action="store_true", help="leave an agent that dies down (by default the run "
                                                               "monitor starts it again, same identity)")
    sp.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for reachability")
    sp.add_argument("--counters", action="store_true", help="sample the agents' counters all along, for the "
                                                            "throughput plots of `pktlab report` (by default only "
                                                            "while `pktlab ui` shows the run)")
    sp.add_argument("--allow-disconnected", action="store_true", default=None,
                    help="build every component of a topology that falls apart in several (an imported real "
                         "mesh: by default only its largest component; a native file or generator: an error)")
    sp.add_argument("--json", action="store_true", help="print the run's status as JSON when ready")
    sp.add_argument("--hosts", metavar="INVENTORY", help="spread the nodes over the SSH hosts of this inventory "
                                                         "(YAML; see docs/backends.md)")
    sp.add_argument("--backend", choices=("netns", "ssh", "vagrant"),
                    help="where the nodes live: namespaces here (default), SSH hosts (--hosts), Vagrant VMs")
    sp.add_argument("--time-scale", type=float, metavar="F",
                    help="shrink the PKT chain's lengths F times (block time 60/F s, retarget 2016/F blocks, ...)")

    sp = add("down", cmd_down, "stop a run and remove everything it created")
    which = sp.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="NAME", help=RUN_HELP)
    which.add_argument("--all", action="store_true", help="every run on this machine")
    sp.add_argument("--archive", metavar="DIR", help="first copy the run's journal, events, counters and logs to DIR")
    sp.add_argument("--skip-unreachable", action="store_true",
                    help="SSH hosts that cannot be reached: give up their part of the run (warned about)")

    sp = add("status", cmd_status, "nodes, roles, ISPs, addresses, agents, peers, links and active faults of a run")
    run_option(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("list", cmd_list, "the runs on this machine (* marks the one commands without --run use)")
    sp.add_argument("--json", action="store_true")

    sp = add("cleanup", cmd_cleanup, "remove stale runs (default), named runs, or --all")
    sp.add_argument("runs", nargs="*", metavar="RUN")
    sp.add_argument("--stale", action="store_true", help="runs whose orchestrator died or whose nodes are gone "
                                                          "(the default)")
    sp.add_argument("--all", action="store_true", help="every pktlab run on this machine")
    sp.add_argument("--skip-unreachable", action="store_true",
                    help="SSH hosts that cannot be reached: give up their part of the run (warned about)")
