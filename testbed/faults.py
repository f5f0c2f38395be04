"""Faults as data: parse, apply to a running mesh, check that they bite, heal, and list them.

    f = parse_fault("loss n1--n2 10%")        # or parse_fault({"kind": "loss", "link": "n1--n2", "loss": "10%"})
    apply_fault(mesh, f)                      # applies, logs a "fault" event, records it, checks it bites
    active_faults(mesh)                       # read from <run>/faults.json, so any process sees them
    heal(mesh, f.id)                          # or heal(mesh) for all; checks the baseline is back

Kinds (one-way variants write the link as `a->b`: only the egress of a towards b is affected):

    link-down a--b        both veth ends down (netlink, inside the two namespaces); a->b: 100 % loss a->b
    flap a--b period=2s [jitter=0.5s]   a helper process takes the link down and up every half period
    loss a--b 10% [burst=200ms]         random loss, or bursts of total loss averaging that fraction
    delay a--b 50ms [jitter=10ms] | jitter a--b 10ms | reorder a--b 25% [delay=10ms]
    duplicate a--b 5% | corrupt a--b 1% | rate a--b 1mbit
    partition a,b|c,d     every link crossing the cut goes down (one group alone: against all other nodes)
    crash n3              SIGKILL the node's agent; heal starts it again with the same identity
    pause n3              SIGSTOP the agent; heal sends SIGCONT
    restart n3            instant: stop and start the agent again (same identity)
    malformed a->b [count=100]   instant: garbage datagrams to b's peer port from a's link address (raw
                          socket inside a's namespace); b counts them as drops

Link parameters go through the agents' `set_link` (egress of the interface). Healing recomputes an
interface's parameters from the topology plus the faults still active on it, so faults stack and heal in
any order. Nothing outside the run's namespaces is touched.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import networkx as nx

from node.control_client import AgentError
from testbed import runs
from testbed.events import EventLog
from testbed.topology import TopologyError, parse_fraction, parse_rate, parse_time

FAULTS_FILE = "faults.json"
EMU_FIELDS = ("delay_s", "jitter_s", "loss", "duplicate", "reorder", "corrupt", "rate_bps")
PEER_PORT = 7100


class FaultError(RuntimeError):
    """A fault that cannot be parsed, applied, or that did not take effect / did not go away."""


# -- where a fault acts -----------------------------------------------------------------------------------

@dataclass
class End:
    """One end of a link: the node and the interface whose egress carries traffic towards the other end."""
    node: str
    ifname: str
    addr: str
    peer: str
    peer_addr: str
    link_index: int
    side: str  # "ab" if node is the topology link's a, else "ba"


def link_ends(mesh, spec: str) -> tuple[list[End], bool]:
    """`a--b` -> both ends; `a->b` -> only a's end. Returns (ends, one_way)."""
    m = re.fullmatch(r"\s*([^\s>-][^\s]*?)\s*(--|->)\s*([^\s]+)\s*", spec)
    if not m:
        raise FaultError(f"link {spec!r}: write it as a--b (both directions) or a->b (one way)")
    a, arrow, b = m.groups()
    for i, rec in enumerate(mesh.run.state.get("links", [])):
        if {rec["a"], rec["b"]} == {a, b} and a != b:
            ea = _end(rec, i, a)
            eb = _end(rec, i, b)
            return ([ea] if arrow == "->" else [ea, eb]), arrow == "->"
    raise FaultError(f"run {mesh.run.name} has no link between {a!r} and {b!r}")


def _end(rec: dict, index: int, node: str) -> End:
    if rec["a"] == node:
        return End(node, rec["a_if"], rec["a_addr"], rec["b"], rec["b_addr"], index, "ab")
    return End(node, rec["b_if"], rec["b_addr"], rec["a"], rec["a_addr"], index, "ba")


def _check_node(mesh, node: str) -> str:
    if node not in mesh.run.state.get("nodes", {}):
        raise FaultError(f"run {mesh.run.name} has no node {node!r}")
    return node


