"""Bandwidth leases, virtual routers and the interface table of one PKT routing device (PKT paper §2, §5, §7).

Pure bookkeeping, no I/O, no clock reads: every time-dependent call takes ``now`` (seconds, any monotonic base).

* A :class:`Lease` is a guaranteed bandwidth (bit/s) over one physical link, held by a key until it expires, with the
  PKT configurables: max-priority-bandwidth (priority units x kB/s), clear-customer-bit (incoming traffic) and
  deprioritize-non-customer = P (outgoing traffic without the customer bit carries priority <= P).
* Every link always has its *free lease* (id ``"free"``, unowned, guarantee 0, never expires).
* Every device has the unowned *free virtual router*, joined to the free lease of every link; other virtual
  routers are leasable like bandwidth.
* The *interface table* maps a cjdns switch interface number to (link, lease): a path label therefore chooses
  the lease a packet leaves on. Each lease, the free lease included, has interface numbers of its own.
* An expired lease (or one whose id is unknown) resolves to the free lease of its link: fail-open, the traffic
  keeps flowing on the free tier.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from node.cjdns.keys import pubkey_text
from node.cjdns.switch_header import MAX_PRIORITY

FREE = "free"                   # id of the free lease of every link and of the free virtual router
ROUTER_INTERFACE = 1            # cjdns: interface 1 is our own router, never a link
NUM_INTERFACES = 257            # V358 interface slots 0..256


class LeaseError(ValueError):
    """A lease, virtual router or interface definition is invalid (bad argument, unknown name, duplicate)."""


def _check_key(key, what: str) -> bytes | None:
    if key is None:
        return None
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise LeaseError(f"{what}: holder key must be 32 bytes")
    return bytes(key)


def check_priority_cap(value, what: str = "deprioritize_non_customer") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise LeaseError(f"{what}: must be null or an integer priority 0..{MAX_PRIORITY}, got {value!r}")
    return value


def finite_nonnegative(value, what: str, expected: str = "a finite number >= 0") -> float:
    """``value`` as a float, or LeaseError naming ``what`` (also for integers no float can hold)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
        try:
            return float(value)
        except OverflowError:
            pass
    text = repr(value)
    raise LeaseError(f"{what}: must be {expected}, got {text if len(text) <= 40 else text[:20] + '...'}")


def check_max_priority_bandwidth(value, what: str = "max_priority_bandwidth") -> float | None:
    if value is None:
        return None
    return finite_nonnegative(value, what, "null (unlimited) or a finite number >= 0")


@dataclass
class Lease:
    """One bandwidth lease on one physical link. ``holder`` is the holder's cjdns (Curve25519) public key."""
    id: str
    link: str
    guarantee_bps: int = 0                          # bit/s, as every rate in pktlab
    max_priority_bandwidth: float | None = None     # priority x kB/s, None = unlimited
    clear_customer_bit: bool = False
    deprioritize_non_customer: int | None = None    # P, None = off
    holder: bytes | None = None
    expires: float | None = None                    # absolute time; None = never
    virtual_router: str | None = None
    slot: int = 0                                   # stable per-link number (tc class minor, see tc_plan)

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise LeaseError("lease id must be a non-empty string")
        self.guarantee_bps = round(finite_nonnegative(self.guarantee_bps, f"lease {self.id}: guarantee_bps"))
        self.max_priority_bandwidth = check_max_priority_bandwidth(self.max_priority_bandwidth,
                                                                   f"lease {self.id}: max_priority_bandwidth")
        self.deprioritize_non_customer = check_priority_cap(self.deprioritize_non_customer,
                                                            f"lease {self.id}: deprioritize_non_customer")
        self.clear_customer_bit = bool(self.clear_customer_bit)
        self.holder = _check_key(self.holder, f"lease {self.id}")

    @property
    def is_free(self) -> bool:
        return self.id == FREE

    @property
    def guarantee_bytes_per_s(self) -> float:
        return self.guarantee_bps / 8

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def describe(self, now: float) -> dict:
        return {"id": self.id, "link": self.link, "guarantee_bps": self.guarantee_bps,
                "max_priority_bandwidth": self.max_priority_bandwidth,
                "clear_customer_bit": self.clear_customer_bit,
                "deprioritize_non_customer": self.deprioritize_non_customer,
                "holder": pubkey_text(self.holder) if self.holder else None,
                "expires_in_s": None if self.expires is None else round(self.expires - now, 3),
                "expired": self.expired(now), "virtual_router": self.virtual_router, "slot": self.slot}


