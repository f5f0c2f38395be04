"""`pktlab lab list | show N | start N | answer N KEY=VALUE ... | check N | measure | stop`: the teaching labs
(testbed/labs/)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from testbed.cli.common import Bars, console, need_root, out
from testbed.console import styled


def _labs():
    from testbed.labs import catalog, session
    return catalog, session


def _show_task(run_or_lab, facts=None) -> None:
    lab = getattr(run_or_lab, "lab", run_or_lab)
    out.print(Markdown(lab.instructions))
    if facts:
        t = Table("your lab's values", "", title=None, show_header=False)
        for k, v in facts.items():
            t.add_row(k, str(v))
        out.print(t)
    out.print("answers this lab takes: " + ", ".join(f"{k} ({v})" for k, v in lab.answers.items()))


def cmd_lab(args):
    catalog, session = _labs()
    try:
        VERBS[args.verb](args, catalog, session)
    except catalog.LabError as e:
        raise SystemExit(f"pktlab lab: {e}") from None


def lab_list(args, catalog, session):
    t = Table("lab", "title", "topics", "needs")
    for lab in catalog.all_labs():
        t.add_row(str(lab.number), lab.title, ", ".join(lab.topics), ", ".join(lab.needs) or "-")
    out.print(t)
    out.print("pktlab lab show N prints a lab's task; pktlab lab start N builds its mesh")


def lab_show(args, catalog, session):
    lab = catalog.get(args.number)
    facts = None
    try:
        run = session.current(lab.number)
        facts = run.facts
    except catalog.LabError:
        pass
    _show_task(lab, facts)


def lab_start(args, catalog, session):
    need_root()
    lab = catalog.get(args.number)
    console.print(f"lab {lab.number}: {lab.title}: building its mesh")
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        run = session.start(lab.number, seed=args.seed, progress=Bars(progress))
    _show_task(run, run.facts)
    console.print(styled((f"lab {lab.number} is running", "green"), f" (run {run.mesh.run.name}, seed {run.seed}); "
                         f"pktlab lab check {lab.number} says how far you are"))


def lab_answer(args, catalog, session):
    pairs = {}
    if args.file:
        import yaml
        data = yaml.safe_load(Path(args.file).read_text())
        if not isinstance(data, dict):
            raise catalog.LabError(f"{args.file}: expected a mapping of answer: value")
        pairs.update({str(k): str(v) for k, v in data.items()})
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise catalog.LabError(f"answer {pair!r}: write NAME=VALUE")
        pairs[key.strip()] = value
    run = session.record_answers(args.number, pairs) if pairs else session.current(args.number)
    t = Table("answer", "value", "what to give", title=f"lab {run.lab.number} answers")
    for k, what in run.lab.answers.items():
        t.add_row(k, run.answers.get(k, "-"), what)
    out.print(t)


def lab_check(args, catalog, session):
    need_root()
    run, results = session.check(args.number)
    if args.json:
        print(json.dumps([vars(c) for c in results]))
    else:
        t = Table("", "check", "seen", "hint", title=f"lab {run.lab.number}: {run.lab.title}")
        for c in results:
            t.add_row(styled(("✓", "green")) if c.ok else styled(("✗", "red")), c.name, c.detail,
                      "" if c.ok else c.hint)
        out.print(t)
        passed = sum(c.ok for c in results)
        out.print(styled((f"lab {run.lab.number} solved", "green")) if passed == len(results) else
                  f"{passed} of {len(results)} checks pass")
    if not all(c.ok for c in results):
        sys.exit(1)


def lab_measure(args, catalog, session):
    need_root()
    from testbed.labs.checking import flood
    run = session.current()
    senders = [s for s in args.senders.split(",") if s]
    for n in senders + [args.to]:
        if n not in run.mesh.topo.nodes:
            raise catalog.LabError(f"no node {n!r} in the lab's mesh (nodes: {', '.join(run.mesh.topo.nodes)})")
    console.print(f"flooding {args.to} from {', '.join(senders)} for {args.seconds:g} s (UDP, 2.2 mbit/s each)")
    got = flood(run.mesh, senders, args.to, seconds=args.seconds)
    t = Table("sender", "kbit/s received", "share")
    total = sum(got.values()) or 1
    for s, v in got.items():
        t.add_row(s, f"{v:.0f}", f"{v / total:.0%}")
    out.print(t)


def lab_stop(args, catalog, session):
    need_root()
    name = session.stop()
    console.print(f"lab run {name} removed" if name else "no lab is running")


VERBS = {"list": lab_list, "show": lab_show, "start": lab_start, "answer": lab_answer, "check": lab_check,
         "measure": lab_measure, "stop": lab_stop}


def register(add) -> None:
    sp = add("lab", cmd_lab, "teaching labs: pktlab lab list | show N | start N | answer N KEY=VALUE | check N | "
                             "measure | stop")
    verbs = sp.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("list", help="the labs")
    p = verbs.add_parser("show", help="print a lab's task")
    p.add_argument("number", metavar="N")
    p = verbs.add_parser("start", help="build a lab's mesh and print its task")
    p.add_argument("number", metavar="N")
    p.add_argument("--seed", type=int, help="another seed: other keys, labels and hidden faults")
    p = verbs.add_parser("answer", help="record answers (NAME=VALUE ...) or show them")
    p.add_argument("number", metavar="N")
    p.add_argument("pairs", nargs="*", metavar="NAME=VALUE")
    p.add_argument("--file", help="a YAML or JSON file of NAME: VALUE")
    p = verbs.add_parser("check", help="check the running lab: what is right, what is not, hints")
    p.add_argument("number", metavar="N")
    p.add_argument("--json", action="store_true")
    p = verbs.add_parser("measure", help="UDP floods from nodes to one node: kbit/s each gets")
    p.add_argument("--from", dest="senders", required=True, metavar="A,B", help="sending nodes")
    p.add_argument("--to", required=True, metavar="NODE", help="receiving node")
    p.add_argument("--seconds", type=float, default=10.0)
    verbs.add_parser("stop", help="take the lab's mesh down")
