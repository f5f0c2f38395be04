"""Runs: the run directory, its state journal, and removing exactly what a run created.

A run lives in `$PKTLAB_HOME/<name>/` (default /run/pktlab): `state.json` (the journal), the topology it was built
from, agent configs, sockets and logs. Every process of a run carries `PKTLAB_RUN=<run id>` in its environment and
every interface carries `pktlab:<run id>:...` as its alias; the namespaces exist only as long as the run's processes
hold them (they are not bind-mounted anywhere). So removing a run is: stop the processes the journal names or the tag
marks (or that sit inside the run's namespaces), wait until those namespaces are gone (their interfaces and tc rules
go with them), delete the directory. Nothing is ever matched by name pattern.
"""
from __future__ import annotations

import contextlib
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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while a run was being built; the message says what became of it."""


def records_home() -> Path:
    """Where pktlab keeps what outlives a run (failed builds, reports): not under the runs' home, so `down` and
    `cleanup` never remove it. $PKTLAB_RECORDS, default /var/tmp/pktlab (kept across reboots)."""
    return Path(os.environ.get("PKTLAB_RECORDS", "/var/tmp/pktlab"))


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


def proc_state(pid: int) -> str:
    """The state letter (R, S, T, ...) of a process, `?` if there is no such process."""
    fields = _stat(pid) if pid > 0 else None
    return fields[0].decode() if fields else "?"


# A route server's agent runs this many nice steps above pktlab's own: a real route server is a machine of its own,
# and on a shared few-core machine a 1000-node mesh's hosts of 30 nodes each otherwise leave it as much CPU as one
# host, and its queue grows until announcements arrive too late to be accepted.
SERVER_PRIORITY = 15


def raise_priority(pid: int) -> None:
    """Run a process (a route server's agent) SERVER_PRIORITY nice steps above ours. With the kernel's autogroup
    scheduling (sched_autogroup_enabled, the default of most distributions) each session (every agent is one) gets
    an equal share whatever its processes' nice, so its autogroup gets the value too (/proc/PID/autogroup).
    Measured at 1000 nodes (load 30): with only the process nice each route server ran 0.34 s of every 5 s, like any
    host of 30 nodes; with the autogroup's the two busiest ran 2.6-2.9 s and caught up."""
    nice = os.getpriority(os.PRIO_PROCESS, 0) - SERVER_PRIORITY
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    with contextlib.suppress(OSError):          # no autogroups in this kernel: the nice value is enough
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))


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
        nodes = _here(self.state.get("nodes", {}).values())
        up = sum(alive(n["pid"], n["start"]) for n in nodes)
        return up, len(nodes)

    def agents_down(self) -> list[str]:
        """Nodes whose agent is not running (died, or stopped on purpose by a crash fault). An agent on another host
        (SSH, VM) has no process here to look at: it counts as down when it was stopped on purpose, and the run
        monitor sees it die (testbed/monitor.py asks its backend)."""
        return [n for n, a in self.state.get("agents", {}).items()
                if (a.get("stopped") if a.get("host") else not alive(a.get("pid", 0), a.get("start")))]

    def condition(self) -> str:
        """ready; degraded (ready, but agents are down); building, stopping; or stale (the orchestrator died
        mid-way, or the namespaces are gone; for nodes on other hosts: the local process that forwards their
        control sockets is gone)."""
        st = self.state.get("status", "building")
        if st in ("building", "stopping") and not self.owner_alive():
            return "stale"
        if st == "ready":
            up, total = self.nodes_alive()
            forwarder = self.state.get("forwarder")
            if up < total or (forwarder and not alive(forwarder["pid"], forwarder.get("start"))):
                return "stale"
            if self.agents_down():
                return "degraded"
        return st

    # -- process discovery --------------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Every live process of this run: named in the journal, tagged with the run id, or inside its namespaces."""
        me = os.getpid()
        tag = f"{TAG_VAR}={self.id}".encode()
        nodes = _here(self.state.get("nodes", {}).values())
        inodes = {n.get("netns") for n in nodes} - {None}
        found = set()
        extra = [self.state[k] for k in ("monitor", "forwarder") if self.state.get(k)]
        for entry in nodes + _here(self.state.get("agents", {}).values()) + extra:
            if alive(entry["pid"], entry.get("start")):
                found.add(entry["pid"])
        for pid in _all_pids():
            if pid == me or pid in found:
                continue
            if _has_tag(pid, tag) or (inodes and netns_inode(pid) in inodes):
                found.add(pid)
        found.discard(me)
        return sorted(found)


