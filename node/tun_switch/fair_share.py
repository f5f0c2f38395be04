"""In-network fair share for one outgoing link: per-flow queues served by deficit round robin at the link's capacity.

The PKT routing device at a bottleneck allocates the capacity among the flows that cross it instead of leaving it to
the end hosts' congestion control (seed 004's "in-network rate allocation", seeds-digest IOB-T13). For one link
direction of capacity C (bit/s):

* every packet belongs to a flow (the caller names it, node/tun_switch/fair_share_plane.py: the switch label and
  the receiver's session handle, i.e. one (source, destination) pair; a transit device sees no more than that of
  end-to-end encrypted traffic) and waits in that flow's FIFO;
* deficit round robin serves the backlogged flows in turn, a quantum of bytes each (at least the largest packet
  seen, so one turn sends at least one packet), and a token bucket paces what leaves at C with the burst of the
  link emulator's (link_emulation.py: BURST_S, at least one 64 KiB packet), so a link has the same capacity
  whether its FIFO or this scheduler holds the queue: every backlogged flow gets C/N, and what a flow does not
  use goes to the others (max-min fair, work conserving);
* all queues together hold at most ``buffer_s`` seconds of C. When a packet does not fit, the flow with the
  longest queue loses: its oldest packet if it is another flow's, the arriving one if it is its own (longest
  queue drop), so a flow that stays under its share loses nothing;
* each flow's arrival and departure rates are measured (exponential average, time constant RATE_TAU_S);
  ``shares`` is the max-min allocation of C for those arrival rates (water filling), the fair share the device
  computes and enforces; a flow idle for IDLE_S is forgotten. At most MAX_FLOWS flows are told apart; more
  share the one overflow flow (counted).

Pure: no I/O, the time is passed in; what a packet is (``item``) is the caller's.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from node.tun_switch.link_emulation import BURST_S, MIN_BURST_BYTES, QUEUE_LIMIT_S

MIN_QUANTUM = 1514          # one Ethernet frame: the quantum grows to the largest packet seen
RATE_TAU_S = 0.5
IDLE_S = 2.0
MAX_FLOWS = 4096
OVERFLOW = b"overflow"      # the flow of packets beyond MAX_FLOWS flows
DEFAULT_BUFFER_S = QUEUE_LIMIT_S   # as deep as the link emulator's FIFO


class Rate:
    """An exponentially averaged rate in bit/s."""

    __slots__ = ("value", "at")

    def __init__(self, now):
        self.value, self.at = 0.0, now

    def add(self, size, now):
        self.value = self.read(now) + size * 8 / RATE_TAU_S
        self.at = now

    def read(self, now):
        return self.value * math.exp(-max(0.0, now - self.at) / RATE_TAU_S)


@dataclass
class Flow:
    key: bytes
    arrival: Rate
    departure: Rate
    queue: deque = field(default_factory=deque)     # (size, item)
    backlog: int = 0            # bytes queued
    deficit: int = 0
    fresh_turn: bool = True     # gets a quantum when it next comes up
    last_seen: float = 0.0
    sent_bytes: int = 0
    dropped: int = 0


class FairShareScheduler:
    def __init__(self, rate_bps: int, buffer_s: float = DEFAULT_BUFFER_S):
        self.set_rate(rate_bps, buffer_s)
        self.flows: dict[bytes, Flow] = {}
        self.active: deque[Flow] = deque()     # backlogged flows in round-robin order
        self.quantum = MIN_QUANTUM
        self.backlog = 0
        self.tat = 0.0                         # token bucket: when the link is free again
        self.counters = {"enqueued": 0, "sent": 0, "dropped": 0, "overflow_flow": 0, "flows_seen": 0}

    def set_rate(self, rate_bps: int, buffer_s: float) -> None:
        """Change the capacity and the buffer (ValueError naming a bad one); the queues stay."""
        check(rate_bps, buffer_s)
        self.rate_bps, self.buffer_s = rate_bps, buffer_s
        self.burst_s = max(BURST_S, MIN_BURST_BYTES * 8 / rate_bps)

    @property
    def capacity_bytes(self) -> int:
        return max(int(self.rate_bps * self.buffer_s / 8), 2 * self.quantum)

    # -- packets in --------------------------------------------------------------------------------------
    def enqueue(self, key: bytes, size: int, item, now: float) -> list:
        """Queue one packet of flow ``key``; returns the items dropped to make room (possibly this one)."""
        flow = self._flow(key, now)
        flow.arrival.add(size, now)
        flow.last_seen = now
        self.quantum = max(self.quantum, size)
        self.counters["enqueued"] += 1
        dropped = []
        while self.backlog + size > self.capacity_bytes:
            longest = max(self.active, key=lambda f: f.backlog, default=None)
            if longest is None or longest is flow or flow.backlog + size >= longest.backlog:
                flow.dropped += 1
                self.counters["dropped"] += 1
                dropped.append(item)
                return dropped
            dropped.append(self._drop_head(longest))
        flow.queue.append((size, item))
        flow.backlog += size
        self.backlog += size
        if len(flow.queue) == 1:
            flow.fresh_turn = True
            self.active.append(flow)
        return dropped

    def _flow(self, key, now) -> Flow:
        flow = self.flows.get(key)
        if flow is None:
            self._forget_idle(now)
            if len(self.flows) >= MAX_FLOWS:
                self.counters["overflow_flow"] += 1
                key = OVERFLOW
                flow = self.flows.get(key)
            if flow is None:
                flow = self.flows[key] = Flow(key, Rate(now), Rate(now), last_seen=now)
                self.counters["flows_seen"] += 1
        return flow

    def _drop_head(self, flow):
        size, item = flow.queue.popleft()
        flow.backlog -= size
        self.backlog -= size
        flow.dropped += 1
        self.counters["dropped"] += 1
        if not flow.queue:
            self.active.remove(flow)
            flow.deficit = 0
        return item

    def _forget_idle(self, now):
        for key in [k for k, f in self.flows.items() if not f.queue and now - f.last_seen > IDLE_S]:
            del self.flows[key]

    # -- packets out -------------------------------------------------------------------------------------
    def next_send_time(self, now: float) -> float | None:
        """When the next packet may leave (None: nothing queued)."""
        return max(now, self.tat - self.burst_s) if self.active else None

    def dequeue(self, now: float):
        """The next packet's item if the pace allows one now, else None."""
        if not self.active or now < self.tat - self.burst_s:
            return None
        while True:
            flow = self.active[0]
            if flow.fresh_turn:
                flow.deficit += self.quantum
                flow.fresh_turn = False
            size, item = flow.queue[0]
            if size <= flow.deficit:
                break
            flow.fresh_turn = True             # not enough for its head packet: its turn is over
            self.active.rotate(-1)
        flow.queue.popleft()
        flow.deficit -= size
        flow.backlog -= size
        self.backlog -= size
        if not flow.queue:
            self.active.popleft()
            flow.deficit = 0
        flow.departure.add(size, now)
        flow.sent_bytes += size
        self.tat = max(self.tat, now) + size * 8 / self.rate_bps
        self.counters["sent"] += 1
        return item

    def drain_all(self):
        """Every queued item, oldest first per flow (the scheduler is being switched off)."""
        items = [item for flow in self.active for _, item in flow.queue]
        for flow in self.active:
            flow.queue.clear()
            flow.backlog = flow.deficit = 0
        self.active.clear()
        self.backlog = 0
        return items

    # -- what it computes --------------------------------------------------------------------------------
    def shares(self, now: float) -> dict[bytes, float]:
        """The max-min fair allocation of the capacity for the flows' measured arrival rates (bit/s)."""
        demand = {key: f.arrival.read(now) for key, f in self.flows.items()
                  if f.queue or now - f.last_seen <= RATE_TAU_S * 2}
        return water_fill(demand, self.rate_bps)

    def describe(self, now: float) -> dict:
        shares = self.shares(now)
        return {"rate_bps": self.rate_bps, "buffer_s": self.buffer_s, "backlog_bytes": self.backlog,
                "active_flows": len(shares), "fair_share_bps": round(self.rate_bps / len(shares)) if shares else None,
                "counters": dict(self.counters),
                "flows": [{"flow": key.hex(), "backlog_bytes": f.backlog, "sent_bytes": f.sent_bytes,
                           "dropped": f.dropped, "arrival_bps": round(f.arrival.read(now)),
                           "departure_bps": round(f.departure.read(now)),
                           "share_bps": round(shares[key]) if key in shares else 0}
                          for key, f in self.flows.items()]}


def water_fill(demand: dict, capacity: float) -> dict:
    """Max-min fair allocation: flows that want less than an equal split get what they want, the rest share what
    is left equally."""
    out, left, n = {}, float(capacity), len(demand)
    for key, want in sorted(demand.items(), key=lambda kv: kv[1]):
        give = min(want, left / n)
        out[key] = give
        left -= give
        n -= 1
    return out


def check(rate_bps, buffer_s) -> None:
    """ValueError naming the parameter that is out of range."""
    if isinstance(rate_bps, bool) or not isinstance(rate_bps, int) or not 0 < rate_bps <= 10**12:
        raise ValueError(f"rate_bps: must be a whole number of bit/s in 1..10^12, got {rate_bps!r}")
    if isinstance(buffer_s, bool) or not isinstance(buffer_s, (int, float)) or not 0.001 <= buffer_s <= 10:
        raise ValueError(f"buffer_s: must be a number of seconds in 0.001..10, got {buffer_s!r}")
