"""Faults on links: the agents' per-interface emulation (loss, delay, jitter, reorder, duplicate, corrupt, rate,
one-way link-down), veth ends down (link-down, flap) and partitions.

Link parameters go through the agents' `set_link` (egress of the interface). Healing recomputes an interface's
parameters from the topology plus the faults still active on it (interface_params), so faults stack and heal in
any order."""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass
from typing import ClassVar

from node.agent.control_client import AgentError
from testbed.faults.base import End, Fault, FaultError, end_of, link_ends
from testbed.faults.helper import start_helper, stop_helper
from testbed.faults.measure import emulation_counter, interface_counters, iperf, mbit, mean_rtt, ping_stats
from testbed.faults.netlink import set_link_state
from testbed.faults.record import active_faults
from testbed.topology import parse_fraction, parse_rate, parse_time
from testbed.waiting import wait_until


# -- link emulation --------------------------------------------------------------------------------------

@dataclass
class LinkEmulation(Fault):
    """A change of the agents' per-interface emulation on one or both directions of a link."""
    link: str = ""

    def changes(self) -> dict:
        """Agent set_link fields this fault sets."""
        raise NotImplementedError

    def validate(self) -> None:
        self.changes()      # parses the values this kind sends to the agents
        super().validate()

    def apply(self, mesh) -> None:
        ends, _ = link_ends(mesh, self.link)
        for e in ends:
            set_link(mesh, e.node, e.ifname, self.changes())

    def heal(self, mesh) -> None:
        ends, _ = link_ends(mesh, self.link)
        others = [f for f in active_faults(mesh) if f.id != self.id]
        for e in ends:
            set_link(mesh, e.node, e.ifname, interface_params(mesh, e, others), reset=True)

    def ends(self, mesh) -> list[End]:
        return link_ends(mesh, self.link)[0]

    def assert_restored(self, mesh) -> None:
        """The agents' emulation of the link is what the topology and the remaining faults say."""
        others = [f for f in active_faults(mesh) if f.id != self.id]
        for e in self.ends(mesh):
            want = interface_params(mesh, e, others)
            peers = {p["ifname"]: p for p in mesh.agent(e.node).call("peers", timeout=3)["peers"]}
            have = peers[e.ifname]["link_emulation"]
            wrong = [k for k, v in want.items() if abs((have.get(k) or 0) - (v or 0)) > 1e-9   # rate None: unshaped
                     and (k != "loss" or not _bursty(others))]
            if wrong:
                raise FaultError(f"{self.describe()}: {e.node}:{e.ifname} emulates {_params_text(have, wrong)} "
                                 f"after heal, expected {_params_text(want, wrong)}")


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
        self.state["helper"] = start_helper(mesh, ["burst", self.link, self.loss, self.burst], self.id)

    def heal(self, mesh) -> None:
        if self.burst:
            stop_helper(self.state.get("helper"))
        super().heal(mesh)

    def check(self, mesh) -> str:
        """What the emulation on the first end dropped of the frames offered to it while pings cross the link
        (counted at the interface, so it holds whatever path the pings take), within a stated tolerance: four
        standard deviations of a binomial count plus one point. Enough frames are sent that the expected loss
        is at least 40 frames (200 to 1500 pings); bursty loss only has to drop something."""
        e = self.ends(mesh)[0]
        p = parse_fraction(self.loss)
        if p == 0 and not self.burst:
            return "loss 0%: nothing to measure"
        count = 60 if self.burst else min(1500, max(200, math.ceil(40 / p)))
        lost, offered, st = _drops_while_pinging(mesh, e, count, interval=0.05 if self.burst else 0.005)
        seen = f"{lost} of {offered} frames dropped on {e.node}:{e.ifname}, ping loss {st['loss']:.0%} of {st['sent']}"
        if self.burst:
            if lost <= 0:
                raise FaultError(f"{self.describe()}: no frame dropped ({seen}); bursty loss must drop some")
            return seen
        if offered < 20:
            raise FaultError(f"{self.describe()}: only {offered} frames crossed {e.node}:{e.ifname} during "
                             f"{st['sent']} pings to {e.peer}: the loss could not be measured")
        tolerance = _tolerance(p, offered)
        stacked = _other_faults_on(mesh, self)      # other loss on the same end adds to ours
        measured = lost / offered
        if measured < p - tolerance or (measured > p + tolerance and not stacked):
            raise FaultError(f"{self.describe()}: measured {measured:.1%} ({seen}), expected {p:.1%} "
                             f"± {tolerance:.1%}")
        return f"{measured:.1%} lost ({seen}; expected {p:.1%} ± {tolerance:.1%})"

    def check_healed(self, mesh) -> str:
        """The emulation drops no more than the topology's own loss of the link (within the tolerance of check)."""
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        base = interface_params(mesh, e, [])["loss"]
        lost, offered, st = _drops_while_pinging(mesh, e, count=50, interval=0.01)
        allowed = 0 if base == 0 else (base + _tolerance(base, max(offered, 1))) * offered
        if lost > allowed and not _other_faults_on(mesh, self):
            raise FaultError(f"{self.describe()}: the emulation still drops packets after heal ({lost} of {offered} "
                             f"frames on {e.node}:{e.ifname}; the topology's loss of the link is {base:.1%})")
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
        self.state["rtt_ms"] = mean_rtt(mesh, e.node, e.peer)

    def _added_ms(self, mesh) -> float:
        return parse_time(self.delay) * 1000 * len(self.ends(mesh))

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        rtt, base = mean_rtt(mesh, e.node, e.peer), self.state.get("rtt_ms")
        want = self._added_ms(mesh) - parse_time(self.jitter or "0s") * 1000 * len(self.ends(mesh))
        if rtt is None or base is None:
            raise FaultError(f"{self.describe()}: no RTT measured across {e.node}--{e.peer} "
                             f"(before: {_ms(base)}, now: {_ms(rtt)})")
        if rtt - base < 0.8 * want:
            raise FaultError(f"{self.describe()}: RTT {base:.1f} -> {rtt:.1f} ms, expected at least "
                             f"+{0.8 * want:.1f} ms (80% of +{want:.1f})")
        return f"RTT {base:.1f} -> {rtt:.1f} ms (expected at least +{0.8 * want:.1f} ms)"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        base = self.state.get("rtt_ms")
        seen = []

        def back():     # a few tries: one slow sample on a busy machine is not the fault coming back
            seen.append(mean_rtt(mesh, e.node, e.peer))
            return seen[-1] is not None and base is not None and (
                seen[-1] - base <= max(0.5 * self._added_ms(mesh), 5.0) or _other_faults_on(mesh, self))
        if not wait_until(back, 5, interval=0.5):
            raise FaultError(f"{self.describe()}: RTT {', '.join(map(_ms, seen))} after heal (baseline "
                             f"{_ms(base)}, allowed +{max(0.5 * self._added_ms(mesh), 5.0):.1f} ms)")
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
            raise FaultError(f"{self.describe()}: RTT deviation {_ms(st['mdev'])}, expected at least {want:.1f} ms "
                             "(a quarter of the jitter)")
        return f"RTT deviation {st['mdev']:.1f} ms (expected at least {want:.1f} ms)"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        seen = []

        def back():
            seen.append(ping_stats(mesh, e.node, e.peer, count=30, interval=0.02)["mdev"])
            return seen[-1] is not None and (seen[-1] <= parse_time(self.jitter) * 1000 / 4
                                             or _other_faults_on(mesh, self))
        if not wait_until(back, 5, interval=0.5):
            raise FaultError(f"{self.describe()}: RTT deviation {', '.join(map(_ms, seen))} after heal, expected "
                             f"at most {parse_time(self.jitter) * 1000 / 4:.1f} ms")
        return f"RTT deviation {seen[-1]:.1f} ms"