# -- the fault kinds --------------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: ClassVar[str] = ""
    instant: ClassVar[bool] = False    # done when applied (restart, malformed): logged, never listed as active
    id: str = ""
    state: dict = field(default_factory=dict)   # what apply recorded: baseline measurement, helper pid, ...

    # parsing: the first bare argument fills MAIN, key=value (or "key value") the rest
    MAIN: ClassVar[str | None] = None

    def target(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """The fault as one parses it back: `delay n1--n2 20ms jitter=5ms`."""
        params = self.params()
        main = params.pop(self.MAIN, None) if self.MAIN else None
        words = [self.kind, self.target()] + ([str(main)] if main not in (None, "") else [])
        words += [f"{k}={v}" for k, v in params.items() if v not in (None, "")]
        return " ".join(words)

    def params(self) -> dict:
        skip = {"id", "state", "link", "node", "groups"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    # -- behaviour (overridden) --
    def baseline(self, mesh) -> None:
        """Measure what the check compares against, before applying."""

    def apply(self, mesh) -> None:
        raise NotImplementedError

    def heal(self, mesh) -> None:
        raise NotImplementedError

    def check(self, mesh) -> str:
        """Measure that the fault bites; return what was seen, raise FaultError if it does not."""
        return "not measured"

    def check_healed(self, mesh) -> str:
        return "not measured"


# link emulation faults ----------------------------------------------------------------------------------

@dataclass
class LinkEmulation(Fault):
    """A change of the agents' per-interface emulation on one or both directions of a link."""
    link: str = ""

    def target(self) -> str:
        return self.link

    def changes(self) -> dict:
        """Agent set_link fields this fault sets."""
        raise NotImplementedError

    def apply(self, mesh) -> None:
        ends, _ = link_ends(mesh, self.link)
        for e in ends:
            _set_link(mesh, e.node, e.ifname, self.changes())

    def heal(self, mesh) -> None:
        ends, _ = link_ends(mesh, self.link)
        others = [f for f in active_faults(mesh) if f.id != self.id]
        for e in ends:
            _set_link(mesh, e.node, e.ifname, interface_params(mesh, e, others), reset=True)

    def ends(self, mesh) -> list[End]:
        return link_ends(mesh, self.link)[0]

    def assert_restored(self, mesh) -> None:
        """The agents' emulation of the link is what the topology and the remaining faults say."""
        others = [f for f in active_faults(mesh) if f.id != self.id]
        for e in self.ends(mesh):
            want = interface_params(mesh, e, others)
            peers = {p["ifname"]: p for p in mesh.agent(e.node).call("peers", timeout=3)["peers"]}
            have = peers[e.ifname]["link_emulation"]
            if any(abs(have.get(k, 0) - v) > 1e-9 for k, v in want.items() if k != "loss" or not _bursty(others)):
                raise FaultError(f"{self.describe()}: {e.node}:{e.ifname} emulation is {have} after heal, "
                                 f"expected {want}")


@dataclass
class Loss(LinkEmulation):
    kind: ClassVar[str] = "loss"
    MAIN: ClassVar[str] = "loss"
    loss: str = "10%"
    burst: str = ""      # "200ms": bursts of total loss (a helper process), averaging `loss`

    def changes(self) -> dict:
        return {} if self.burst else {"loss": parse_fraction(self.loss)}

    def apply(self, mesh) -> None:
        if not self.burst:
            return super().apply(mesh)
        if not 0 < parse_fraction(self.loss) < 1:
            raise FaultError("bursty loss needs a fraction strictly between 0% and 100%")
        parse_time(self.burst)
        self.state["helper"] = _start_helper(mesh, ["burst", self.link, self.loss, self.burst], self.id)

    def heal(self, mesh) -> None:
        if self.burst:
            _stop_helper(self.state.get("helper"))
        super().heal(mesh)

    def baseline(self, mesh) -> None:
        e = self.ends(mesh)[0]
        self.state["before"] = _emulation_counter(mesh, e, "lost")

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        st = ping_stats(mesh, e.node, e.peer, count=100 if not self.burst else 60,
                        interval=0.01 if not self.burst else 0.05)
        lost = _emulation_counter(mesh, e, "lost") - self.state.get("before", 0)
        if lost <= 0 and st["loss"] == 0:
            raise FaultError(f"{self.describe()}: no packet lost in {st['sent']} pings")
        return f"ping loss {st['loss']:.0%}, {lost} packets dropped by the emulation on {e.node}:{e.ifname}"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        before = _emulation_counter(mesh, e, "lost")
        st = ping_stats(mesh, e.node, e.peer, count=50, interval=0.01)
        if _emulation_counter(mesh, e, "lost") != before and not _other_faults_on(mesh, self):
            raise FaultError(f"{self.describe()}: the emulation still drops packets after heal")
        return f"ping loss {st['loss']:.0%} after heal"


@dataclass
class Delay(LinkEmulation):
    kind: ClassVar[str] = "delay"
    MAIN: ClassVar[str] = "delay"
    delay: str = "50ms"
    jitter: str = ""

    def changes(self) -> dict:
        out = {"delay_s": parse_time(self.delay)}
        if self.jitter:
            out["jitter_s"] = parse_time(self.jitter)
        return out

    def baseline(self, mesh) -> None:
        e = self.ends(mesh)[0]
        self.state["rtt_ms"] = _rtt(mesh, e.node, e.peer)

    def _added_ms(self, mesh) -> float:
        return parse_time(self.delay) * 1000 * len(self.ends(mesh))

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        rtt, base = _rtt(mesh, e.node, e.peer), self.state.get("rtt_ms")
        want = self._added_ms(mesh) - parse_time(self.jitter or "0s") * 1000 * len(self.ends(mesh))
        if rtt is None or base is None or rtt - base < 0.8 * want:
            raise FaultError(f"{self.describe()}: RTT {base} -> {rtt} ms, expected +{want:.1f} ms")
        return f"RTT {base:.1f} -> {rtt:.1f} ms"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        base = self.state.get("rtt_ms")
        seen = []

        def back():     # a few tries: one slow sample on a busy machine is not the fault coming back
            seen.append(_rtt(mesh, e.node, e.peer))
            return seen[-1] is not None and base is not None and (
                seen[-1] - base <= max(0.5 * self._added_ms(mesh), 5.0) or _other_faults_on(mesh, self))
        if not wait_until(back, 5, 0.5):
            raise FaultError(f"{self.describe()}: RTT {seen} ms after heal (baseline {base} ms)")
        return f"RTT {seen[-1]:.1f} ms (baseline {base:.1f} ms)"


@dataclass
class Jitter(Delay):
    kind: ClassVar[str] = "jitter"
    MAIN: ClassVar[str] = "jitter"
    delay: str = "0s"
    jitter: str = "20ms"

    def changes(self) -> dict:
        return {"jitter_s": parse_time(self.jitter), **({"delay_s": parse_time(self.delay)}
                                                         if parse_time(self.delay) else {})}

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        st = ping_stats(mesh, e.node, e.peer, count=30, interval=0.02)
        want = parse_time(self.jitter) * 1000 / 4
        if st["mdev"] is None or st["mdev"] < want:
            raise FaultError(f"{self.describe()}: RTT deviation {st['mdev']} ms, expected at least {want:.1f}")
        return f"RTT deviation {st['mdev']:.1f} ms"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        seen = []

        def back():
            seen.append(ping_stats(mesh, e.node, e.peer, count=30, interval=0.02)["mdev"])
            return seen[-1] is not None and (seen[-1] <= parse_time(self.jitter) * 1000 / 4
                                             or _other_faults_on(mesh, self))
        if not wait_until(back, 5, 0.5):
            raise FaultError(f"{self.describe()}: RTT deviation {seen} ms after heal")
        return f"RTT deviation {seen[-1]:.1f} ms"


@dataclass
class _CountedEmulation(LinkEmulation):
    """reorder, duplicate, corrupt: the check is the emulation's own counter on the sending end."""
    COUNTER: ClassVar[str] = ""

    def baseline(self, mesh) -> None:
        self.state["before"] = _emulation_counter(mesh, self.ends(mesh)[0], self.COUNTER)

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        st = ping_stats(mesh, e.node, e.peer, count=100, interval=0.01)
        n = _emulation_counter(mesh, e, self.COUNTER) - self.state.get("before", 0)
        if n <= 0:
            raise FaultError(f"{self.describe()}: no packet {self.COUNTER} on {e.node}:{e.ifname}")
        return f"{n} packets {self.COUNTER}; ping: {st['received']}/{st['sent']} answered, {st['dups']} duplicates"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        before = _emulation_counter(mesh, e, self.COUNTER)
        ping_stats(mesh, e.node, e.peer, count=50, interval=0.01)
        n = _emulation_counter(mesh, e, self.COUNTER) - before
        if n and not _other_faults_on(mesh, self):
            raise FaultError(f"{self.describe()}: still {n} packets {self.COUNTER} after heal")
        return f"no packet {self.COUNTER} in 50 pings"


@dataclass
class Reorder(_CountedEmulation):
    kind: ClassVar[str] = "reorder"
    MAIN: ClassVar[str] = "reorder"
    COUNTER: ClassVar[str] = "reordered"
    reorder: str = "25%"
    delay: str = "10ms"     # reordering needs delayed packets to overtake

    def changes(self) -> dict:
        return {"reorder": parse_fraction(self.reorder), "delay_s": parse_time(self.delay)}


@dataclass
class Duplicate(_CountedEmulation):
    kind: ClassVar[str] = "duplicate"
    MAIN: ClassVar[str] = "duplicate"
    COUNTER: ClassVar[str] = "duplicated"
    duplicate: str = "10%"

    def changes(self) -> dict:
        return {"duplicate": parse_fraction(self.duplicate)}


@dataclass
class Corrupt(_CountedEmulation):
    kind: ClassVar[str] = "corrupt"
    MAIN: ClassVar[str] = "corrupt"
    COUNTER: ClassVar[str] = "corrupted"
    corrupt: str = "10%"

    def changes(self) -> dict:
        return {"corrupt": parse_fraction(self.corrupt)}


@dataclass
class Rate(LinkEmulation):
    kind: ClassVar[str] = "rate"
    MAIN: ClassVar[str] = "rate"
    rate: str = "1mbit"

    def changes(self) -> dict:
        bps = parse_rate(self.rate)
        if not bps:
            raise FaultError(f"rate {self.rate!r}: give a positive rate such as 1mbit")
        return {"rate_bps": bps}

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        bps = iperf(mesh, e.node, e.peer, seconds=2)
        limit = parse_rate(self.rate)
        if bps is None or bps > 1.15 * limit:
            raise FaultError(f"{self.describe()}: measured {_mbit(bps)} over a {self.rate} limit")
        return f"throughput {_mbit(bps)} (limit {self.rate})"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        bps = iperf(mesh, e.node, e.peer, seconds=2)
        if bps is None or (bps <= 1.15 * parse_rate(self.rate) and not _other_faults_on(mesh, self)):
            raise FaultError(f"{self.describe()}: throughput {_mbit(bps)} after heal, still at the limit")
        return f"throughput {_mbit(bps)}"


# link down, flap, partition -----------------------------------------------------------------------------

@dataclass
class LinkDown(LinkEmulation):
    kind: ClassVar[str] = "link-down"

    def changes(self) -> dict:
        return {"loss": 1.0}     # only used one way: a veth end cannot be down in one direction

    def apply(self, mesh) -> None:
        ends, one_way = link_ends(mesh, self.link)
        if one_way:
            return super().apply(mesh)
        set_link_state(mesh, ends, up=False)

    def heal(self, mesh) -> None:
        ends, one_way = link_ends(mesh, self.link)
        if one_way:
            return super().heal(mesh)
        still_down = any(isinstance(f, (LinkDown, Partition)) and f.id != self.id and f.downs(mesh, ends[0])
                         for f in active_faults(mesh))
        if not still_down:
            set_link_state(mesh, ends, up=True)

    def downs(self, mesh, end: End) -> bool:
        ends, one_way = link_ends(mesh, self.link)
        return not one_way and ends[0].link_index == end.link_index

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        if ping_stats(mesh, e.node, e.peer, count=3, interval=0.2, wait=1)["received"]:
            raise FaultError(f"{self.describe()}: {e.node} still reaches {e.peer}")
        return f"{e.node} -> {e.peer}: no answer"

    def check_healed(self, mesh) -> str:
        e = self.ends(mesh)[0]
        if not wait_until(lambda: ping_stats(mesh, e.node, e.peer, count=1, wait=1)["received"], 15):
            raise FaultError(f"{self.describe()}: {e.node} does not reach {e.peer} 15 s after heal")
        return f"{e.node} -> {e.peer}: reachable"


@dataclass
class Flap(LinkDown):
    kind: ClassVar[str] = "flap"
    period: str = "2s"
    jitter: str = "0s"

    def apply(self, mesh) -> None:
        if link_ends(mesh, self.link)[1]:
            raise FaultError("flap works on both directions of a link (a--b)")
        if parse_time(self.period) < 0.2:
            raise FaultError("flap period must be at least 200ms")
        parse_time(self.jitter)
        self.state["helper"] = _start_helper(mesh, ["flap", self.link, self.period, self.jitter], self.id)

    def heal(self, mesh) -> None:
        _stop_helper(self.state.get("helper"))
        super().heal(mesh)

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        period = parse_time(self.period)
        st = ping_stats(mesh, e.node, e.peer, count=int(2 * period / 0.1) + 1, interval=0.1, wait=1)
        if st["loss"] == 0:
            raise FaultError(f"{self.describe()}: no loss over two periods")
        return f"ping loss {st['loss']:.0%} over two periods"


@dataclass
class Partition(Fault):
    kind: ClassVar[str] = "partition"
    groups: str = ""         # "a,b|c,d" or "a,b" (against every other node)

    def target(self) -> str:
        return self.groups

    def sides(self, mesh) -> tuple[set[str], set[str]]:
        parts = [set(filter(None, (n.strip() for n in g.split(",")))) for g in self.groups.split("|")]
        nodes = set(mesh.run.state["nodes"])
        if len(parts) == 1:
            parts.append(nodes - parts[0])
        if len(parts) != 2 or not parts[0] or not parts[1] or parts[0] & parts[1]:
            raise FaultError(f"partition {self.groups!r}: give two disjoint node sets, a,b|c,d")
        for n in parts[0] | parts[1]:
            _check_node(mesh, n)
        return parts[0], parts[1]

    def cut(self, mesh) -> list[tuple[End, End]]:
        left, right = self.sides(mesh)
        out = []
        for i, rec in enumerate(mesh.run.state["links"]):
            if (rec["a"] in left and rec["b"] in right) or (rec["a"] in right and rec["b"] in left):
                out.append((_end(rec, i, rec["a"]), _end(rec, i, rec["b"])))
        return out

    def downs(self, mesh, end: End) -> bool:
        return any(a.link_index == end.link_index for a, _ in self.cut(mesh))

    def apply(self, mesh) -> None:
        cut = self.cut(mesh)
        if not cut:
            raise FaultError(f"partition {self.groups}: no link crosses the cut")
        self.state["links"] = [a.node + "--" + b.node for a, b in cut]
        set_link_state(mesh, [e for pair in cut for e in pair], up=False)

    def heal(self, mesh) -> None:
        others = [f for f in active_faults(mesh) if f.id != self.id and isinstance(f, (LinkDown, Partition))]
        ends = [e for a, b in self.cut(mesh) if not any(f.downs(mesh, a) for f in others) for e in (a, b)]
        set_link_state(mesh, ends, up=True)

    def sample_pairs(self, mesh, n=4) -> list[tuple[str, str]]:
        left, right = self.sides(mesh)
        rng = random.Random(f"{mesh.run.state.get('seed')}:{self.id}")
        pairs = [(a, b) for a in sorted(left) for b in sorted(right)]
        return rng.sample(pairs, min(n, len(pairs)))

    def check(self, mesh) -> str:
        pairs = self.sample_pairs(mesh)
        reached = [p for p, ok in mesh.reachability(pairs, count=2, timeout=1).items() if ok]
        if reached:
            raise FaultError(f"partition {self.groups}: {reached[0][0]} still reaches {reached[0][1]}")
        return f"{len(pairs)} pairs across the cut unreachable ({len(self.state['links'])} links down)"

    def check_healed(self, mesh) -> str:
        pairs = self.sample_pairs(mesh)
        if not wait_until(lambda: all(mesh.reachability(pairs, count=1, timeout=1).values()), 20):
            raise FaultError(f"partition {self.groups}: pairs across the cut still unreachable after heal")
        return f"{len(pairs)} pairs across the cut reachable"


# node faults --------------------------------------------------------------------------------------------

@dataclass
class NodeFault(Fault):
    node: str = ""

    def target(self) -> str:
        return self.node

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
        _check_node(mesh, self.node)
        self.state["pid"] = mesh.run.state["agents"].get(self.node, {}).get("pid")
        mesh.stop_agent(self.node, signal.SIGKILL, timeout=5)

    def heal(self, mesh) -> None:
        restart_agent(mesh, self.node)

    def check(self, mesh) -> str:
        rec = mesh.run.state["agents"].get(self.node, {})
        if runs.alive(rec.get("pid", 0), rec.get("start")) or self._agent_answers(mesh):
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
        rec = mesh.run.state["agents"].get(_check_node(mesh, self.node))
        if not rec or not runs.alive(rec["pid"], rec.get("start")):
            raise FaultError(f"pause {self.node}: no running agent")
        sharing = [n for n, r in mesh.run.state["agents"].items() if r.get("pid") == rec["pid"] and n != self.node]
        if sharing:      # big meshes host several nodes per agent process: SIGSTOP would freeze them all
            raise FaultError(f"pause {self.node}: its agent process also hosts {', '.join(sharing[:5])}; "
                             "pause needs one process per node (meshes up to 60 nodes, or agents_per_process=1)")
        return rec["pid"]

    def apply(self, mesh) -> None:
        os.kill(self._pid(mesh), signal.SIGSTOP)

    def heal(self, mesh) -> None:
        rec = mesh.run.state["agents"].get(self.node)
        if rec and runs.alive(rec["pid"], rec.get("start")):
            os.kill(rec["pid"], signal.SIGCONT)

    def check(self, mesh) -> str:
        if _proc_state(self._pid(mesh)) != "T" or self._agent_answers(mesh, timeout=0.5):
            raise FaultError(f"pause {self.node}: the agent is not stopped")
        return f"agent of {self.node} stopped, control API silent"

    def check_healed(self, mesh) -> str:
        if not wait_until(lambda: self._healthy(mesh), 10):
            raise FaultError(f"pause {self.node}: the agent does not answer after SIGCONT")
        return f"agent of {self.node} answers again"


# byzantine inputs ---------------------------------------------------------------------------------------

@dataclass
class Malformed(Fault):
    """Garbage switch frames injected on a link: to the peer's port, from our end's address and port, so they
    pass the peer's connected socket and reach its switch, which must count and drop them."""
    kind: ClassVar[str] = "malformed"
    instant: ClassVar[bool] = True
    MAIN: ClassVar[str] = "count"
    link: str = ""
    count: int = 100

    def target(self) -> str:
        return self.link

    def _ends(self, mesh) -> End:
        ends, one_way = link_ends(mesh, self.link)
        return ends[0]

    def _counted(self, mesh) -> int:
        """Drops at the peer and its neighbours: a garbage frame whose first bytes happen to form a valid
        label is forwarded once and dropped at the next hop."""
        e = self._ends(mesh)
        return sum(_drops(mesh, n) for n in [e.peer] + mesh.topo.neighbors(e.peer))

    def baseline(self, mesh) -> None:
        self.state["drops_before"] = self._counted(mesh)

    def apply(self, mesh) -> None:
        e = self._ends(mesh)
        count = int(self.count)
        if not 1 <= count <= 100000:
            raise FaultError("malformed count must be in 1..100000")
        rng = random.Random(f"{mesh.run.state.get('seed')}:{self.id}")
        frames = [bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 5, 11, 13, 40, 120))))
                  for _ in range(count)]
        send_raw_udp(mesh, e.node, e.addr, e.peer_addr, PEER_PORT, PEER_PORT, frames)

    def heal(self, mesh) -> None:
        pass

    def check(self, mesh) -> str:
        e = self._ends(mesh)
        if not wait_until(lambda: self._counted(mesh) - self.state["drops_before"] >= 0.95 * int(self.count), 5):
            got = self._counted(mesh) - self.state["drops_before"]
            raise FaultError(f"malformed {self.link}: {e.peer} and its neighbours counted {got} drops for "
                             f"{self.count} frames")
        got = self._counted(mesh) - self.state["drops_before"]
        at_peer = _drops(mesh, e.peer)
        st = self._peer_status(mesh, e.peer)
        if not st or not st.get("healthy"):
            raise FaultError(f"malformed {self.link}: {e.peer}'s agent is not healthy")
        return f"{got} drops counted for {self.count} frames ({e.peer}: {at_peer} in total), agent healthy"

    def _peer_status(self, mesh, node):
        try:
            return mesh.agent(node).call("status", timeout=2)
        except (OSError, AgentError, ValueError):
            return None


