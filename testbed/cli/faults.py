"""`pktlab fault`, `pktlab heal`, `pktlab faults` and `pktlab run SCENARIO`.

Errors are raised as RuntimeError (exit 1) or SystemExit; `pktlab run` exits with 0 if the scenario passed or was
skipped, 1 if it failed.
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys

from testbed.cli.common import attach, console, out, run_option
from testbed.console import data_table, styled


def _stdout_kind() -> tuple[str, str | None]:
    """("file", its path) / ("pipe", None) / ("terminal", None): where the shell sent our output."""
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):
        return "other", None
    if stat.S_ISFIFO(mode):
        return "pipe", None
    if stat.S_ISREG(mode):
        return "file", os.readlink("/proc/self/fd/1") if os.path.exists("/proc/self/fd/1") else None
    return "terminal", None


def shell_cut(words: list[str], json_out: bool) -> str | None:
    """Why the fault words look cut by the shell, or None: an unquoted `a->b` becomes `a-` plus an output
    redirection to a file b; an unquoted `a,b|c,d` becomes `a,b` piped into a command c,d."""
    where, path = _stdout_kind()
    if len(words) > 1 and len(words[1]) > 1 and words[1].endswith("-"):
        made = f" (the shell made the file {path}: remove it)" if where == "file" and path else ""
        return (f"{words[1]!r} looks cut by the shell: unquoted, `{words[1]}>NODE` sends pktlab's output to a "
                f"file named NODE{made}. Quote it, '{words[1]}>NODE', or write it without quotes as "
                f"{words[1][:-1]}:NODE (one way) or {words[1]}NODE (both ways)")
    if words[0] == "partition" and len(words) > 1 and not re.search(r"[|/]", words[1]) and where == "pipe" \
            and not json_out:
        return (f"partition {words[1]} has one side and pktlab's output goes into a pipe: an unquoted "
                f"`{words[1]}|...` is cut by the shell there. Write the two sides as {words[1]}/c,d (no quoting "
                f"needed) or quote them, '{words[1]}|c,d'; one side alone (against every other node) works "
                "without a pipe")
    return None


def cmd_fault(args):
    from testbed import faults as F
    cut = shell_cut(args.fault, args.json)
    if cut:
        raise SystemExit(f"pktlab fault: {cut}")
    mesh = attach(args)
    try:
        fault = F.apply_fault(mesh, " ".join(args.fault), check=not args.no_check)
    except F.FaultCheckFailed as e:
        raise RuntimeError(f"{e}\nthe fault was removed again; to apply it without this check: "
                           f"pktlab fault --no-check {' '.join(args.fault)}") from None
    except F.FaultError as e:
        raise RuntimeError(str(e)) from None
    if args.json:
        print(json.dumps(fault.to_dict()))
        return
    console.print(styled((fault.id, "yellow"), f" {fault.describe()}" + (" (done)" if fault.instant else "")))
    if "effect" in fault.state:
        console.print(f"  takes effect: {fault.state['effect']}")


def cmd_heal(args):
    from testbed import faults as F
    mesh = attach(args)
    try:
        healed = F.heal(mesh, args.fault, check=not args.no_check)
    except F.FaultCheckFailed as e:
        raise RuntimeError(f"{e}\nthe fault is removed from the run's list; to heal without this check: "
                           f"pktlab heal --no-check {args.fault or ''}".rstrip()) from None
    except F.FaultError as e:
        raise RuntimeError(str(e)) from None
    if not healed:
        console.print("no active faults")
    for f in healed:
        console.print(styled(("healed", "green"), f" {f.id} {f.describe()}"
                             + (f": {f.state['healed']}" if f.state.get("healed") else "")))


def cmd_faults(args):
    from testbed import faults as F
    mesh = attach(args)
    active = F.active_faults(mesh)
    if args.json:
        print(json.dumps([f.to_dict() for f in active]))
        return
    t = data_table("id", "fault", "takes effect", title=f"active faults of run {mesh.run.name}")
    for f in active:
        t.add_row(f.id, f.describe(), f.state.get("effect", ""))
    out.print(t)


def cmd_run(args):
    from testbed import scenario as S
    if args.list:
        for p in S.bundled():
            s = S.load_scenario(str(p))
            out.print(styled((p.stem, "bold"), f": {' '.join(str(s.get('description', '')).split())}"))
        return
    if not args.scenario:
        raise SystemExit("pktlab run: give a SCENARIO (file or bundled name; --list shows them)")
    if os.geteuid() != 0:
        raise SystemExit("pktlab: this command needs root (network namespaces): run it with sudo")
    try:
        result = S.run_with_progress(args.scenario, seed=args.seed, keep=args.keep, console=console,
                                     mesh_options={"backend": "ssh", "hosts": args.hosts} if args.hosts else None)
    except S.ScenarioError as e:
        raise RuntimeError(str(e)) from None
    if result.kept_run:
        console.print(f"kept run {result.kept_run}: pktlab status --run {result.kept_run}; remove it with "
                      f"pktlab down --run {result.kept_run}")
    if result.records:
        console.print(f"the run's journal, events and agent logs are kept in {result.records}")
    if args.json:
        print(json.dumps({"name": result.name, "status": result.status, "seed": result.seed,
                          "reason": result.reason, "run_dir": result.run_dir, "timeline": result.timeline,
                          "kept_run": result.kept_run, "records": result.records,
                          "checks": [vars(c) for c in result.checks]}))
    if not result.ok:
        sys.exit(1)


def register(add) -> None:
    from testbed.faults import KINDS, LINK_FORMS
    sp = add("fault", cmd_fault, f"""apply a fault to a running mesh and check that it bites:
  pktlab fault loss n1-n2 10%          both directions (also n1--n2)
  pktlab fault delay n1:n2 50ms        one way, n1's end towards n2 (also 'n1->n2', quoted: > is the shell's)
  pktlab fault partition a,b/c,d       (also 'a,b|c,d', quoted: | is the shell's; a,b alone: against the rest)
  pktlab fault crash n3
links: {LINK_FORMS}""")
    run_option(sp)
    sp.add_argument("fault", nargs="+", metavar="FAULT",
                    help=f"KIND TARGET [VALUE] [key=value ...]; kinds: {', '.join(KINDS)}")
    sp.add_argument("--no-check", action="store_true", help="do not measure that the fault takes effect")
    sp.add_argument("--json", action="store_true")

    sp = add("heal", cmd_heal, "remove one active fault (by id) or all of them, and check the baseline is back")
    run_option(sp)
    sp.add_argument("fault", nargs="?", metavar="FAULT_ID")
    sp.add_argument("--no-check", action="store_true", help="do not measure that the fault is gone")

    sp = add("faults", cmd_faults, "the active faults of a run")
    run_option(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("run", cmd_run, "run a scenario (file or bundled name) on a fresh mesh; exit 1 if it fails")
    sp.add_argument("scenario", nargs="?", metavar="SCENARIO")
    sp.add_argument("--seed", type=int, help="override the scenario's seed (topology, keys, random choices)")
    sp.add_argument("--keep", action="store_true", help="leave the mesh running afterwards")
    sp.add_argument("--list", action="store_true", help="list the bundled scenarios")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.add_argument("--hosts", metavar="INVENTORY", help="build the scenario's mesh on these SSH hosts")