@dataclass
class VirtualRouter:
    """A leasable share of the device (PKT paper §2); ``holder`` None only for the free virtual router."""
    id: str
    holder: bytes | None = None
    expires: float | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise LeaseError("virtual router id must be a non-empty string")
        self.holder = _check_key(self.holder, f"virtual router {self.id}")

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass
class LinkLeases:
    """The lease set of one physical link: its free lease plus the paid leases, by id. ``capacity_bps``: the
    link's capacity in bit/s (None: not known, the link is not paced)."""
    link: str
    capacity_bps: int | None = None
    leases: dict = field(default_factory=dict)
    _next_slot: int = 1

    def __post_init__(self):
        if FREE not in self.leases:
            self.leases[FREE] = Lease(FREE, self.link, virtual_router=FREE, slot=0)

    @property
    def free(self) -> Lease:
        return self.leases[FREE]

    def add(self, lease: Lease) -> Lease:
        if lease.is_free:
            raise LeaseError(f"link {self.link}: the free lease is built in")
        if lease.id in self.leases:
            raise LeaseError(f"link {self.link}: lease {lease.id} already exists")
        lease.link = self.link
        lease.slot = self._next_slot
        self._next_slot += 1
        self.leases[lease.id] = lease
        return lease

    def active(self, now: float) -> list:
        """The free lease and every unexpired paid lease (what the link's schedulers serve)."""
        return [lease for lease in self.leases.values() if not lease.expired(now)]


