"""The lease rules of the PKT routing-device packet path, in the order of the PKT paper §7 (pure, clock passed in).

    packet in on switch interface i
      -> ingress lease = interface table[i] (expired -> the link's free lease)
      -> LeaseIngress.apply: clear-customer-bit, re-prioritise against max-priority-bandwidth   (ingress())
      -> [the cjdns switch picks the outgoing interface o from the label]
      -> egress lease = interface table[o]; deprioritize-non-customer                           (egress())
      -> the outgoing link's EgressScheduler: 2-level token bucket                              (enqueue())
      -> on the wire when the link is free                                                      (dequeue())

The ingress meter is charged when the scheduler accepts a packet, and refunded if the packet is pushed out of
the queue later: charging on departure would delay the meter's feedback by the queueing time, and a control
loop whose delay exceeds its time constant oscillates. Packets for our own router (interface 1), and packets
sent on links without a scheduler, are charged at once (charge()): they flowed through the incoming lease.

Free tier stays free: a packet that came in on a free lease leaves on the free lease of the outgoing link even
when its label names a paid lease there (the free virtual router is joined only to free leases, PKT paper §5),
so nobody spends a lease's guarantee without holding it. Packets from our own router (no ingress lease) go
where the label says.
"""
from __future__ import annotations

from .scheduler import EgressScheduler
from .table import ROUTER_INTERFACE, LeaseTable
from .priority import DEFAULT_TAU_S, LeaseIngress, capped_priority, deprioritize_non_customer
from node.cjdns.switch_header import priority_of


class Ticket:
    """A packet's passage through the device: the ingress lease state to charge, the exact priority it got there
    (after re-prioritisation: the priority-bandwidth that flows is what the lease is metered on) and the exact
    priority it is scheduled with at egress (after deprioritize-non-customer)."""
    __slots__ = ("ingress", "priority", "egress_priority")

    def __init__(self, ingress, priority):
        self.ingress, self.priority, self.egress_priority = ingress, priority, priority


class Egress:
    """Where a packet leaves: the lease, its traffic class on the wire, its scheduling priority, and whether the
    lease's link is paced by a scheduler (False: it is sent at once)."""
    __slots__ = ("lease", "tc", "priority", "paced")

    def __init__(self, lease, tc, priority, paced):
        self.lease, self.tc, self.priority, self.paced = lease, tc, priority, paced


class LeaseDataPath:
    """``pace``: the fraction of a link's capacity its scheduler paces at (1: the capacity itself; the agent,
    which runs above the kernel's HTB, passes its own, see node/tun_switch/lease_plane.py)."""

    def __init__(self, table: LeaseTable | None = None, tau_s: float = DEFAULT_TAU_S, pace: float = 1.0):
        if not 0 < pace <= 1:
            raise ValueError(f"pace: a fraction of the link capacity in (0, 1], got {pace!r}")
        self.table = table or LeaseTable()
        self.tau_s = tau_s
        self.pace = pace
        self._ingress: dict[tuple[str, str], LeaseIngress] = {}
        self.schedulers: dict[str, EgressScheduler] = {}
        self.counters = {"unbound_interface": 0, "free_tier_kept_free": 0}

    def scheduler(self, link: str) -> EgressScheduler:
        s = self.schedulers.get(link)
        if s is None:
            capacity = self.table.links[link].capacity_bps
            s = self.schedulers[link] = EgressScheduler(None if capacity is None else capacity * self.pace,
                                                        on_push_out=self._refund)
        return s

    def _ingress_state(self, lease) -> LeaseIngress:
        key = (lease.link, lease.id)
        state = self._ingress.get(key)
        if state is None or state.lease is not lease:
            state = self._ingress[key] = LeaseIngress(lease, self.tau_s)
        return state

    # -- the packet path ---------------------------------------------------------------------------------------
    def ingress(self, index: int, tc: int, size: int, now: float):
        """(new traffic class, ticket) for a packet that came in on switch interface ``index``."""
        lease = self.table.resolve(index, now)
        if lease is None:
            self.counters["unbound_interface"] += 1
            return tc, None
        state = self._ingress_state(lease)
        tc, exact = state.apply(tc, size, now)
        return tc, Ticket(state, exact)

    def charge(self, ticket, size: int, now: float) -> None:
        """Charge a packet that left without queueing (to our router, or on an unpaced link)."""
        if ticket is not None:
            ticket.ingress.charge(ticket.priority, size, now)

    def egress(self, index: int, tc: int, ticket, now: float) -> "Egress | None":
        """The way out through interface ``index``: its lease (resolved once per packet), the traffic class after
        the lease's deprioritize-non-customer and the priority the packet is scheduled with. None: the interface
        has no lease (a link without leases: the packet leaves as it is)."""
        lease = self.table.resolve(index, now)
        if lease is None:
            return None
        if not lease.is_free and ticket is not None and ticket.ingress.lease.is_free:
            lease = self.table.links[lease.link].free
            self.counters["free_tier_kept_free"] += 1
        cap = lease.deprioritize_non_customer
        if ticket is not None:
            ticket.egress_priority = priority = capped_priority(tc, ticket.priority, cap)
        else:
            priority = priority_of(deprioritize_non_customer(tc, cap))
        return Egress(lease, deprioritize_non_customer(tc, cap), priority,
                      self.table.links[lease.link].capacity_bps is not None)

    def enqueue(self, egress: "Egress", item, size: int, ticket, now: float) -> str | None:
        """Queue ``item`` on the egress lease's link; None, or the drop reason (see scheduler)."""
        reason = self.scheduler(egress.lease.link).enqueue((item, size, ticket), size, egress.lease,
                                                           egress.priority, now)
        if reason is None and ticket is not None:
            ticket.ingress.charge(ticket.priority, size, now)
        return reason

    @staticmethod
    def _refund(queued, now: float) -> None:
        _, size, ticket = queued
        if ticket is not None:
            ticket.ingress.charge(-ticket.priority, size, now)

    def dequeue(self, link: str, now: float):
        """The next item to send on ``link`` now, or None."""
        s = self.schedulers.get(link)
        out = s.dequeue(now) if s is not None else None
        return None if out is None else out[0]

    def describe(self, now: float) -> dict:
        d = self.table.describe(now)
        d["ingress"] = {f"{link}/{lease_id}": st.describe(now) for (link, lease_id), st in self._ingress.items()}
        d["egress"] = {link: s.describe() for link, s in self.schedulers.items()}
        d["counters"] = dict(self.counters)
        return d


__all__ = ["LeaseDataPath", "Egress", "Ticket", "ROUTER_INTERFACE"]
