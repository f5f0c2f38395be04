"""The Linux traffic-control side of the leases (DESIGN.md §3): one HTB class per lease of a physical link.

Pure: :func:`htb_plan` turns a link's lease set into the qdisc/class plan; the backend applies it with
pyroute2 (``ipr.tc("add", "htb", ifindex, root["handle"], default=root["default"])`` then
``ipr.tc("add-class", "htb", ifindex, c["handle"], parent=c["parent"], rate=..., ceil=..., prio=...)``).

Layout (handles are 32-bit ``major << 16 | minor``; tc writes the minor in hex, so 0x0001000A is "1:a"):

    1:      root htb qdisc, default class = the free lease's
    1:1     link class, rate = ceil = link capacity
    1:a     the free lease: rate = 1000 bit/s (HTB needs a non-zero rate; the guarantee is 0), prio 7
    1:b...  paid lease with slot n has minor 0xa + n: rate = guarantee, ceil = link capacity, prio 0

HTB lends unused capacity to the classes of the lowest ``prio`` number first, so paid leases borrow before the
free lease and the free tier only gets what is idle; every class may borrow up to the link capacity (work
conserving). No filters are needed (our kernels have none): the agent sends each lease's packets from a socket
with ``SO_PRIORITY`` = the class handle, and HTB classifies by ``skb->priority``.

What stays in the agent (egress_scheduler.py): the priority inside a lease (level 2), push-out of the lowest
priority when a queue is full, and the whole ingress side (meter, re-prioritisation, customer bit).
"""
from __future__ import annotations

MAJOR = 1
LINK_MINOR = 1
FREE_MINOR = 0xA
FREE_RATE_BPS = 1000
PAID_PRIO = 0
FREE_PRIO = 7


def handle(major: int, minor: int) -> int:
    return (major << 16) | minor


def handle_text(h: int) -> str:
    return f"{h >> 16:x}:{h & 0xFFFF:x}"


def so_priority(slot: int) -> int:
    """SO_PRIORITY value that puts a socket's packets into the class of the lease with this slot."""
    return handle(MAJOR, FREE_MINOR + slot)


def htb_plan(capacity_bps: int, leases) -> dict:
    """The HTB plan for one link of ``capacity_bps`` bit/s: ``leases`` are the Lease objects in force (the free one
    included)."""
    if not capacity_bps or capacity_bps <= 0:
        raise ValueError("an HTB plan needs the link capacity (capacity_bps > 0)")
    cap_bps = int(capacity_bps)
    classes = [{"handle": handle(MAJOR, LINK_MINOR), "parent": handle(MAJOR, 0), "lease": None,
                "rate_bps": cap_bps, "ceil_bps": cap_bps, "prio": PAID_PRIO}]
    guaranteed = 0
    for lease in sorted(leases, key=lambda l: l.slot):
        if FREE_MINOR + lease.slot > 0xFFFF:
            raise ValueError(f"lease {lease.id}: slot {lease.slot} does not fit a class minor")
        if lease.is_free:
            rate, prio = FREE_RATE_BPS, FREE_PRIO
        else:
            rate, prio = max(int(lease.guarantee_bps), FREE_RATE_BPS), PAID_PRIO
            guaranteed += rate
        classes.append({"handle": so_priority(lease.slot), "parent": handle(MAJOR, LINK_MINOR),
                        "lease": lease.id, "rate_bps": min(rate, cap_bps), "ceil_bps": cap_bps, "prio": prio,
                        "so_priority": so_priority(lease.slot)})
    if not any(c["lease"] == "free" for c in classes):
        raise ValueError("the lease set must include the free lease")
    return {"root": {"handle": handle(MAJOR, 0), "default": FREE_MINOR},
            "classes": classes, "oversubscribed": guaranteed > cap_bps}
