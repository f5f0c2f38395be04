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
journal alone (`testbed.backends.for_run`; the package's __init__ chooses and creates backends, so that this module
knows none of them).
"""
from __future__ import annotations

import signal
import subprocess
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

    def name_nodes(self, hosts_file, addresses: dict[str, str]) -> None:
        """Make node names resolve inside the nodes (`ping r3c3`): write the run's hosts file and put it in place
        where the backend can (testbed/hosts.py); nothing where it cannot."""

    def collect_logs(self) -> None:
        """Bring every node's agent.log and agent.stderr into run/nodes/NODE/ (nothing to do where they are)."""

