"""The running lab: one mesh named "lab", and <run>/lab.json beside its journal.

    lab.json  {"lab": 3, "slug": "...", "seed": 5, "facts": {...},      shown to the student with the task
               "answers": {"server": "r4", ...},                          what `pktlab lab answer` recorded
               "private": "<base64 JSON>"}                                 baselines and hidden faults

Hidden faults are applied with the fault kinds' own apply and check (so they are measured to bite) but not recorded
in the run's faults.json or event log: `pktlab faults` and the live view do not list them; the symptoms are there
for the student's tools to find. `private` is base64 so that a glance at the run directory does not give the answer
away (the student is root: it is a courtesy, not a secret).

A checker sees a LabRun: the Mesh, the answers, its private state, a seeded random generator and the helpers
below; it returns testbed.labs.checking.Check results.
"""
from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field

from testbed.labs.catalog import Lab, LabError, get, missing_roles
from testbed.labs.checking import Check

RUN_NAME = "lab"
STATE_FILE = "lab.json"


@dataclass
class LabRun:
    lab: Lab
    mesh: object                      # testbed.mesh.Mesh
    seed: int
    facts: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    private: dict = field(default_factory=dict)

    @property
    def rng(self) -> random.Random:
        """The same choices for the same lab and seed."""
        return random.Random(f"lab{self.lab.number}:{self.seed}")

    def hide_fault(self, spec) -> dict:
        """Apply a fault the student has to find: checked to bite, kept out of the run's fault list and events."""
        from testbed import faults as F
        fault = F.parse_fault(spec)
        fault.id = f"hidden{len(self.private.get('hidden', [])) + 1}"
        fault.baseline(self.mesh)
        fault.apply(self.mesh)
        fault.state["effect"] = fault.check(self.mesh)
        self.private.setdefault("hidden", []).append(fault.to_dict())
        return fault.to_dict()

    def answer(self, name: str) -> str | None:
        value = self.answers.get(name)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def save(self) -> None:
        data = {"lab": self.lab.number, "slug": self.lab.slug, "seed": self.seed, "facts": self.facts,
                "answers": self.answers,
                "private": base64.b64encode(json.dumps(self.private).encode()).decode()}
        path = self.mesh.run.path(STATE_FILE)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def _load_state(mesh) -> dict:
    try:
        return json.loads(mesh.run.path(STATE_FILE).read_text())
    except FileNotFoundError:
        raise LabError(f"run {mesh.run.name} is not a lab (no {STATE_FILE}); pktlab lab start N") from None


def current(number=None) -> LabRun:
    """The running lab (checked to be lab `number` when one is given)."""
    from testbed.mesh import Mesh
    from testbed.runs import RunError
    try:
        mesh = Mesh.attach(RUN_NAME)
    except RunError:
        raise LabError("no lab is running: pktlab lab start N") from None
    data = _load_state(mesh)
    lab = get(data["lab"])
    if number is not None and get(number).number != lab.number:
        raise LabError(f"lab {lab.number} is running, not lab {int(number)}: pktlab lab stop, then pktlab lab start "
                       f"{int(number)}")
    return LabRun(lab, mesh, data["seed"], data.get("facts", {}), data.get("answers", {}),
                  json.loads(base64.b64decode(data.get("private") or "e30=")))


def start(number, seed: int | None = None, progress=None) -> LabRun:
    """Build the lab's mesh, run its setup (facts, baselines, hidden faults) and save lab.json. A lab whose
    roles this build does not run is taken down again with a LabError that says what is missing."""
    from testbed.mesh import Mesh
    from testbed.runs import RunError, list_runs
    lab = get(number)
    if any(r.name == RUN_NAME for r in list_runs()):
        raise LabError("a lab is already running: pktlab lab stop first")
    checker = lab.checker()
    kwargs = {"name": RUN_NAME, "seed": seed}
    if progress is not None:
        kwargs["progress"] = progress
    try:
        mesh = Mesh.up(str(lab.topology), **kwargs)
    except RunError as e:
        raise LabError(f"lab {lab.number}: the mesh did not come up: {e}") from None
    try:
        missing = missing_roles(lab, lambda role: _status_of_role(mesh, role))
        if missing:
            raise LabError(f"lab {lab.number} needs the {', '.join(missing)} role(s), which this build of pktlab "
                           f"does not run yet (no agent reports them); the other labs do not need them")
        run = LabRun(lab, mesh, mesh.run.state["seed"])
        setup = getattr(checker, "setup", None)
        if setup is not None:
            setup(run)
        run.save()
    except BaseException:
        mesh.down()
        raise
    return run


def _status_of_role(mesh, role: str) -> dict | None:
    from node.agent.control_client import AgentError
    nodes = mesh.topo.nodes_with_role(role)
    if not nodes:
        return None
    try:
        return mesh.agent(nodes[0]).call("status", timeout=3)
    except (OSError, AgentError, ValueError):
        return None


def record_answers(number, pairs: dict) -> LabRun:
    """Merge answers (name -> text; an empty text removes one) into the running lab's lab.json."""
    run = current(number)
    unknown = sorted(set(pairs) - set(run.lab.answers))
    if unknown:
        raise LabError(f"lab {run.lab.number} takes no answer {', '.join(map(repr, unknown))}; it takes: "
                       + ", ".join(run.lab.answers))
    for k, v in pairs.items():
        if str(v).strip():
            run.answers[k] = str(v).strip()
        else:
            run.answers.pop(k, None)
    run.save()
    return run


def check(number) -> tuple[LabRun, list[Check]]:
    run = current(number)
    results = run.lab.checker().check(run)
    run.save()          # a checker may remember what it measured
    return run, results


def stop() -> str | None:
    """Take the lab's mesh down; returns the run name, or None when no lab was running."""
    from testbed.mesh import Mesh
    from testbed.runs import RunError
    try:
        mesh = Mesh.attach(RUN_NAME)
    except RunError:
        return None
    mesh.down()
    return RUN_NAME
