"""The backend seam: what a run needs from the machines its nodes live on.

A backend places the nodes, creates their namespaces and links, starts and stops their agents, runs commands inside
them, and cleans up. Everything else (agent configs, reachability, faults, scenarios, the report, the pytest plugin)
is written once against this seam and the agents' control API, so it works the same on every backend:

    netns    (backends/netns.py)  this machine: a namespace per node, veth links           (the default)
    ssh      (backends/ssh.py)    SSH hosts from an inventory, driven by Ansible; links between hosts are VXLAN
    vagrant  (backends/vm.py)     VMs made by Vagrant (libvirt) from the topology, then driven like SSH hosts

The agents' control API is always reached through `run/nodes/NODE/agent.sock` on the orchestrator: the agent's own
socket on this machine, or a local socket forwarded over SSH to the agent's socket on its host
(backends/remote_control.py). So `Mesh.agent(node)`, the run monitor and anything else that speaks the API need no
backend at all.

The journal says which backend built a run (`state["backend"]`, absent for namespace runs made before there were
others), so a later `pktlab` command, a fault helper or `cleanup` after a crash gets the same backend back from the
journal alone (`for_run`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import ClassVar

from testbed.runs import Run


class BackendError(RuntimeError):
    """Something on the machines of a run failed; the message names the node or host."""


class Backend:
    """What a run needs from the machines its nodes live on (see the module docstring)."""

    name: ClassVar[str] = ""
    parallel_execs: ClassVar[int] = 64   # commands `Mesh` starts at once inside nodes (pings for reachability)

    def __init__(self, run: Run, topo=None):
        self.run = run
        self.topo = topo     # None when only the journal is known (status, cleanup)

    # -- building (topology needed) -------------------------------------------------------------------------
    def build(self, progress) -> None:
        """Place the nodes, create their namespaces and links, record them in the journal (`nodes`, `links`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what building held (descriptors, connections); the run keeps running."""

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, groups: list[list[str]], progress=lambda step, done, total: None) -> None:
        """One agent process per group of nodes, from the configs in run/nodes/NODE/agent.json; records each node's
        process in `run.state["agents"]` (the caller saves the journal)."""
        raise NotImplementedError

    def stop_agent(self, node: str, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the node's agent process and wait until it is gone."""
        raise NotImplementedError

    def signal_agent(self, node: str, sig) -> None:
        """Send a signal to the node's agent process if it runs (pause: SIGSTOP, resume: SIGCONT)."""
        raise NotImplementedError

    def agent_state(self, node: str) -> str | None:
        """The agent process's state letter (R, S, T, ...), or None when it does not run."""
        raise NotImplementedError

    # -- inside nodes --------------------------------------------------------------------------------------------
    def popen(self, node: str, argv: list[str], tty: bool = False, **popen_kwargs) -> subprocess.Popen:
        """Start a command inside a node (tagged with the run, so cleanup finds it); a local process either way,
        whose stdin/stdout/stderr are the command's."""
        raise NotImplementedError

    def set_link_state(self, ends: list, up: bool) -> None:
        """Take link ends (testbed.faults.End) down or up inside their nodes."""
        raise NotImplementedError

    def send_udp(self, node: str, src: str, dst: str, sport: int, dport: int, payloads: list[bytes]) -> None:
        """UDP datagrams with a chosen source address and port, sent from inside a node (a raw socket there)."""
        raise NotImplementedError

    # -- status and records -----------------------------------------------------------------------------------
    def node_states(self) -> dict[str, dict]:
        """node -> {"alive": namespace exists, "agent": agent runs (None if it never started), "host": where}."""
        raise NotImplementedError

    def collect_logs(self) -> None:
        """Bring every node's agent.log and agent.stderr into run/nodes/NODE/ (nothing to do where they are)."""


def create(kind: str, run: Run, topo, **options) -> Backend:
    """The backend `kind` for a new run; records the choice in the journal."""
    if kind == "netns":
        from testbed.backends.netns import NetnsBackend
        if options:
            raise BackendError(f"the netns backend takes no {', '.join(sorted(options))} (those are for ssh hosts)")
        return NetnsBackend(run, topo)
    if kind == "ssh":
        from testbed.backends.ssh import SshBackend
        return SshBackend.for_new_run(run, topo, **options)
    if kind == "vagrant":
        from testbed.backends.vm import VagrantBackend
        return VagrantBackend.for_new_run(run, topo, **options)
    raise BackendError(f"backend {kind!r}: use netns, ssh (with an inventory of hosts) or vagrant")


def for_run(run: Run, topo=None) -> Backend:
    """The backend that built an existing run, from its journal."""
    kind = run.state.get("backend", "netns")
    if kind == "netns":
        from testbed.backends.netns import NetnsBackend
        return NetnsBackend(run, topo)
    if kind in ("ssh", "vagrant"):   # a Vagrant run, once up, is SSH hosts that happen to be VMs
        from testbed.backends.ssh import SshBackend
        return SshBackend(run, topo)
    raise BackendError(f"run {run.name}: unknown backend {kind!r} in its journal")


def clean_elsewhere(run: Run, skip_unreachable: bool = False) -> None:
    """What a run has beyond this machine's own processes and namespaces: its VMs, or its part on SSH hosts
    (called by runs.destroy before it stops the local processes). Local leftovers of a crashed orchestrator (a
    playbook or `vagrant up` still running) are stopped first, so they cannot go on building while this cleans."""
    keep = {d["pid"] for d in run.state.get("vagrant", {}).get("libvirt", {}).values() if "pid" in d}
    stop_local(run, keep)
    if run.state.get("backend") == "vagrant":
        from testbed.backends.vm import destroy_vms
        destroy_vms(run)          # the VMs go, and with them everything the run had on them
    elif run.state.get("hosts"):
        from testbed.backends.ssh import clean_hosts
        clean_hosts(run, skip_unreachable)


def stop_local(run: Run, keep=frozenset(), timeout: float = 10.0) -> None:
    """SIGKILL the run's processes on this machine (tagged or named in its journal) but those in keep."""
    deadline = time.monotonic() + timeout
    while (pids := [p for p in run.processes() if p not in keep]) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)       # our own children must not stay as zombies
            except ChildProcessError:
                pass
        time.sleep(0.05)
