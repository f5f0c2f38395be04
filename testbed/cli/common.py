"""What every group of `pktlab` verbs shares: the two consoles, the root check, progress bars, the --run option,
attaching to a run."""
from __future__ import annotations

import os

from rich.progress import Progress

from testbed import runs
from testbed.console import make_console

console = make_console(stderr=True)   # messages to the user
out = make_console()                  # data: tables, results

RUN_HELP = f"which run (default: ${runs.TAG_VAR}, else the last run started from this shell, else the only one)"


def need_root():
    if os.geteuid() != 0:
        raise SystemExit("pktlab: this command needs root (network namespaces, veth, tc): run it with sudo")


class Bars:
    """One rich progress bar per build step."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks = {}

    def __call__(self, step, done, total):
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=done, total=total)


def run_option(sp):
    sp.add_argument("--run", metavar="NAME", help=RUN_HELP)


def attach(args):
    """The Mesh of the run the user named (or the current one)."""
    need_root()
    from testbed.mesh import Mesh    # the mesh pulls in the backends: only for verbs that need a running mesh
    return Mesh.attach(args.run)


def node_pid(run, node):
    rec = run.state.get("nodes", {}).get(node)
    if rec is None:
        names = list(run.state.get("nodes", {}))
        raise runs.RunError(f"run {run.name} has no node {node!r} (nodes: {', '.join(names[:12])}"
                            + (" ..." if len(names) > 12 else "") + ")")
    return rec["pid"]