def _here(entries) -> list[dict]:
    """Journal entries of processes on this machine (those on SSH hosts and VMs name their "host")."""
    return [e for e in entries if not e.get("host")]


def default_name(base: str) -> str:
    """A run's name when none is given: from its topology's name (`grid:3x3` -> grid-3x3)."""
    return re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:20] or "run"


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
        stem = default_name(base)
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
            "shell": this_shell(),
            "nodes": {},
            "agents": {},
        })
        run.save()
        return run
    raise RunError(f"a run named {name!r} exists already: pick another --name, or `pktlab down --run {name}`"
                   if name else f"runs {stem} to {stem}-999 exist already: remove some (`pktlab list`)")


def load_run(name: str) -> Run:
    if not NAME_RE.match(str(name)):
        raise RunError(f"no run named {str(name)[:60]!r}: run names are 1-24 lower-case letters, digits or '-' "
                       "(see `pktlab list`)")
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


SHELLS = {"bash", "zsh", "sh", "dash", "fish", "ksh", "mksh", "tcsh", "csh", "ash", "busybox", "xonsh", "nu"}


def _comm_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
    return comm, int(stat[stat.rindex(b")") + 2:].split()[1])


def this_shell(pid: int | None = None) -> dict | None:
    """The nearest interactive shell above this process (past sudo, env, make, python ...): which terminal
    session a run was started from, so that a later command there finds it. None when there is none (CI)."""
    pid = os.getppid() if pid is None else pid
    for _ in range(64):
        info = _comm_and_parent(pid)
        if info is None or pid <= 1:
            return None
        comm, parent = info
        if comm in SHELLS:
            return {"pid": pid, "start": proc_start_time(pid)}
        pid = parent
    return None


def current_run_name() -> tuple[str | None, str]:
    """The run a command without --run means, and why: $PKTLAB_RUN (a run name or id: set inside the nodes'
    shells and commands too), else the most recent run started from this shell, else the only run."""
    env = os.environ.get(TAG_VAR)
    if env:
        name = env.split(".", 1)[0] if "." in env else env
        return name, f"${TAG_VAR}"
    runs = list_runs()
    shell = this_shell()
    mine = [r for r in runs if shell and r.state.get("shell") == shell]
    if mine:
        return max(mine, key=lambda r: r.state.get("created", 0)).name, "the last run started from this shell"
    if len(runs) == 1:
        return runs[0].name, "the only run"
    if not runs:
        raise RunError("no pktlab run exists (start one with `pktlab up TOPOLOGY`)")
    raise RunError(f"several runs exist ({', '.join(r.name for r in runs)}) and none was started from this "
                   f"shell: choose one with --run NAME (or set {TAG_VAR}=NAME)")


def pick_run(name: str | None) -> Run:
    """The named run, else the current one (current_run_name)."""
    return load_run(name or current_run_name()[0])


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


def keep_records(run: Run, kind: str) -> Path:
    """Copy a run's records to records_home()/kind/NAME-YYYYmmdd-HHMMSS (a failed build, a failed scenario)."""
    dest = records_home() / kind / f"{run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return archive(run, dest)


def mark_stopping(run: Run) -> None:
    """The journal says the run is being removed, by this process (a crash half-way leaves it stale)."""
    run.state["status"] = "stopping"
    run.state["owner"] = {"pid": os.getpid(), "start": proc_start_time(os.getpid())}
    try:
        run.save()
    except OSError:
        pass


def destroy(run: Run, grace: float = 2.0, timeout: float = 30.0) -> None:
    """Stop every process of the run on this machine, wait for its namespaces to disappear, remove its directory.
    (testbed.backends.destroy first removes what a run has on other hosts or VMs, then calls this.)"""
    mark_stopping(run)
    # agents first, gently: they remove their own TUN devices and sockets
    agents = [a["pid"] for a in _here(run.state.get("agents", {}).values()) if alive(a["pid"], a.get("start"))]
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
