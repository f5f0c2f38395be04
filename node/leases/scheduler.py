"""The egress drop decision of one physical link: the PKT 2-level token bucket (PKT paper §7, DESIGN.md §3).

Pure logic with the clock passed in. The caller enqueues a packet with the lease it leaves on and its (already
re-prioritised and deprioritised) priority, and dequeues whenever it can send; ``dequeue(now)`` paces the link at
``pace_bps`` bit/s (None = no pacing, when the kernel's HTB shapes instead, see tc_plan.py).

Level 1, the outgoing lease's guarantee: a token bucket per lease at its guaranteed rate. A packet that finds
tokens is *guaranteed*; the rest of the lease's traffic is *excess*. The free lease (guarantee 0) is its own,
lowest, tier: free-tier traffic only ever uses capacity nobody else wants.

Level 2, the packet priority (0..15) inside each tier. The scheduler takes it with 1/16 resolution (a float is
accepted): the ingress re-prioritisation computes priorities finer than the 4 bits on the wire, and ordering by
the exact value keeps the shares of leases whose scaled priorities differ by less than one step apart.

Service order is (tier, priority): guaranteed before excess before free, higher priority first, FIFO inside a
class. The tier and priority decide *when* a lease is served, not which of its packets goes: each class holds
service slots, and a slot of a lease at a priority sends that lease's oldest packet of that priority, so a lease
running beyond its guarantee keeps its packets in order (a guaranteed slot taken while older packets of the
lease wait as excess sends the oldest of them). Reordering a flow would cost it dearly: a receiver's replay
window (64 packets in CryptoAuth) drops what arrives that late. The link is never idle while a packet waits (work-conserving: idle capacity is never denied, whatever
the lease or priority). When the queue is full, the newest slot of the lowest class goes first, with the newest
packet of its lease and priority: an arrival of a higher class pushes it out ("pushed_out"), an arrival of the
lowest class is refused ("queue_full"). So under
contention the lowest priority drops first and a lease keeps its guarantee against any priority of others.
"""
from __future__ import annotations

import bisect
from collections import deque

from node.cjdns.switch_header import MAX_PRIORITY

TIER_FREE, TIER_EXCESS, TIER_GUARANTEED = 0, 1, 2
TIER_NAMES = {TIER_FREE: "free", TIER_EXCESS: "excess", TIER_GUARANTEED: "guaranteed"}
STEPS = 16                                  # sub-levels per priority unit
_LEVELS = MAX_PRIORITY * STEPS + 1
NUM_CLASSES = 3 * _LEVELS

DEFAULT_QUEUE_S = 0.05          # queue limit: 50 ms of link capacity ...
MIN_QUEUE_BYTES = 32 * 1500     # ... but at least 32 full-size packets
DEFAULT_BURST_S = 0.02          # guarantee bucket depth: 20 ms of the guarantee, at least 2 packets
MTU = 1500

# drop reasons
QUEUE_FULL = "queue_full"
PUSHED_OUT = "pushed_out"
BAD_PACKET = "bad_packet"       # size <= 0, larger than the whole queue, or priority outside 0..15


