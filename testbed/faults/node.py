"""Faults on a node's agent process: crash (SIGKILL, heal starts it again with the same identity), restart
(instant stop and start) and pause (SIGSTOP, heal sends SIGCONT)."""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import ClassVar

import networkx as nx

from node.agent.control_client import AgentError
from testbed.faults.base import Fault, FaultError, check_node, topology_node
from testbed.faults.measure import ping_stats
from testbed.waiting import wait_until


@dataclass
class NodeFault(Fault):
    """A fault on one node's agent."""
    TARGET: ClassVar[str] = "node"
    node: str = ""

    def check_topology(self, topo) -> None:
        topology_node(topo, self.node)

    def _agent_answers(self, mesh, timeout=1.0) -> dict | None:
        try:
            return mesh.agent(self.node).call("status", timeout=timeout)
        except (OSError, AgentError, ValueError):
            return None

    def _healthy(self, mesh) -> bool:
        st = self._agent_answers(mesh)
        return bool(st and st.get("healthy") and st.get("ip6") == mesh.ip6(self.node))


@dataclass
class Crash(NodeFault):
    kind: ClassVar[str] = "crash"

    def apply(self, mesh) -> None:
        # SIGKILL of the node's own agent process; a node sharing a multi-node agent host (meshes over 60
        # nodes) is shut down alone through its control socket instead (Mesh.stop_agent does that)
        check_node(mesh, self.node)
        self.state["pid"] = mesh.run.state["agents"].get(self.node, {}).get("pid")
        mesh.stop_agent(self.node, signal.SIGKILL, timeout=5)

    def heal(self, mesh) -> None:
        restart_agent(mesh, self.node)

    def check(self, mesh) -> str:
        if mesh.backend.agent_state(self.node) is not None or self._agent_answers(mesh):
            raise FaultError(f"crash {self.node}: the agent still runs")
        return f"agent of {self.node} (pid {self.state.get('pid')}) gone"

    def check_healed(self, mesh) -> str:
        if not wait_until(lambda: self._healthy(mesh), 15):
            raise FaultError(f"{self.kind} {self.node}: the agent is not healthy after restart")
        # a neighbour and the farthest node: the far one had an end-to-end session the restart threw away
        started = time.monotonic()
        lengths = nx.single_source_shortest_path_length(mesh.topo.graph(), self.node)
        probes = sorted({n for n in mesh.topo.neighbors(self.node)[:1] + [max(lengths, key=lengths.get)]}
                        - {self.node})
        for other in probes:
            if not wait_until(lambda: ping_stats(mesh, other, self.node, 1, wait=1)["received"], 20):
                raise FaultError(f"{self.kind} {self.node}: {other} does not reach it 20 s after the restart")
        return (f"agent of {self.node} back (pid {mesh.run.state['agents'][self.node]['pid']}), same address"
                + (f", reached from {', '.join(probes)} after {time.monotonic() - started:.1f}s" if probes else ""))


@dataclass
class Restart(Crash):
    kind: ClassVar[str] = "restart"
    instant: ClassVar[bool] = True

    def apply(self, mesh) -> None:
        super().apply(mesh)
        restart_agent(mesh, self.node)

    def heal(self, mesh) -> None:
        pass

    def check(self, mesh) -> str:
        old = self.state.get("pid")
        return self.check_healed(mesh) + f" (was pid {old})"


@dataclass
class Pause(NodeFault):
    kind: ClassVar[str] = "pause"

    def _pid(self, mesh) -> int:
        rec = mesh.run.state["agents"].get(check_node(mesh, self.node))
        if not rec or mesh.backend.agent_state(self.node) is None:
            raise FaultError(f"pause {self.node}: no running agent")
        sharing = [n for n, r in mesh.run.state["agents"].items() if r.get("pid") == rec["pid"] and n != self.node]
        if sharing:      # big meshes host several nodes per agent process: SIGSTOP would freeze them all
            raise FaultError(f"pause {self.node}: its agent process also hosts {', '.join(sharing[:5])}; "
                             "pause needs one process per node (meshes up to 60 nodes, or agents_per_process=1)")
        return rec["pid"]

    def apply(self, mesh) -> None:
        self._pid(mesh)
        mesh.backend.signal_agent(self.node, signal.SIGSTOP)

    def heal(self, mesh) -> None:
        mesh.backend.signal_agent(self.node, signal.SIGCONT)

    def check(self, mesh) -> str:
        self._pid(mesh)
        if mesh.backend.agent_state(self.node) != "T" or self._agent_answers(mesh, timeout=0.5):
            raise FaultError(f"pause {self.node}: the agent is not stopped")
        return f"agent of {self.node} stopped, control API silent"

    def check_healed(self, mesh) -> str:
        if not wait_until(lambda: self._healthy(mesh), 10):
            raise FaultError(f"pause {self.node}: the agent does not answer after SIGCONT")
        return f"agent of {self.node} answers again"


def restart_agent(mesh, node: str) -> int:
    """Start a node's agent again from its saved config: same key, same address (a killed agent's stale socket
    file is replaced by the new agent's)."""
    if mesh.backend.agent_state(node) is not None:
        mesh.backend.signal_agent(node, signal.SIGCONT)
        mesh.stop_agent(node, signal.SIGKILL, timeout=5)
    return mesh.restart_agents([node])
