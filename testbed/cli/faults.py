"""`pktlab fault`, `pktlab heal`, `pktlab faults` and `pktlab run SCENARIO`.

Errors are raised as RuntimeError (exit 1) or SystemExit; `pktlab run` exits with 0 if the scenario passed or was
skipped, 1 if it failed.
"""
from __future__ import annotations

import json
import os
import sys

from rich.table import Table

from testbed.cli.common import attach, console, out, run_option
from testbed.console import styled


def cmd_fault(args):
    from testbed import faults as F
    mesh = attach(args)
    try:
        fault = F.apply_fault(mesh, " ".join(args.fault), check=not args.no_check)
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
    t = Table(title=f"active faults of run {mesh.run.name}")
    for col in ("id", "fault", "takes effect"):
        t.add_column(col)
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
        result = S.run_with_progress(args.scenario, seed=args.seed, keep=args.keep, console=console)
    except S.ScenarioError as e:
        raise RuntimeError(str(e)) from None
    if args.json:
        print(json.dumps({"name": result.name, "status": result.status, "seed": result.seed,
                          "reason": result.reason, "run_dir": result.run_dir, "timeline": result.timeline,
                          "checks": [vars(c) for c in result.checks]}))
    if not result.ok:
        sys.exit(1)


def register(add) -> None:
    from testbed.faults import KINDS
    sp = add("fault", cmd_fault, "apply a fault to a running mesh and check that it bites: pktlab fault loss "
                                 "n1--n2 10%")
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