class _Bucket:
    """Token bucket of one lease's guarantee (bytes)."""
    __slots__ = ("rate", "depth", "tokens", "at")

    def __init__(self, rate: float, depth: float, now: float):
        self.rate, self.depth, self.tokens, self.at = rate, depth, depth, now

    def take(self, size: int, now: float) -> bool:
        if now > self.at:
            self.tokens = min(self.depth, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.rate > 0 and self.tokens >= size:
            self.tokens -= size
            return True
        return False

    def refund(self, size: int) -> None:
        self.tokens = min(self.depth, self.tokens + size)


class EgressScheduler:
    def __init__(self, pace_bps: float | None, queue_limit_bytes: int | None = None,
                 burst_s: float = DEFAULT_BURST_S, on_push_out=None):
        if pace_bps is not None and not pace_bps > 0:
            raise ValueError("pace_bps must be > 0 or None")
        self.pace_bps = pace_bps
        self.bytes_per_s = None if pace_bps is None else pace_bps / 8      # bytes/s
        if queue_limit_bytes is None:
            queue_limit_bytes = MIN_QUEUE_BYTES if self.bytes_per_s is None \
                else max(MIN_QUEUE_BYTES, int(self.bytes_per_s * DEFAULT_QUEUE_S))
        self.queue_limit = int(queue_limit_bytes)
        self.burst_s = burst_s
        self.on_push_out = on_push_out          # on_push_out(item, now): a queued packet was dropped
        self._classes = [deque() for _ in range(NUM_CLASSES)]      # service slots: (size, lease id, tier)
        self._nonempty: list[int] = []          # sorted indexes of the non-empty classes
        self._packets: dict[tuple, deque] = {}  # (lease id, level) -> its queued (item, size), oldest first
        self._buckets: dict[str, _Bucket] = {}
        self.queued_bytes = 0
        self.busy_until = float("-inf")
        self._backlog_since = float("-inf")     # the queue has not been empty since then
        self.drops: dict[str, int] = {QUEUE_FULL: 0, PUSHED_OUT: 0, BAD_PACKET: 0}
        self.sent = {"packets": 0, "bytes": 0}
        self.sent_by_lease: dict[str, int] = {}
        self.sent_by_tier = {name: 0 for name in TIER_NAMES.values()}

    # -- leases ------------------------------------------------------------------------------------------------
    def _bucket(self, lease, now: float) -> _Bucket:
        rate = lease.guarantee_bytes_per_s
        b = self._buckets.get(lease.id)
        if b is None or b.rate != rate:
            b = self._buckets[lease.id] = _Bucket(rate, max(2 * MTU, rate * self.burst_s), now)
        return b

    def forget_lease(self, lease_id: str) -> None:
        self._buckets.pop(lease_id, None)

    # -- packets -----------------------------------------------------------------------------------------------
    def enqueue(self, item, size: int, lease, priority: float, now: float) -> str | None:
        """Queue ``item`` (anything: the caller's packet) leaving on ``lease``; None, or the drop reason."""
        if not isinstance(size, int) or not 0 < size <= self.queue_limit or isinstance(priority, bool) \
                or not isinstance(priority, (int, float)) or not 0 <= priority <= MAX_PRIORITY:
            self.drops[BAD_PACKET] += 1
            return BAD_PACKET
        if lease.is_free:
            tier = TIER_FREE
        elif self._bucket(lease, now).take(size, now):
            tier = TIER_GUARANTEED
        else:
            tier = TIER_EXCESS
        level = int(priority * STEPS)
        cls = tier * _LEVELS + level
        while self.queued_bytes + size > self.queue_limit:
            victim = self._nonempty[0] if self._nonempty and self._nonempty[0] < cls else None
            if victim is None:
                if tier == TIER_GUARANTEED:
                    self._buckets[lease.id].refund(size)
                self.drops[QUEUE_FULL] += 1
                return QUEUE_FULL
            vsize, vlease, vtier = self._classes[victim].pop()
            if not self._classes[victim]:
                del self._nonempty[0]
            vitem, _ = self._take((vlease, victim % _LEVELS), newest=True)
            self.queued_bytes -= vsize
            if vtier == TIER_GUARANTEED and vlease in self._buckets:
                self._buckets[vlease].refund(vsize)
            self.drops[PUSHED_OUT] += 1
            if self.on_push_out is not None:
                self.on_push_out(vitem, now)
        if not self.queued_bytes:
            self._backlog_since = now
        q = self._classes[cls]
        if not q:
            bisect.insort(self._nonempty, cls)
        q.append((size, lease.id, tier))
        self._packets.setdefault((lease.id, level), deque()).append((item, size))
        self.queued_bytes += size
        return None

    def _take(self, key: tuple, newest: bool = False) -> tuple:
        """The oldest (or newest) queued (item, size) of a lease at a level."""
        packets = self._packets[key]
        out = packets.pop() if newest else packets.popleft()
        if not packets:
            del self._packets[key]
        return out

    def dequeue(self, now: float):
        """The next packet to put on the wire at ``now``, or None (queue empty, or the link still busy)."""
        if self.bytes_per_s is not None and self.busy_until > now:
            return None
        if not self._nonempty:
            return None
        cls = self._nonempty[-1]
        q = self._classes[cls]
        slot_size, lease_id, tier = q.popleft()
        if not q:
            self._nonempty.pop()
        item, size = self._take((lease_id, cls % _LEVELS))
        # the queue counts slots: they hold the sizes packets of their lease and level had when queued
        self.queued_bytes -= slot_size
        if self.bytes_per_s is not None:
            # a backlogged link sends back to back; an idle one starts when the backlog began
            self.busy_until = max(self.busy_until, self._backlog_since) + size / self.bytes_per_s
        self.sent["packets"] += 1
        self.sent["bytes"] += size
        self.sent_by_lease[lease_id] = self.sent_by_lease.get(lease_id, 0) + size
        self.sent_by_tier[TIER_NAMES[tier]] += size
        return item

    def next_send_time(self) -> float | None:
        """When ``dequeue`` can next return a packet (None: nothing queued)."""
        if not self.queued_bytes:
            return None
        return self.busy_until if self.bytes_per_s is not None else float("-inf")

    def __len__(self) -> int:
        return sum(len(q) for q in self._classes)

    def describe(self) -> dict:
        return {"pace_bps": self.pace_bps,
                "queue_limit_bytes": self.queue_limit, "queued_packets": len(self),
                "queued_bytes": self.queued_bytes, "sent": dict(self.sent), "drops": dict(self.drops),
                "sent_bytes_by_lease": dict(self.sent_by_lease), "sent_bytes_by_tier": dict(self.sent_by_tier)}
