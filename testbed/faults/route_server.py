"""Faults of the route-server plane: a node's clock skew, the loss of a route server, bad announcements.

    clock-skew n3 60s            the node's agent clock runs 60 s ahead (negative: behind); its announcements are
                                 stamped by it until its route-server client re-learns the server's time
    route-server-loss n0x2       the node's route server stops (its switch keeps forwarding); heal starts a fresh
                                 one with empty state, which fills again from its nodes and by federation
    forged-announcement n3 [count=1]     instant: the node sends announcements with a broken signature to its
    replayed-announcement n3 [count=1]   route server (or its last accepted one again), inside its real session

Each needs a mesh whose agents use route servers (a topology with route_server nodes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from node.agent.control_client import AgentError
from testbed.faults.base import FaultError, check_node
from testbed.waiting import wait_until
from testbed.faults.node import NodeFault
from testbed.topology import parse_time

SKEW_TOLERANCE_S = 2.0        # the client's estimate is the server's recvTime minus our mid-RTT time


def needs_route_servers(kind: str, topo) -> None:
    if not topo.nodes_with_role("route_server"):
        raise FaultError(f"{kind}: needs a mesh routed by route servers, and topology {topo.name} has no node "
                         "with the role route_server")


def _routes(mesh, node: str) -> dict:
    if mesh.run.state.get("routing") != "route-server":
        raise FaultError(f"{node}: run {mesh.run.name} routes statically; this fault needs a mesh routed by "
                         "route servers (a topology with route_server nodes)")
    try:
        return mesh.agent(node).call("routes", timeout=2)
    except (OSError, AgentError, ValueError) as e:
        raise FaultError(f"{node}: its agent did not answer `routes` ({e})") from None


def server_of(mesh, node: str) -> str | None:
    """The node (by name) whose route server this node uses."""
    ip6 = _routes(mesh, node).get("route_server")
    return next((n for n in mesh.topo.nodes if mesh.ip6(n) == ip6), None) if ip6 else None


def users_of(mesh, server: str) -> list[str]:
    """The other nodes whose route server is on ``server``."""
    return [n for n in mesh.topo.nodes if n != server and server_of(mesh, n) == server]


def _rs_status(mesh, node: str) -> dict | None:
    try:
        return mesh.agent(node).call("rs_status", timeout=2)
    except (OSError, AgentError, ValueError):
        return None


@dataclass
class RouteServerFault(NodeFault):
    """A fault of the route-server plane: the topology must have route servers."""

    def check_topology(self, topo) -> None:
        super().check_topology(topo)
        needs_route_servers(self.kind, topo)


@dataclass
class ClockSkew(RouteServerFault):
    kind: ClassVar[str] = "clock-skew"
    MAIN: ClassVar[str] = "offset"
    offset: str = "60s"

    def seconds(self) -> float:
        text = str(self.offset).strip()
        sign = -1.0 if text.startswith("-") else 1.0
        return sign * parse_time(text.lstrip("+-"))

    def validate(self) -> None:
        self.seconds()

    def baseline(self, mesh) -> None:
        """Whose route-server client will see the skew, and with which sign: the node itself (its server's clock
        minus its own reads -offset), or, on a route server that serves itself, up to three of its nodes
        (+offset)."""
        check_node(mesh, self.node)
        if server_of(mesh, self.node) != self.node:
            watchers = [(self.node, -1.0)]
        else:
            watchers = [(n, 1.0) for n in users_of(mesh, self.node)[:3]]
        self.state["watchers"] = watchers
        self.state["before"] = self._counters(mesh)

    def _counters(self, mesh) -> dict:
        return {n: _routes(mesh, n)["counters"] for n, _ in self.state["watchers"]}

    def apply(self, mesh) -> None:
        mesh.agent(self.node).call("set_clock", offset_s=self.seconds(), timeout=3)

    def heal(self, mesh) -> None:
        mesh.agent(self.node).call("set_clock", offset_s=0, timeout=3)
        self.state["healed_from"] = self._counters(mesh)

    def _follows(self, mesh, offset_s: float, before: dict) -> bool:
        """The node's clock reads the offset; each watcher's estimate of its server's clock shows it, and an
        announcement stamped with that estimate was accepted since."""
        if abs(mesh.agent(self.node).call("status", timeout=2).get("clock_offset_s", 0) - offset_s) > 1e-6:
            return False
        for n, sign in self.state["watchers"]:
            r = _routes(mesh, n)
            if abs(r["skew_ms"] / 1000 - sign * offset_s) >= SKEW_TOLERANCE_S or \
                    r["counters"].get("ann_accepted", 0) <= before[n].get("ann_accepted", 0):
                return False
        return True

    def check(self, mesh) -> str:
        off = self.seconds()
        before = self.state["before"]
        watchers = [n for n, _ in self.state["watchers"]]
        if not wait_until(lambda: self._follows(mesh, off, before), 15):
            seen = {n: _routes(mesh, n)["skew_ms"] for n in watchers}
            raise FaultError(f"clock-skew {self.node}: route-server clock estimates {seen} ms do not show "
                             f"{off:+g} s")
        after = self._counters(mesh)
        rejected = sum(after[n].get("ann_rejected_clock_skew", 0) - before[n].get("ann_rejected_clock_skew", 0)
                       for n in watchers)
        if abs(off) > 10 and watchers and rejected < 1:
            raise FaultError(f"clock-skew {self.node}: {off:+g} s is beyond the 10 s a route server allows, "
                             "but no announcement was rejected for it")
        whose = "its" if watchers == [self.node] else f"the clients of this route server ({', '.join(watchers)})"
        return (f"{self.node}'s clock {off:+g} s: {rejected} announcement(s) rejected for clock skew, then "
                f"{whose} stamped them in the server's time and they were accepted again")

    def check_healed(self, mesh) -> str:
        if not wait_until(lambda: self._follows(mesh, 0.0, self.state["healed_from"]), 15):
            raise FaultError(f"clock-skew {self.node}: after healing, the route-server clients do not follow")
        return f"{self.node}'s clock true again, announcements accepted"


@dataclass
class RouteServerLoss(RouteServerFault):
    kind: ClassVar[str] = "route-server-loss"

    def check_topology(self, topo) -> None:
        super().check_topology(topo)
        if "route_server" not in topo.nodes[self.node].roles:
            raise FaultError(f"route-server-loss {self.node}: not a route server (role route_server); route "
                             f"servers: {', '.join(topo.nodes_with_role('route_server'))}")

    def baseline(self, mesh) -> None:
        self.check_topology(mesh.topo)
        self.state["users"] = users_of(mesh, self.node)

    def apply(self, mesh) -> None:
        mesh.agent(self.node).call("rs_service", run=False, timeout=3)

    def heal(self, mesh) -> None:
        mesh.agent(self.node).call("rs_service", run=True, timeout=3)

    def check(self, mesh) -> str:
        if _rs_status(mesh, self.node) is not None:
            raise FaultError(f"route-server-loss {self.node}: its route server still answers")
        users = self.state["users"]
        isp = mesh.topo.nodes[self.node].isp
        others = [n for n in mesh.topo.nodes_with_role("route_server") if n != self.node
                  and mesh.topo.nodes[n].isp == isp]
        if not others or not users:
            return f"route server of {self.node} gone; {len(users)} node(s) used it, no other server in its ISP"
        moved = lambda: all(server_of(mesh, n) in others for n in users)     # noqa: E731
        if not wait_until(moved, 15):
            stuck = [n for n in users if server_of(mesh, n) not in others]
            raise FaultError(f"route-server-loss {self.node}: {', '.join(stuck)} did not move to "
                             f"{' or '.join(others)} within 15 s")
        return f"route server of {self.node} gone; its {len(users)} node(s) moved to {', '.join(others)}"

    def check_healed(self, mesh) -> str:
        def rebuilt():
            st = _rs_status(mesh, self.node)
            return st if st and st["nodes"] >= 2 and st["edges"] >= 1 else None
        if not wait_until(rebuilt, 20):
            raise FaultError(f"route-server-loss {self.node}: the restarted route server holds no graph after 20 s")
        st = rebuilt()
        return f"route server of {self.node} back: {st['nodes']} nodes, {st['edges']} links known"


@dataclass
class ForgedAnnouncement(RouteServerFault):
    kind: ClassVar[str] = "forged-announcement"
    instant: ClassVar[bool] = True
    MAIN: ClassVar[str] = "count"
    count: int = 1
    what: ClassVar[str] = "forged"
    reason: ClassVar[str] = "bad_signature"

    def baseline(self, mesh) -> None:
        check_node(mesh, self.node)
        seen = [None]

        def other_node_serves():
            seen[0] = server_of(mesh, self.node)
            return seen[0] not in (None, self.node)
        if not wait_until(other_node_serves, 10):
            raise FaultError(f"{self.kind} {self.node}: the node uses no route server of another node "
                             f"(its route server: {seen[0] or 'none found'})")
        self.state["server"] = server = seen[0]
        self.state["before"] = (_rs_status(mesh, server) or {}).get("rejected", {}).get(self.reason, 0)
        self.state["accepted_before"] = _routes(mesh, self.node)["counters"].get("ann_accepted", 0)

    def apply(self, mesh) -> None:
        count = int(self.count)
        if not 1 <= count <= 100:
            raise FaultError(f"{self.kind} count must be in 1..100")
        try:
            mesh.agent(self.node).call("rs_inject", kind=self.what, count=count, timeout=3)
        except AgentError as e:
            raise FaultError(f"{self.kind} {self.node}: {e}") from None

    def heal(self, mesh) -> None:
        pass

    def check(self, mesh) -> str:
        server, count = self.state["server"], int(self.count)

        def counted():
            return (_rs_status(mesh, server) or {}).get("rejected", {}).get(self.reason, 0) - self.state["before"]
        if not wait_until(lambda: counted() >= count, 5):
            raise FaultError(f"{self.kind} {self.node}: {server} counted {counted()} {self.reason} rejections "
                             f"for {count} sent")
        own = lambda: _routes(mesh, self.node)["counters"].get("ann_accepted", 0) > self.state["accepted_before"]  # noqa: E731
        if not wait_until(own, 10):
            raise FaultError(f"{self.kind} {self.node}: the node's own announcements are no longer accepted")
        return (f"{server} rejected {counted()} as {self.reason}; {self.node}'s own announcements still accepted")


@dataclass
class ReplayedAnnouncement(ForgedAnnouncement):
    kind: ClassVar[str] = "replayed-announcement"
    what: ClassVar[str] = "replayed"
    reason: ClassVar[str] = "replay"