@dataclass
class _CountedEmulation(LinkEmulation):
    """reorder, duplicate, corrupt: the check is the emulation's own counter on the sending end."""
    COUNTER: ClassVar[str] = ""

    def baseline(self, mesh) -> None:
        self.state["before"] = emulation_counter(mesh, self.ends(mesh)[0], self.COUNTER)

    def check(self, mesh) -> str:
        e = self.ends(mesh)[0]
        st = ping_stats(mesh, e.node, e.peer, count=100, interval=0.01)
        n = emulation_counter(mesh, e, self.COUNTER) - self.state.get("before", 0)
        if n <= 0:
            raise FaultError(f"{self.describe()}: no packet {self.COUNTER} on {e.node}:{e.ifname}")
        return f"{n} packets {self.COUNTER}; ping: {st['received']}/{st['sent']} answered, {st['dups']} duplicates"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        before = emulation_counter(mesh, e, self.COUNTER)
        ping_stats(mesh, e.node, e.peer, count=50, interval=0.01)
        n = emulation_counter(mesh, e, self.COUNTER) - before
        others = _other_faults_on(mesh, self)
        if n and not others:
            raise FaultError(f"{self.describe()}: still {n} packets {self.COUNTER} after heal")
        # corrupted handshakes can leave the end-to-end session to be renewed (CryptoAuth resets it): the
        # baseline is back when pings pass again
        started = time.monotonic()
        if not others and not wait_until(
                lambda: ping_stats(mesh, e.node, e.peer, count=20, interval=0.01)["loss"] == 0, 15):
            raise FaultError(f"{self.describe()}: pings across {self.link} still lost 15 s after heal")
        return f"no packet {self.COUNTER} in 50 pings; none lost after {time.monotonic() - started:.1f} s"


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
        """TCP throughput over 3 s after a second not counted (slow start and the shaper's initial burst, which
        made 2-second measurements read up to 1.24x the limit): at most the limit plus RATE_TOLERANCE."""
        e = self.ends(mesh)[0]
        bps = iperf(mesh, e.node, e.peer, seconds=4, omit=1)
        limit = parse_rate(self.rate)
        if bps is None:
            raise FaultError(f"{self.describe()}: iperf3 from {e.node} to {e.peer} measured nothing")
        if bps > (1 + RATE_TOLERANCE) * limit:
            raise FaultError(f"{self.describe()}: measured {mbit(bps)}, over the {self.rate} limit "
                             f"+{RATE_TOLERANCE:.0%}")
        return f"throughput {mbit(bps)} (limit {self.rate}, tolerance +{RATE_TOLERANCE:.0%})"

    def check_healed(self, mesh) -> str:
        self.assert_restored(mesh)
        e = self.ends(mesh)[0]
        seen = []

        def back():     # a few tries: one slow run on a busy machine is not the limit coming back
            seen.append(iperf(mesh, e.node, e.peer, seconds=2))
            return seen[-1] is not None and (seen[-1] > (1 + RATE_TOLERANCE) * parse_rate(self.rate)
                                             or _other_faults_on(mesh, self))
        if not wait_until(back, 6, interval=0):
            raise FaultError(f"{self.describe()}: throughput {', '.join(map(mbit, seen))} after heal, still at the "
                             "limit")
        return f"throughput {mbit(seen[-1])}"


