"""Runs: the run directory, its state journal, and removing exactly what a run created.

A run lives in `$PKTLAB_HOME/<name>/` (default /run/pktlab): `state.json` (the journal), the topology it was built
from, agent configs, sockets and logs. Every process of a run carries `PKTLAB_RUN=<run id>` in its environment and
every interface carries `pktlab:<run id>:...` as its alias; the namespaces exist only as long as the run's processes
hold them (they are not bind-mounted anywhere). So removing a run is: stop the processes the journal names or the tag
marks (or that sit inside the run's namespaces), wait until those namespaces are gone (their interfaces and tc rules
go with them), delete the directory. Nothing is ever matched by name pattern.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.waiting import wait_until

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
TAG_VAR = "PKTLAB_RUN"


class RunError(RuntimeError):
    pass


def home() -> Path:
    return Path(os.environ.get("PKTLAB_HOME", "/run/pktlab"))


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name: [0] is the state, [19] the start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks: together with the pid it names a process uniquely."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, start: int | None) -> bool:
    """The process the journal recorded still runs (not a recycled pid, not a zombie)."""
    fields = _stat(pid) if pid > 0 else None
    return bool(fields) and int(fields[19]) == start and fields[0] not in (b"Z", b"X")


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _has_tag(pid: int, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return tag in f.read().split(b"\0")
    except OSError:
        return False


@dataclass
class Run:
    name: str
    dir: Path
    state: dict

    @property
    def id(self) -> str:
        return self.state["id"]

    @property
    def journal(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, self.journal)

    def path(self, *parts) -> Path:
        return self.dir.joinpath(*parts)

    # -- status -----------------------------------------------------------------------------------------
    def owner_alive(self) -> bool:
        owner = self.state.get("owner") or {}
        return alive(owner.get("pid", 0), owner.get("start"))

    def nodes_alive(self) -> tuple[int, int]:
        nodes = self.state.get("nodes", {})
        up = sum(alive(n["pid"], n["start"]) for n in nodes.values())
        return up, len(nodes)

    def condition(self) -> str:
        """ready, building, stopping, or stale (the orchestrator died mid-way, or the namespaces are gone)."""
        st = self.state.get("status", "building")
        if st in ("building", "stopping") and not self.owner_alive():
            return "stale"
        if st == "ready":
            up, total = self.nodes_alive()
            if up < total:
                return "stale"
        return st

    # -- process discovery --------------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Every live process of this run: named in the journal, tagged with the run id, or inside its namespaces."""
        me = os.getpid()
        tag = f"{TAG_VAR}={self.id}".encode()
        inodes = {n.get("netns") for n in self.state.get("nodes", {}).values()} - {None}
        found = set()
        extra = [self.state["monitor"]] if self.state.get("monitor") else []
        for entry in list(self.state.get("nodes", {}).values()) + list(self.state.get("agents", {}).values()) + extra:
            if alive(entry["pid"], entry.get("start")):
                found.add(entry["pid"])
        for pid in _all_pids():
            if pid == me or pid in found:
                continue
            if _has_tag(pid, tag) or (inodes and netns_inode(pid) in inodes):
                found.add(pid)
        found.discard(me)
        return sorted(found)


def new_run(name: str | None, base: str, source: str) -> Run:
    """Create the run directory and journal before any kernel object exists, so a crash can always be cleaned."""
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        if not NAME_RE.match(name):
            raise RunError(f"run name {name!r}: use 1-24 lower-case letters, digits or '-', starting with a "
                           "letter or digit")
        candidates = [name]
    else:
        stem = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:20] or "run"
        candidates = [stem] + [f"{stem}-{i}" for i in range(2, 1000)]
    for cand in candidates:
        d = root / cand
        try:
            d.mkdir()
        except FileExistsError:
            continue
        run = Run(cand, d, {
            "name": cand,
            "id": f"{cand}.{secrets.token_hex(3)}",
            "created": time.time(),
            "status": "building",
            "source": source,
            "owner": {"pid": os.getpid(), "start": proc_start_time(os.getpid())},
            "nodes": {},
            "agents": {},
        })
        run.save()
        return run
    raise RunError(f"a run named {name!r} exists already: pick another --name, or `pktlab down --run {name}`")


def load_run(name: str) -> Run:
    d = home() / name
    try:
        with open(d / "state.json") as f:
            return Run(name, d, json.load(f))
    except FileNotFoundError:
        raise RunError(f"no run named {name!r} (see `pktlab list`)") from None
    except ValueError as e:
        raise RunError(f"run {name!r}: unreadable journal {d / 'state.json'}: {e}") from None


def list_runs() -> list[Run]:
    root = home()
    if not root.is_dir():
        return []
    runs = []
    for d in sorted(root.iterdir()):
        if (d / "state.json").is_file():
            try:
                runs.append(load_run(d.name))
            except RunError:
                continue
    return runs


def pick_run(name: str | None) -> Run:
    """The named run, or the only one there is."""
    if name:
        return load_run(name)
    runs = list_runs()
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise RunError("no pktlab run exists (start one with `pktlab up TOPOLOGY`)")
    raise RunError(f"several runs exist ({', '.join(r.name for r in runs)}): choose one with --run NAME")


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def archive(run: Run, dest: Path) -> Path:
    """Copy what a run recorded (journal, topology, events, counters, configs, logs) to dest, sockets excepted."""
    shutil.copytree(run.dir, dest, ignore=lambda d, names: [n for n in names if n.endswith(".sock")],
                    dirs_exist_ok=True)
    return dest


def destroy(run: Run, grace: float = 2.0, timeout: float = 30.0) -> None:
    """Stop every process of the run, wait for its namespaces to disappear, remove its directory."""
    run.state["status"] = "stopping"
    run.state["owner"] = {"pid": os.getpid(), "start": proc_start_time(os.getpid())}
    try:
        run.save()
    except OSError:
        pass
    # agents first, gently: they remove their own TUN devices and sockets
    agents = [a["pid"] for a in run.state.get("agents", {}).values() if alive(a["pid"], a.get("start"))]
    _signal_all(agents, signal.SIGTERM)
    wait_until(lambda: not any(alive(p, proc_start_time(p)) for p in agents), grace, interval=0.02)

    def all_killed():
        pids = run.processes()
        _signal_all(pids, signal.SIGKILL)
        _reap(pids)
        return not pids
    if not wait_until(all_killed, timeout, interval=0.02):
        raise RunError(f"run {run.name}: processes {run.processes()[:10]} did not stop")
    shutil.rmtree(run.dir, ignore_errors=True)


def _reap(pids) -> None:
    """Collect our own children so they do not linger as zombies (other processes' are reaped by init)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
