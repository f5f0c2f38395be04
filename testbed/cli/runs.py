"""`pktlab up`, `down`, `status`, `list`, `cleanup`: the life cycle of runs."""
from __future__ import annotations

import json
import os

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from testbed import runs
from testbed.cli.common import Bars, console, need_root, out, run_option


def cmd_up(args):
    need_root()
    from testbed.mesh import Mesh
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as progress:
        mesh = Mesh.up(args.topology, name=args.name, seed=args.seed, agents=not args.no_agents,
                       progress=Bars(progress), wait=args.wait, allow_disconnected=args.allow_disconnected,
                       time_scale=args.time_scale)
    for w in mesh.topo.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if args.json:
        print(json.dumps(_status(mesh.run)))
    else:
        console.print(f"[green]run {mesh.run.name} is up[/]: {len(mesh.topo.nodes)} nodes, {len(mesh.topo.links)} "
                      f"links; run directory {mesh.run.dir}")
        console.print(f"next: pktlab status --run {mesh.run.name} | pktlab down --run {mesh.run.name}")


def _status(run) -> dict:
    up, total = run.nodes_alive()
    agents = run.state.get("agents", {})
    return {
        "run": run.name, "id": run.id, "status": run.condition(), "dir": str(run.dir),
        "source": run.state.get("source"), "seed": run.state.get("seed"), "prefix": run.state.get("prefix"),
        "nodes": {n: {"alive": runs.alive(rec["pid"], rec["start"]), "pid": rec["pid"],
                      "ip6": run.state.get("addresses", {}).get(n),
                      "agent": runs.alive(agents[n]["pid"], agents[n]["start"]) if n in agents else None}
                  for n, rec in run.state.get("nodes", {}).items()},
        "links": run.state.get("links", []),
        "nodes_alive": up, "nodes_total": total,
    }


def cmd_status(args):
    run = runs.pick_run(args.run)
    st = _status(run)
    if args.json:
        print(json.dumps(st, indent=1))
        return
    out.print(f"run [bold]{st['run']}[/] ({st['status']}), {st['nodes_alive']}/{st['nodes_total']} nodes alive, "
              f"from {st['source']}, seed {st['seed']}, underlay {st['prefix']}")
    t = Table("node", "fc00::/8 address", "agent", "links")
    links_of = {}
    for rec in st["links"]:
        links_of.setdefault(rec["a"], []).append(f"{rec['a_if']} {rec['a_addr']}")
        links_of.setdefault(rec["b"], []).append(f"{rec['b_if']} {rec['b_addr']}")
    for n, rec in st["nodes"].items():
        agent = {True: "[green]running[/]", False: "[red]down[/]", None: "-"}[rec["agent"]]
        t.add_row(n, rec["ip6"] or "-", agent, "\n".join(links_of.get(n, [])))
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
    need_root()
    from testbed.mesh import Mesh
    targets = runs.list_runs() if args.all else [runs.pick_run(args.run)]
    for r in targets:
        archive = None if args.archive is None else (os.path.join(args.archive, r.name) if args.all else args.archive)
        Mesh(r, None).down(archive=archive)
        console.print(f"run {r.name} removed" + (f"; its records are in {archive}" if archive else ""))


def cmd_cleanup(args):
    need_root()
    all_runs = runs.list_runs()
    if args.runs:
        targets = [runs.load_run(n) for n in args.runs]
    elif args.all:
        targets = all_runs
    else:  # --stale is the default: never touch a healthy run unasked
        targets = [r for r in all_runs if r.condition() == "stale"]
    for r in targets:
        runs.destroy(r)
        console.print(f"run {r.name} removed")
    if not targets:
        console.print("nothing to clean up")


def register(add) -> None:
    sp = add("up", cmd_up, "build a mesh from TOPOLOGY, start its agents, return when it is ready")
    sp.add_argument("topology", metavar="TOPOLOGY")
    sp.add_argument("--name", help="run name (default: derived from the topology)")
    sp.add_argument("--seed", type=int, help="seed for random topologies and node keys (recorded in the run)")
    sp.add_argument("--no-agents", action="store_true", help="only namespaces and links, no node agents")
    sp.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for reachability")
    sp.add_argument("--allow-disconnected", action="store_true", default=None,
                    help="accept a topology that falls apart in several components")
    sp.add_argument("--json", action="store_true", help="print the run's status as JSON when ready")
    sp.add_argument("--time-scale", type=float, metavar="F",
                    help="shrink the PKT chain's lengths F times (block time 60/F s, retarget 2016/F blocks, ...)")

    sp = add("down", cmd_down, "stop a run and remove everything it created")
    run_option(sp)
    sp.add_argument("--all", action="store_true", help="every run on this machine")

    sp.add_argument("--archive", metavar="DIR", help="first copy the run's journal, events, counters and logs to DIR")

    sp = add("status", cmd_status, "nodes, addresses and agents of a run")
    run_option(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("list", cmd_list, "the runs on this machine")
    sp.add_argument("--json", action="store_true")

    sp = add("cleanup", cmd_cleanup, "remove stale runs (default), named runs, or --all")
    sp.add_argument("runs", nargs="*", metavar="RUN")
    sp.add_argument("--stale", action="store_true", help="runs whose orchestrator died or whose nodes are gone "
                                                          "(the default)")
    sp.add_argument("--all", action="store_true", help="every pktlab run on this machine")