# -- link down, flap, partition --------------------------------------------------------------------------

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
        ends, one_way = link_ends(mesh, self.link)
        e = ends[0]
        if one_way:         # the agents drop a->b: end to end, over the (static) path that crosses the link
            if ping_stats(mesh, e.node, e.peer, count=3, interval=0.2, wait=1)["received"]:
                raise FaultError(f"{self.describe()}: {e.node} still reaches {e.peer}")
            return f"{e.node} -> {e.peer}: no answer"
        # the veths are down: ping across the link itself (end to end, route servers may already route around it)
        r = mesh.exec(e.node, ["ping", "-6", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", e.peer_addr], timeout=10)
        if r.returncode == 0:
            raise FaultError(f"{self.describe()}: {e.node} still reaches {e.peer} over the link")
        return f"{e.node} -> {e.peer} over the link ({e.peer_addr}): no answer"

    def check_healed(self, mesh) -> str:
        # the baseline is a link without loss: one answer can come while the link is still coming back (its
        # agents learn it is up from their next link ping), so a run of answers is waited for
        e = self.ends(mesh)[0]
        if not wait_until(lambda: ping_stats(mesh, e.node, e.peer, count=10, interval=0.05, wait=1)["loss"] == 0,
                          15):
            raise FaultError(f"{self.describe()}: {e.node} does not reach {e.peer} without loss 15 s after heal")
        return f"{e.node} -> {e.peer}: reachable, no loss"


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
        self.state["helper"] = start_helper(mesh, ["flap", self.link, self.period, self.jitter], self.id)

    def heal(self, mesh) -> None:
        stop_helper(self.state.get("helper"))
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
    TARGET: ClassVar[str] = "groups"
    groups: str = ""         # "a,b|c,d" or "a,b/c,d" (no quoting needed), or "a,b" (against every other node)

    def split(self, nodes) -> tuple[set[str], set[str]]:
        """The two sides among `nodes` (FaultError naming an unknown node or overlapping sides)."""
        parts = [set(filter(None, (n.strip() for n in g.split(",")))) for g in re.split(r"[|/]", self.groups)]
        if len(parts) == 1:
            parts.append(set(nodes) - parts[0])
        if len(parts) != 2 or not parts[0] or not parts[1] or parts[0] & parts[1]:
            raise FaultError(f"partition {self.groups!r}: give two disjoint node sets, a,b/c,d (or 'a,b|c,d')")
        unknown = sorted((parts[0] | parts[1]) - set(nodes))
        if unknown:
            raise FaultError(f"partition {self.groups}: no node {', '.join(map(repr, unknown))}")
        return parts[0], parts[1]

    def sides(self, mesh) -> tuple[set[str], set[str]]:
        return self.split(mesh.run.state["nodes"])

    def check_topology(self, topo) -> None:
        self.split(topo.nodes)

    def cut(self, mesh) -> list[tuple[End, End]]:
        left, right = self.sides(mesh)
        out = []
        for i, rec in enumerate(mesh.run.state["links"]):
            if (rec["a"] in left and rec["b"] in right) or (rec["a"] in right and rec["b"] in left):
                out.append((end_of(rec, i, rec["a"]), end_of(rec, i, rec["b"])))
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


# -- an interface's emulation ----------------------------------------------------------------------------

RATE_TOLERANCE = 0.2     # a rate check accepts up to 20 % over the limit (TCP over a token bucket overshoots)


def _ms(value) -> str:
    return "none" if value is None else f"{value:.1f} ms"


def _params_text(params: dict, keys) -> str:
    """Emulation parameters for people: `loss 10%, rate unshaped`."""
    def one(k, v):
        if k == "rate_bps":
            return f"rate {mbit(v) if v else 'unshaped'}"
        if k.endswith("_s"):
            return f"{k[:-2]} {1000 * (v or 0):g} ms"
        return f"{k} {100 * (v or 0):g}%"
    return ", ".join(one(k, params.get(k)) for k in keys)


def set_link(mesh, node: str, ifname: str, params: dict, reset: bool = False) -> None:
    """Change an interface's emulation through its agent (reset: start from no emulation, then apply params)."""
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
           "reorder": p.reorder, "corrupt": p.corrupt, "rate_bps": None}
    for f in faults:
        if isinstance(f, LinkEmulation) and not isinstance(f, Flap):
            if isinstance(f, LinkDown) and not link_ends(mesh, f.link)[1]:
                continue
            if isinstance(f, Loss) and f.burst:
                continue
            if any(e.ifname == end.ifname and e.node == end.node for e in f.ends(mesh)):
                out.update(f.changes())
    return out


def _drops_while_pinging(mesh, end: End, count: int, interval: float) -> tuple[int, int, dict]:
    """Ping the far end from `end`'s node: what the emulation on `end`'s interface dropped of the frames offered
    to it meanwhile (counted at the interface, whatever path the pings take): (lost, offered, ping stats)."""
    before = interface_counters(mesh, end)
    st = ping_stats(mesh, end.node, end.peer, count=count, interval=interval, wait=1)
    after = interface_counters(mesh, end)
    lost = after.get("lost", 0) - before.get("lost", 0)
    return lost, lost + after["tx_packets"] - before["tx_packets"], st


def _tolerance(p: float, offered: int) -> float:
    """How far a measured loss fraction may stray from p: four standard deviations of a binomial count plus a point."""
    return 4 * math.sqrt(p * (1 - p) / offered) + 0.01


def _bursty(faults) -> bool:
    return any(isinstance(f, Loss) and f.burst for f in faults)


def _other_faults_on(mesh, fault: Fault) -> bool:
    mine = {(e.node, e.ifname) for e in link_ends(mesh, fault.link)[0]}
    return any(isinstance(f, LinkEmulation) and {(e.node, e.ifname) for e in f.ends(mesh)} & mine
               for f in active_faults(mesh) if f.id != fault.id)