class LeaseTable:
    """All leases, virtual routers and the interface table of one device."""

    def __init__(self):
        self.links: dict[str, LinkLeases] = {}
        self.virtual_routers: dict[str, VirtualRouter] = {FREE: VirtualRouter(FREE)}
        self.interfaces: dict[int, tuple[str, str]] = {}      # switch interface -> (link, lease id)

    # -- building ------------------------------------------------------------------------------------------
    def add_link(self, link: str, capacity_bps: int | None = None) -> LinkLeases:
        if not isinstance(link, str) or not link:
            raise LeaseError("link name must be a non-empty string")
        if link in self.links:
            raise LeaseError(f"link {link} already exists")
        self.links[link] = LinkLeases(link, capacity_bps)
        return self.links[link]

    def add_lease(self, lease: Lease) -> Lease:
        ll = self.links.get(lease.link)
        if ll is None:
            raise LeaseError(f"lease {lease.id}: unknown link {lease.link!r}")
        if not lease.is_free and self.find(lease.id) is not None:
            raise LeaseError(f"lease {lease.id} already exists (lease ids are unique per device)")
        if lease.virtual_router is not None:
            self.check_join(lease, lease.virtual_router)
        return ll.add(lease)

    def grant(self, lease_id: str, holder: bytes, expires: float | None) -> Lease:
        """Hand a paid lease to ``holder`` until ``expires`` (None: never): what the device does when the lease
        is sold (the market's token changed hands). Its configurables stay as they are; the new holder sets them
        with signed requests. A virtual router of the old holder is left."""
        lease = self.find(lease_id)
        if lease is None:
            raise LeaseError(f"no paid lease {lease_id!r}")
        holder = _check_key(holder, f"lease {lease_id}")
        if holder is None:
            raise LeaseError(f"lease {lease_id}: a paid lease needs a holder key")
        if expires is not None:
            expires = finite_nonnegative(expires, f"lease {lease_id}: expires")
        if lease.virtual_router is not None and lease.holder != holder:
            lease.virtual_router = None
        lease.holder, lease.expires = holder, expires
        return lease

    def add_virtual_router(self, vr: VirtualRouter) -> VirtualRouter:
        if vr.id in self.virtual_routers:
            raise LeaseError(f"virtual router {vr.id} already exists")
        if vr.holder is None:
            raise LeaseError(f"virtual router {vr.id}: only the free virtual router is unowned")
        self.virtual_routers[vr.id] = vr
        return vr

    def add_interface(self, index: int, link: str, lease_id: str = FREE) -> None:
        """Bind switch interface ``index`` to (link, lease)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_INTERFACES \
                or index == ROUTER_INTERFACE:
            raise LeaseError(f"interface {index!r}: must be 0..{NUM_INTERFACES - 1} and not {ROUTER_INTERFACE}")
        if index in self.interfaces:
            raise LeaseError(f"interface {index} is already bound to {self.interfaces[index]}")
        if link not in self.links:
            raise LeaseError(f"interface {index}: unknown link {link!r}")
        if lease_id not in self.links[link].leases:
            raise LeaseError(f"interface {index}: link {link} has no lease {lease_id!r}")
        self.interfaces[index] = (link, lease_id)

    def free_interface_index(self, taken=()) -> int:
        """Lowest interface number bound to nothing (and not in ``taken``), as cjdns allocates them."""
        for i in range(NUM_INTERFACES):
            if i != ROUTER_INTERFACE and i not in self.interfaces and i not in taken:
                return i
        raise LeaseError("no free interface number")

    def check_join(self, lease: Lease, vr_id: str) -> None:
        vr = self.virtual_routers.get(vr_id)
        if vr is None:
            raise LeaseError(f"lease {lease.id}: unknown virtual router {vr_id!r}")
        if vr.id == FREE and not lease.is_free:
            raise LeaseError(f"lease {lease.id}: only free leases join the free virtual router")
        if vr.id != FREE and vr.holder != lease.holder:
            raise LeaseError(f"lease {lease.id}: virtual router {vr_id} has another holder")

    def join(self, lease: Lease, vr_id: str | None) -> None:
        """Connect ``lease`` to virtual router ``vr_id`` (None detaches it); same holder required."""
        if vr_id is not None:
            self.check_join(lease, vr_id)
        lease.virtual_router = vr_id

    # -- lookups -------------------------------------------------------------------------------------------
    def lease(self, link: str, lease_id: str, now: float) -> Lease:
        """The lease in force: the named one, or the link's free lease when it expired or does not exist."""
        ll = self.links.get(link)
        if ll is None:
            raise LeaseError(f"unknown link {link!r}")
        lease = ll.leases.get(lease_id)
        if lease is None or lease.expired(now):
            return ll.free
        return lease

    def resolve(self, index: int, now: float) -> Lease | None:
        """Switch interface -> the lease in force on it (None for an unbound interface or the router)."""
        bound = self.interfaces.get(index)
        if bound is None:
            return None
        return self.lease(bound[0], bound[1], now)

    def interface_of(self, link: str, lease_id: str = FREE) -> int | None:
        """The switch interface bound to (link, lease), or None."""
        return next((i for i, bound in self.interfaces.items() if bound == (link, lease_id)), None)

    def lease_interfaces(self) -> set:
        """The switch interfaces bound to paid leases (a lease's own peer link, not a link of its own)."""
        return {i for i, (_, lease_id) in self.interfaces.items() if lease_id != FREE}

    def paid(self, now: float) -> list:
        """Every paid lease in force, link by link."""
        return [lease for ll in self.links.values() for lease in ll.active(now) if not lease.is_free]

    def find(self, lease_id: str) -> Lease | None:
        """A paid lease by id (ids are unique per device; the free leases are per link and not found here)."""
        for ll in self.links.values():
            lease = ll.leases.get(lease_id)
            if lease is not None and not lease.is_free:
                return lease
        return None

    def leases_of(self, vr_id: str, now: float) -> list:
        """Leases in force joined to a virtual router (the free one has every link's free lease)."""
        vr = self.virtual_routers.get(vr_id)
        if vr is None or vr.expired(now):
            return []
        if vr.id == FREE:
            return [ll.free for ll in self.links.values()]
        return [lease for ll in self.links.values() for lease in ll.active(now) if lease.virtual_router == vr_id]

    def describe(self, now: float) -> dict:
        return {
            "links": {name: {"capacity_bps": ll.capacity_bps,
                             "leases": [lease.describe(now) for lease in ll.leases.values()]}
                      for name, ll in self.links.items()},
            "virtual_routers": {vr.id: {"holder": pubkey_text(vr.holder) if vr.holder else None,
                                        "expired": vr.expired(now),
                                        "leases": [f"{lease.link}/{lease.id}" for lease in self.leases_of(vr.id, now)]}
                                for vr in self.virtual_routers.values()},
            "interfaces": {str(i): {"link": link, "lease": lease_id}
                           for i, (link, lease_id) in sorted(self.interfaces.items())},
        }
