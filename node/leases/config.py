"""The "leases" section of a node agent's config file: validate it and build the device's LeaseTable (pure).

::

    "leases": {
      "links": {
        "<ifname of a peer link>": {
          "capacity_bps": 10000000,                # the link's capacity in bit/s (the rate HTB shapes it to);
                                                   # the agent's egress scheduler paces just below it
          "leases": [
            {"id": "L1",                           # unique on the device
             "interface": 5,                       # its own switch interface number (not 1, not a peer's)
             "udp_port": 6001,                     # its own UDP port, the same at both ends of the link
             "guarantee_bps": 2000000,            # bit/s
             "max_priority_bandwidth": 1000,       # priority x kB/s, null = unlimited (default)
             "clear_customer_bit": false,
             "deprioritize_non_customer": null,    # P, or null
             "holder": "<cjdns public key>.k",
             "expires_at": 1732212345.0,           # Unix time, or null (default) for never
             "virtual_router": "vr1"}              # or null
          ]
        }
      },
      "virtual_routers": [{"id": "vr1", "holder": "<key>.k", "expires_at": null}],
      "origin": {"priority": 12, "customer": true}   # traffic class for this node's own unclassed packets
    }

The free lease of each link is built in and uses the peer link's own switch interface (``free_interfaces``).
Links not named here get a free lease only and no pacing. Every problem raises LeaseError naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from node.cjdns import keys
from .table import Lease, LeaseError, LeaseTable, VirtualRouter
from node.cjdns.switch_header import MAX_PRIORITY, make_traffic_class

LINK_KEYS = {"capacity_bps", "leases"}
MAX_CAPACITY_BPS = 10**15       # as LinkParams' rate_bps: beyond it a value is a typo
LEASE_KEYS = {"id", "interface", "udp_port", "guarantee_bps", "max_priority_bandwidth", "clear_customer_bit",
              "deprioritize_non_customer", "holder", "expires_at", "virtual_router"}
LEASE_REQUIRED = {"id", "interface", "udp_port", "holder"}
VR_KEYS = {"id", "holder", "expires_at"}


@dataclass
class LeaseConfig:
    table: LeaseTable
    ports: dict = field(default_factory=dict)         # (ifname, lease id) -> UDP port of the lease's socket
    interfaces: dict = field(default_factory=dict)    # (ifname, lease id) -> switch interface
    origin_tc: int | None = None                      # traffic class for our own unclassed packets


def _fail(where: str, msg: str):
    raise LeaseError(f"{where}: {msg}")


def _holder(value, where: str) -> bytes:
    try:
        return keys.parse_pubkey_text(value)
    except (ValueError, TypeError) as e:
        _fail(where, f"expected a cjdns public key (....k): {e}")


def _expiry(value, where: str, wall_to_clock) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        _fail(where, f"expected a Unix time or null, got {value!r}")
    return wall_to_clock(float(value))


def parse_lease_config(data, free_interfaces: dict, wall_to_clock=lambda t: t, reserved_ports=(),
                       where: str = "leases") -> LeaseConfig:
    """Build the LeaseTable. ``free_interfaces``: ifname -> switch index of every peer link (its free lease);
    ``wall_to_clock`` converts a Unix time into the clock the data path runs on; ``reserved_ports``: UDP
    ports a lease may not use (the peer links' own)."""
    if not isinstance(data, dict) or not set(data) <= {"links", "virtual_routers", "origin"}:
        _fail(where, 'expected {"links": {...}, "virtual_routers": [...], "origin": {...}}')
    table = LeaseTable()
    cfg = LeaseConfig(table)
    origin = data.get("origin")
    if origin is not None:
        p, c = (origin.get("priority"), origin.get("customer", False)) if isinstance(origin, dict) else (None, 0)
        if not isinstance(origin, dict) or not set(origin) <= {"priority", "customer"} or isinstance(p, bool) \
                or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY or not isinstance(c, bool):
            _fail(f"{where}.origin", f'expected {{"priority": 0..{MAX_PRIORITY}, "customer": true|false}}')
        cfg.origin_tc = make_traffic_class(p, c)
    links = data.get("links", {})
    if not isinstance(links, dict):
        _fail(f"{where}.links", "expected an object mapping ifname -> link")
    unknown = set(links) - set(free_interfaces)
    if unknown:
        _fail(f"{where}.links", f"no peer link named {', '.join(sorted(unknown))}")
    for ifname, index in free_interfaces.items():
        spec = links.get(ifname, {})
        lw = f"{where}.links.{ifname}"
        if not isinstance(spec, dict) or not set(spec) <= LINK_KEYS:
            _fail(lw, f"expected an object with keys among {sorted(LINK_KEYS)}")
        cap = spec.get("capacity_bps")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))
                                or not 1 <= cap <= MAX_CAPACITY_BPS):
            _fail(f"{lw}.capacity_bps", f"expected bit/s, a number in [1, {MAX_CAPACITY_BPS:g}], got {cap!r}")
        table.add_link(ifname, None if cap is None else round(cap))
        table.add_interface(index, ifname)

    vrs = data.get("virtual_routers", [])
    if not isinstance(vrs, list):
        _fail(f"{where}.virtual_routers", "expected a list")
    for i, v in enumerate(vrs):
        vw = f"{where}.virtual_routers[{i}]"
        if not isinstance(v, dict) or not set(v) <= VR_KEYS or not {"id", "holder"} <= set(v):
            _fail(vw, "expected an object with id, holder and optionally expires_at")
        try:
            table.add_virtual_router(VirtualRouter(v["id"], _holder(v["holder"], f"{vw}.holder"),
                                                   _expiry(v.get("expires_at"), f"{vw}.expires_at", wall_to_clock)))
        except LeaseError as e:
            _fail(vw, str(e))

    used_ports = set(reserved_ports)
    for ifname, spec in links.items():
        leases = spec.get("leases", [])
        if not isinstance(leases, list):
            _fail(f"{where}.links.{ifname}.leases", "expected a list")
        for i, l in enumerate(leases):
            lw = f"{where}.links.{ifname}.leases[{i}]"
            if not isinstance(l, dict):
                _fail(lw, "expected an object")
            if set(l) - LEASE_KEYS:
                _fail(lw, f"unknown field(s) {', '.join(sorted(set(l) - LEASE_KEYS))}")
            if LEASE_REQUIRED - set(l):
                _fail(lw, f"missing field(s) {', '.join(sorted(LEASE_REQUIRED - set(l)))}")
            port = l["udp_port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535 or port in used_ports:
                _fail(f"{lw}.udp_port", f"expected an unused port 1..65535, got {port!r}")
            used_ports.add(port)
            clear = l.get("clear_customer_bit", False)
            if not isinstance(clear, bool):
                _fail(f"{lw}.clear_customer_bit", "expected true or false")
            try:
                lease = Lease(l["id"], ifname, guarantee_bps=l.get("guarantee_bps", 0),
                              max_priority_bandwidth=l.get("max_priority_bandwidth"),
                              clear_customer_bit=clear,
                              deprioritize_non_customer=l.get("deprioritize_non_customer"),
                              holder=_holder(l["holder"], f"{lw}.holder"),
                              expires=_expiry(l.get("expires_at"), f"{lw}.expires_at", wall_to_clock),
                              virtual_router=l.get("virtual_router"))
                table.add_lease(lease)
                table.add_interface(l["interface"], ifname, lease.id)
            except LeaseError as e:
                _fail(lw, str(e))
            cfg.ports[(ifname, lease.id)] = port
            cfg.interfaces[(ifname, lease.id)] = l["interface"]
    return cfg