KINDS: dict[str, type[Fault]] = {c.kind: c for c in (Loss, Delay, Jitter, Reorder, Duplicate, Corrupt, Rate,
                                                       LinkDown, Flap, Partition, Crash, Restart, Pause, Malformed)}
NOT_AVAILABLE = {
    "route-server-loss": "the agents do not use route servers yet (paths are static)",
    "clock-skew": "the agent has no clock offset setting",
    "forged-announcement": "the agents exchange no announcements yet",
    "replayed-announcement": "the agents exchange no announcements yet",
}


# -- parsing ----------------------------------------------------------------------------------------------

def parse_fault(spec) -> Fault:
    """A fault from a string (`loss a--b 10% burst=200ms`) or a dict ({"kind": "loss", "link": "a--b", ...})."""
    if isinstance(spec, Fault):
        return spec
    if isinstance(spec, str):
        spec = _dict_from_text(spec)
    if not isinstance(spec, dict):
        raise FaultError(f"a fault is a string or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    kind = str(spec.pop("kind", spec.pop("type", ""))).replace("_", "-")
    if kind in NOT_AVAILABLE:
        raise FaultError(f"fault {kind!r} is not available: {NOT_AVAILABLE[kind]}")
    cls = KINDS.get(kind)
    if cls is None:
        raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    names = {f.name for f in fields(cls)}
    fault_id = str(spec.pop("id", "") or "")
    state = spec.pop("state", None)
    unknown = set(spec) - names
    if unknown:
        raise FaultError(f"{kind}: unknown parameter(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(names - {'id', 'state'}))})")
    values = {k: (str(v) if k != "count" else v) for k, v in spec.items()}
    try:
        fault = cls(**values)
    except TypeError as e:
        raise FaultError(f"{kind}: {e}") from None
    fault.id = fault_id
    if state:
        fault.state = state
    _validate(fault)
    return fault


def _dict_from_text(text: str) -> dict:
    words = text.split()
    if not words:
        raise FaultError("empty fault")
    kind = words[0]
    cls = KINDS.get(kind.replace("_", "-"))
    if cls is None:
        if kind in NOT_AVAILABLE:
            raise FaultError(f"fault {kind!r} is not available: {NOT_AVAILABLE[kind]}")
        raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    if len(words) < 2:
        raise FaultError(f"{kind}: what does it apply to? e.g. `{kind} a--b`")
    where = "groups" if cls is Partition else "node" if issubclass(cls, NodeFault) else "link"
    out = {"kind": kind, where: words[1]}
    rest = words[2:]
    i = 0
    while i < len(rest):
        w = rest[i]
        if "=" in w:
            k, v = w.split("=", 1)
            out[k] = v
        elif i + 1 < len(rest) and w.isidentifier() and not _looks_like_value(w):
            out[w] = rest[i + 1]
            i += 1
        elif cls.MAIN and cls.MAIN not in out:
            out[cls.MAIN] = w
        else:
            raise FaultError(f"{text!r}: unexpected {w!r}")
        i += 1
    if "count" in out:
        try:
            out["count"] = int(out["count"])
        except ValueError:
            raise FaultError(f"{text!r}: count must be an integer") from None
    return out


def _looks_like_value(word: str) -> bool:
    return bool(re.match(r"^[\d.]", word))


def _validate(f: Fault) -> None:
    """Parse every unit now, so a bad fault fails before anything is applied."""
    try:
        if isinstance(f, LinkEmulation) and not isinstance(f, (LinkDown,)):
            f.changes()
        for name, parse in (("loss", parse_fraction), ("duplicate", parse_fraction), ("corrupt", parse_fraction),
                            ("reorder", parse_fraction), ("delay", parse_time), ("jitter", parse_time),
                            ("period", parse_time), ("burst", parse_time), ("rate", parse_rate)):
            v = getattr(f, name, None)
            if v:
                parse(v)
    except TopologyError as e:
        raise FaultError(f"{f.kind}: {e}") from None
    if hasattr(f, "link") and not re.search(r"(--|->)", f.link):
        raise FaultError(f"{f.kind}: link {f.link!r}: write it as a--b or a->b")


# -- the run's record of active faults --------------------------------------------------------------------

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


def active_faults(mesh) -> list[Fault]:
    return [parse_fault(d) for d in _read(mesh)["active"]]


def _event_log(mesh) -> EventLog:
    return EventLog(mesh.run.path("events.jsonl"))


def _event_fields(fault: Fault) -> dict:
    node = getattr(fault, "node", None) or None
    link = getattr(fault, "link", None) or None
    return {"node": node, "link": link}


def apply_fault(mesh, spec, check: bool = True) -> Fault:
    """Apply a fault to a running mesh, record and log it; with check, measure that it bites (if it does not,
    it is healed again and FaultError raised)."""
    fault = parse_fault(spec)
    with _locked(mesh):
        data = _read(mesh)
        fault.id = f"f{data['next']}"
        data["next"] += 1
        _write(mesh, data)
    fault.baseline(mesh)
    fault.apply(mesh)
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
        except FaultError:
            heal(mesh, fault.id, check=False) if not fault.instant else None
            raise
        _update_state(mesh, fault)
    if fault.instant:
        with _event_log(mesh) as log:
            log.append("heal", where["node"], where["link"], id=fault.id, instant=True)
    return fault


def _update_state(mesh, fault: Fault) -> None:
    if fault.instant:
        return
    with _locked(mesh):
        data = _read(mesh)
        for d in data["active"]:
            if d["id"] == fault.id:
                d["state"] = fault.state
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
    if check:
        for fault in faults:
            try:
                fault.state["healed"] = fault.check_healed(mesh)
            except FaultError as e:
                problems.append(str(e))
    if problems:
        raise FaultError("; ".join(problems))
    return faults


# -- mechanisms -------------------------------------------------------------------------------------------

def _set_link(mesh, node: str, ifname: str, params: dict, reset: bool = False) -> None:
    try:
        mesh.agent(node).call("set_link", ifname=ifname, params=dict(params, **({"reset": True} if reset else {})),
                              timeout=3)
    except (OSError, AgentError, ValueError) as e:
        raise FaultError(f"set_link on {node}:{ifname}: {e}") from None


def interface_params(mesh, end: End, faults: list[Fault]) -> dict:
    """An interface's emulation: the topology's parameters for that direction plus the active faults on it."""
    link = mesh.topo.links[end.link_index]
    p = link.ab if end.side == "ab" else link.ba
    out = {"delay_s": p.delay_s, "jitter_s": p.jitter_s, "loss": p.loss, "duplicate": p.duplicate,
           "reorder": p.reorder, "corrupt": p.corrupt, "rate_bps": 0.0}
    for f in faults:
        if isinstance(f, LinkEmulation) and not isinstance(f, Flap):
            if isinstance(f, LinkDown) and not link_ends(mesh, f.link)[1]:
                continue
            if isinstance(f, Loss) and f.burst:
                continue
            if any(e.ifname == end.ifname and e.node == end.node for e in f.ends(mesh)):
                out.update(f.changes())
    return out


def _bursty(faults) -> bool:
    return any(isinstance(f, Loss) and f.burst for f in faults)


def _other_faults_on(mesh, fault: Fault) -> bool:
    mine = {(e.node, e.ifname) for e in link_ends(mesh, fault.link)[0]}
    return any(isinstance(f, LinkEmulation) and {(e.node, e.ifname) for e in f.ends(mesh)} & mine
               for f in active_faults(mesh) if f.id != fault.id)


def _netns_fd(mesh, node: str) -> int:
    rec = mesh.run.state["nodes"][node]
    if not runs.alive(rec["pid"], rec.get("start")):
        raise FaultError(f"node {node}: its namespace holder is gone")
    return os.open(f"/proc/{rec['pid']}/ns/net", os.O_RDONLY)


def set_link_state(mesh, ends: list[End], up: bool) -> None:
    """Set veth ends up or down inside their namespaces (pyroute2)."""
    from pyroute2 import IPRoute
    from node.netns import in_netns
    for e in ends:
        fd = _netns_fd(mesh, e.node)
        try:
            with in_netns(fd):
                with IPRoute() as ipr:
                    idx = ipr.link_lookup(ifname=e.ifname)
                    if not idx:
                        raise FaultError(f"node {e.node} has no interface {e.ifname}")
                    if up:
                        _no_dad(e.ifname)
                    ipr.link("set", index=idx[0], state="up" if up else "down")
                    if up:
                        _restore_address(ipr, idx[0], e.addr)
        finally:
            os.close(fd)


def _no_dad(ifname: str) -> None:
    """Without this a veth coming back up holds its address "tentative" for a second or two (duplicate
    address detection), and the agent's socket bound to it cannot send. /proc/sys/net follows the calling
    thread's namespace, so this must run inside in_netns."""
    for name in ("accept_dad", "dad_transmits"):
        with contextlib.suppress(OSError), open(f"/proc/sys/net/ipv6/conf/{ifname}/{name}", "w") as f:
            f.write("0")


def _restore_address(ipr, index: int, addr: str) -> None:
    """A veth that went down keeps its address, but be sure (the peer link socket is bound to it)."""
    have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET6)}
    if addr not in have:
        ipr.addr("add", index=index, address=addr, prefixlen=64)


