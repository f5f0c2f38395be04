"""A discrete-time simulation of flows through a :class:`LeaseDataPath` (pure and deterministic).

Used by the unit tests and benchmarks to show the lease rules at work on a congested link without sockets:
each flow offers constant-rate packets on an ingress interface towards an egress interface; every tick the
packets are run through ingress -> egress -> enqueue, then every link sends what its capacity allows.
The result has, per flow, the bytes delivered in the measurement window, a throughput time series and the
traffic classes seen on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from node.cjdns.switch_header import is_customer, make_traffic_class, priority_of


@dataclass
class Flow:
    name: str
    ingress: int                 # switch interface the packets arrive on
    egress: int                  # switch interface the label sends them to
    rate_bps: float
    priority: int = 0
    customer: bool = False
    size: int = 1000
    start: float = 0.0
    stop: float = float("inf")
    traffic_class: int | None = None     # overrides priority/customer (e.g. 0xffff, unclassed)


@dataclass
class FlowResult:
    offered_bytes: int = 0
    delivered_bytes: int = 0             # inside the measurement window
    dropped: dict = field(default_factory=dict)
    series: list = field(default_factory=list)     # delivered bit/s per sample interval
    max_priority_on_wire: int = -1
    customer_on_wire: int = 0

    def bps(self, window_s: float) -> float:
        """Delivered bit/s over the measurement window."""
        return self.delivered_bytes * 8 / window_s


def simulate(datapath, flows, duration_s: float, warmup_s: float = 1.0, tick_s: float = 0.001,
             sample_s: float = 0.1) -> dict:
    results = {f.name: FlowResult() for f in flows}
    sizes = {f.name: f.size for f in flows}
    owed = {f.name: 0.0 for f in flows}
    in_sample = {f.name: 0 for f in flows}
    links = sorted(datapath.table.links)
    steps = int(round(duration_s / tick_s))
    per_sample = max(1, int(round(sample_s / tick_s)))
    for step in range(steps + 1):
        now = step * tick_s
        # rotate the arrival order so no flow is always first into the queue
        k = step % len(flows) if flows else 0
        for f in flows[k:] + flows[:k]:
            if not f.start <= now < f.stop:
                continue
            owed[f.name] += f.rate_bps / 8 * tick_s
            r = results[f.name]
            while owed[f.name] >= f.size:
                owed[f.name] -= f.size
                r.offered_bytes += f.size
                tc = f.traffic_class if f.traffic_class is not None else make_traffic_class(f.priority, f.customer)
                tc, ticket = datapath.ingress(f.ingress, tc, f.size, now)
                out = datapath.egress(f.egress, tc, ticket, now)
                reason = "unbound_interface" if out is None else \
                    datapath.enqueue(out, (f.name, out.tc), f.size, ticket, now)
                if reason is not None:
                    r.dropped[reason] = r.dropped.get(reason, 0) + 1
        for link in links:
            while (item := datapath.dequeue(link, now)) is not None:
                name, tc = item
                r = results[name]
                if now >= warmup_s:
                    r.delivered_bytes += sizes[name]
                in_sample[name] += sizes[name]
                r.max_priority_on_wire = max(r.max_priority_on_wire, priority_of(tc))
                r.customer_on_wire += is_customer(tc)
        if step and step % per_sample == 0:
            for name, b in in_sample.items():
                results[name].series.append(b * 8 / (per_sample * tick_s))
                in_sample[name] = 0
    return results
