"""Applying and healing faults on a run, and the run's record of the active ones: <run>/faults.json (under a file
lock, so any process sees the same list) plus a `fault` / `heal` event in the run's event log."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os

from testbed.events import EventLog
from testbed import runs
from testbed.faults.base import Fault, FaultCheckFailed, FaultError, parse_fault

FAULTS_FILE = "faults.json"


def apply_fault(mesh, spec, check: bool = True) -> Fault:
    """Apply a fault to a running mesh, record and log it; with check, measure that it bites (if it does not,
    it is healed again and FaultCheckFailed raised). A fault that fails leaves its id for the next one."""
    fault = parse_fault(spec)
    with _locked(mesh):
        data = _read(mesh)
        fault.id = f"f{data['next']}"
        data["next"] += 1
        _write(mesh, data)
    try:
        fault.baseline(mesh)
        try:
            fault.apply(mesh)
        except BaseException:
            with contextlib.suppress(Exception):     # undo whatever part of it was applied
                fault.heal(mesh)
            raise
    except FaultError as e:
        _release_id(mesh, fault.id)
        raise FaultError(f"{e}{suspects(mesh, fault)}") from None
    except BaseException:
        _release_id(mesh, fault.id)
        raise
    mesh.run.save()
    where = _event_fields(fault)
    with _event_log(mesh) as log:
        # (agent restarts are logged by the run monitor, testbed/monitor.py, which sees the uptime reset)
        log.append("fault", where["node"], where["link"], type=fault.kind, id=fault.id,
                   description=fault.describe(), **{k: v for k, v in fault.params().items()})
    if not fault.instant:
        with _locked(mesh):
            data = _read(mesh)
            data["active"].append(fault.to_dict())
            _write(mesh, data)
    if check:
        try:
            fault.state["effect"] = fault.check(mesh)
        except FaultError as e:
            context = suspects(mesh, fault)
            if not fault.instant:
                heal(mesh, fault.id, check=False)
            _release_id(mesh, fault.id)
            raise FaultCheckFailed(f"{e}{context}") from None
        _update_state(mesh, fault)
    if fault.instant:
        with _event_log(mesh) as log:
            log.append("heal", where["node"], where["link"], id=fault.id, instant=True)
    return fault


def suspects(mesh, fault: Fault) -> str:
    """What else may explain a check's failure: the other active faults and the agents that are down."""
    others = [f"{f.id} {f.describe()}" for f in active_faults(mesh) if f.id != fault.id]
    down = [n for n, rec in mesh.run.state.get("agents", {}).items()
            if not runs.alive(rec.get("pid", 0), rec.get("start"))]
    parts = ([f"other active faults: {'; '.join(others)}"] if others else []) + \
            ([f"agents down: {', '.join(down[:10])}{' ...' if len(down) > 10 else ''}"] if down else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _release_id(mesh, fault_id: str) -> None:
    """Give a failed fault's id back, unless another fault took a later one meanwhile."""
    with _locked(mesh):
        data = _read(mesh)
        if f"f{data['next'] - 1}" == fault_id:
            data["next"] -= 1
            _write(mesh, data)


def heal(mesh, fault_id: str | None = None, check: bool = True) -> list[Fault]:
    """Heal one active fault (by id) or all of them (newest first); with check, measure the baseline is back.
    Returns the healed faults; each one's state["healed"] says what was measured."""
    faults = active_faults(mesh)
    if fault_id is not None:
        faults = [f for f in faults if f.id == fault_id]
        if not faults:
            raise FaultError(f"no active fault {fault_id!r} in run {mesh.run.name}")
    problems = []
    for fault in reversed(faults):
        fault.heal(mesh)
        mesh.run.save()
        with _locked(mesh):
            data = _read(mesh)
            data["active"] = [d for d in data["active"] if d["id"] != fault.id]
            _write(mesh, data)
        where = _event_fields(fault)
        with _event_log(mesh) as log:
            log.append("heal", where["node"], where["link"], id=fault.id, type=fault.kind)
    if check:      # in the order of the heals: a node brought back first is waited for before links are measured
        for fault in reversed(faults):
            try:
                fault.state["healed"] = fault.check_healed(mesh)
            except FaultError as e:
                problems.append(f"{e}{suspects(mesh, fault)}")
    if problems:
        raise FaultCheckFailed("; ".join(problems))
    return faults


def active_faults(mesh) -> list[Fault]:
    return [parse_fault(d) for d in _read(mesh)["active"]]


def faults_of_run(run) -> list[dict]:
    """The active faults of a run as {id, kind, description}, from its record alone (no mesh needed)."""
    try:
        with open(run.path(FAULTS_FILE)) as f:
            active = json.load(f).get("active", [])
    except (OSError, ValueError):
        return []
    out = []
    for d in active:
        try:
            out.append({"id": d.get("id"), "kind": d.get("kind"), "description": parse_fault(d).describe()})
        except FaultError:
            out.append({"id": d.get("id"), "kind": d.get("kind"), "description": str(d.get("kind"))})
    return out


def _update_state(mesh, fault: Fault) -> None:
    if fault.instant:
        return
    with _locked(mesh):
        data = _read(mesh)
        for d in data["active"]:
            if d["id"] == fault.id:
                d["state"] = fault.state
        _write(mesh, data)


@contextlib.contextmanager
def _locked(mesh):
    with open(mesh.run.path(FAULTS_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read(mesh) -> dict:
    try:
        with open(mesh.run.path(FAULTS_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"next": 1, "active": []}
    except ValueError as e:
        raise FaultError(f"unreadable {mesh.run.path(FAULTS_FILE)}: {e}") from None


def _write(mesh, data: dict) -> None:
    tmp = mesh.run.path(FAULTS_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, mesh.run.path(FAULTS_FILE))


def _event_log(mesh) -> EventLog:
    return EventLog(mesh.run.path("events.jsonl"))


def _event_fields(fault: Fault) -> dict:
    node = getattr(fault, "node", None) or None
    link = getattr(fault, "link", None) or None
    return {"node": node, "link": link}