def restart_agent(mesh, node: str) -> int:
    """Start a node's agent again from its saved config: same key, same address."""
    rec = mesh.run.state["agents"].get(node)
    if rec and runs.alive(rec["pid"], rec.get("start")):
        os.kill(rec["pid"], signal.SIGCONT)
        mesh.stop_agent(node, signal.SIGKILL, timeout=5)
    sock = mesh.run.path("nodes", node, "agent.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)      # a killed agent leaves its socket file behind
    pid = mesh.start_agent(node)
    mesh.run.save()
    return pid


def send_raw_udp(mesh, node: str, src: str, dst: str, sport: int, dport: int, payloads: list[bytes]) -> None:
    """UDP datagrams with a chosen source port, from a raw socket made inside the node's namespace."""
    fd = _netns_fd(mesh, node)
    from node.netns import in_netns
    try:
        with in_netns(fd):
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
    finally:
        os.close(fd)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, 7, 6)     # IPV6_CHECKSUM: the kernel fills the UDP checksum
        s.bind((src, 0))
        for p in payloads:
            s.sendto(struct.pack("!HHHH", sport, dport, 8 + len(p), 0) + p, (dst, 0))
    finally:
        s.close()


def _drops(mesh, node: str) -> int:
    """Every drop a node counted: node-level reasons, per-interface and switch drops."""
    c = mesh.agent(node).call("counters", timeout=3)
    total = sum(v for v in (c.get("drops") or {}).values() if isinstance(v, int))
    for i in (c.get("interfaces") or {}).values():
        total += sum(v for v in (i.get("drops") or {}).values() if isinstance(v, int))
    total += sum(v for k, v in (c.get("switch") or {}).items() if "drop" in k and isinstance(v, int))
    return total


def _emulation_counter(mesh, end: End, name: str) -> int:
    try:
        c = mesh.agent(end.node).call("counters", timeout=3)
    except (OSError, AgentError, ValueError) as e:
        raise FaultError(f"counters of {end.node}: {e}") from None
    return (c.get("interfaces", {}).get(end.ifname, {}).get("emulation") or {}).get(name, 0)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:].split()[0].decode()
    except OSError:
        return "?"


# -- measuring --------------------------------------------------------------------------------------------

def wait_until(predicate, within: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def ping_stats(mesh, a: str, b: str, count: int = 10, interval: float = 0.2, wait: float = 1.0) -> dict:
    """ICMPv6 echo from a to b over their fc00::/8 addresses: sent, received, loss, dups, avg and mdev ms."""
    argv = ["ping", "-6", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), mesh.ip6(b)]
    r = mesh.exec(a, argv, timeout=count * interval + wait + 10)
    out = r.stdout
    m = re.search(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?", out)
    sent, received, dups = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (count, 0, 0)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    return {"sent": sent, "received": received, "dups": dups, "loss": 1 - received / sent if sent else 1.0,
            "avg": float(rtt.group(2)) if rtt else None, "mdev": float(rtt.group(4)) if rtt else None}


def _rtt(mesh, a: str, b: str) -> float | None:
    """Median-ish RTT: average of 10 pings (ms)."""
    return ping_stats(mesh, a, b, count=10, interval=0.05)["avg"]


def iperf(mesh, client: str, server: str, seconds: float = 2.0, reverse: bool = False, port: int = 5201,
          extra: list[str] | None = None) -> float | None:
    """TCP throughput client -> server (bit/s, as received) with iperf3 over the fc00::/8 addresses."""
    from testbed.backends.netns import exec_in
    srv = exec_in(mesh.run, server, ["iperf3", "-s", "-1", "-p", str(port), "-B", mesh.ip6(server)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(30):
            r = mesh.exec(client, ["iperf3", "-c", mesh.ip6(server), "-p", str(port), "-t", str(seconds), "-J",
                                   "-O", "0.5"] + (["-R"] if reverse else []) + (extra or []),
                          timeout=seconds + 20)
            try:
                data = json.loads(r.stdout)
            except ValueError:
                data = {}
            if "error" in data and "connect" in data["error"]:
                time.sleep(0.1)
                continue
            end = data.get("end", {})
            return end.get("sum_received", {}).get("bits_per_second")
        return None
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def _mbit(bps) -> str:
    return "nothing" if bps is None else f"{bps / 1e6:.2f} Mbit/s"


# -- helper processes (flap, bursty loss) -----------------------------------------------------------------

def _start_helper(mesh, args: list[str], fault_id: str) -> dict:
    """A detached process tagged with the run id, so `pktlab down` stops it even if nobody heals the fault."""
    env = dict(os.environ, **{runs.TAG_VAR: mesh.run.id, "PKTLAB_HOME": str(mesh.run.dir.parent)})
    seed = int(hashlib.sha256(f"{mesh.run.state.get('seed')}:{fault_id}".encode()).hexdigest()[:8], 16)
    log = open(mesh.run.path(f"fault-{fault_id}.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.faults", args[0], "--run", mesh.run.name,
                             "--seed", str(seed)] + args[1:], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    log.close()
    return {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}


def _stop_helper(rec: dict | None) -> None:
    if not rec or not runs.alive(rec["pid"], rec.get("start")):
        return
    os.kill(rec["pid"], signal.SIGTERM)
    if not wait_until(lambda: not runs.alive(rec["pid"], rec.get("start")), 5, 0.02):
        os.kill(rec["pid"], signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(rec["pid"], os.WNOHANG)


def _helper_main(argv=None) -> int:
    """`python -m testbed.faults flap|burst --run NAME --seed N LINK ...`: the loop behind flap and bursty loss."""
    from testbed.mesh import Mesh
    p = argparse.ArgumentParser(prog="python -m testbed.faults")
    p.add_argument("mode", choices=("flap", "burst"))
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("link")
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    mesh = Mesh.attach(args.run)
    rng = random.Random(args.seed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ends, _ = link_ends(mesh, args.link)

    def sleep(seconds):
        deadline = time.monotonic() + max(0.0, seconds)
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.05, deadline - time.monotonic()) if deadline > time.monotonic() else 0)

    if args.mode == "flap":
        half, jitter = parse_time(args.a) / 2, parse_time(args.b)
        try:
            while not stop:
                set_link_state(mesh, ends, up=False)
                sleep(half + rng.uniform(-jitter, jitter))
                set_link_state(mesh, ends, up=True)
                sleep(half + rng.uniform(-jitter, jitter))
        finally:
            set_link_state(mesh, ends, up=True)
    else:
        fraction, burst = parse_fraction(args.a), parse_time(args.b)
        gap = burst * (1 - fraction) / fraction
        try:
            while not stop:
                sleep(rng.expovariate(1 / gap))
                if stop:
                    break
                for e in ends:
                    _set_link(mesh, e.node, e.ifname, {"loss": 1.0})
                sleep(rng.expovariate(1 / burst))
                others = [f for f in active_faults(mesh) if not (isinstance(f, Loss) and f.burst)]
                for e in ends:
                    _set_link(mesh, e.node, e.ifname, {"loss": interface_params(mesh, e, others)["loss"]})
        finally:
            others = [f for f in active_faults(mesh) if not (isinstance(f, Loss) and f.burst)]
            for e in ends:
                with contextlib.suppress(FaultError):
                    _set_link(mesh, e.node, e.ifname, {"loss": interface_params(mesh, e, others)["loss"]})
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main())
