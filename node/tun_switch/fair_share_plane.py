"""In-network fair share in a running node: node.tun_switch.fair_share schedulers on the node's outgoing links.

Every agent has one FairSharePlane (so the control API can switch fair share on anywhere). A link with fair share
gets a LinkQueue in the Forwarder's egress table (forwarding.py): what the switch sends on that link waits in its
flow's queue, and a timer of the node's event loop hands the packets back to the Forwarder's ``transmit`` at the
link's pace. The node's own link pings and control messages skip the queue. The plane holds the node's own
Forwarder, so a lease plane built on top of it (lease_plane.py) sends through the same queues; a link the lease
plane paces itself cannot also have fair share (the agent config refuses it).

A flow is what the packet shows a transit device: its switch label as it leaves (the path ahead and, bit-reversed,
the path behind: the source and the destination) and the u32 after the switch header (the receiver's session
handle for data, the CryptoAuth state for a handshake, 0xffffffff for a control message). So the device shares a
link among (source, destination) pairs; the flows of one pair share their part by their own congestion control,
since the payload is encrypted end to end.

Configuration: the agent config's ``"fair_share": {"links": {IFNAME: {"rate_bps": int, "buffer_s": float}}}``
(testbed: the topology attrs ``fair_share``, rate = the link's rate x AGENT_PACE under the kernel's HTB), and at
run time the control command ``fair_share``::

    fair_share                                      every link's scheduler: rate, flows, shares, drops
    fair_share ifname=X rate_bps=R [buffer_s=B]     switch it on (or change it) on link X
    fair_share ifname=X rate_bps=null               switch it off (what is queued leaves at once)

Packets the scheduler drops are counted in the node's drops as ``fair_share_queue_full``.
"""
from __future__ import annotations

from node.cjdns.switch_header import SIZE as HEADER_SIZE
from node.tun_switch.fair_share import DEFAULT_BUFFER_S, FairShareScheduler, check


def flow_key(out: bytes) -> bytes:
    """The flow of a packet as it leaves the switch: label and the u32 after the switch header."""
    return out[:8] + out[HEADER_SIZE:HEADER_SIZE + 4]


def parse_settings(data, ifnames) -> dict:
    """The config's "fair_share" section -> {ifname: (rate_bps, buffer_s)}; ValueError naming the field."""
    if not isinstance(data, dict) or set(data) != {"links"} or not isinstance(data["links"], dict):
        raise ValueError('fair_share: expected {"links": {ifname: {"rate_bps": ..., "buffer_s": ...}}}')
    out = {}
    for ifname, params in data["links"].items():
        where = f"fair_share.links.{ifname}"
        if ifname not in ifnames:
            raise ValueError(f"{where}: no peer link uses this ifname")
        if not isinstance(params, dict) or not set(params) <= {"rate_bps", "buffer_s"} or "rate_bps" not in params:
            raise ValueError(f'{where}: expected {{"rate_bps": int, "buffer_s": float}}')
        rate, buffer_s = params["rate_bps"], params.get("buffer_s", DEFAULT_BUFFER_S)
        try:
            check(rate, buffer_s)
        except ValueError as e:
            raise ValueError(f"{where}.{e}") from None
        out[ifname] = (rate, buffer_s)
    return out


class LinkQueue:
    """The egress queue of one link: a FairShareScheduler drained by the node's event loop."""

    def __init__(self, node, forwarder, scheduler):
        self.node, self.forwarder, self.scheduler = node, forwarder, scheduler
        self.timer = None           # the loop's handle of the pending drain
        self.pending = False

    def enqueue(self, source, packet, dest, target, out):
        for _ in self.scheduler.enqueue(flow_key(out), len(out), (source, packet, dest, target, out),
                                        self.node.clock()):
            self.node.drop("fair_share_queue_full")
        self.drain()

    def drain(self):
        """Send what the pace allows now; a timer comes back for the rest."""
        now = self.node.clock()
        while (item := self.scheduler.dequeue(now)) is not None:
            self.forwarder.transmit(*item)
        when = self.scheduler.next_send_time(now)
        if when is not None and not self.pending:
            self.pending = True
            self.timer = self.node.loop.call_at(when, self.node.errors.guard("fair_share_drain", self._on_timer))

    def _on_timer(self):
        self.pending = False
        self.drain()

    def close(self):
        """Stop pacing; what is queued leaves at once."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.pending = None, False
        for item in self.scheduler.drain_all():
            self.forwarder.transmit(*item)


class FairSharePlane:
    COMMANDS = ("fair_share",)

    def __init__(self, node, settings=None):
        self.node = node
        self.forwarder = node.forwarder     # the node's own Forwarder (a lease plane may be built on it later)
        self.settings = settings or {}
        self.queues = {}                    # ifname -> LinkQueue

    def start(self):
        for ifname, (rate_bps, buffer_s) in self.settings.items():
            self.enable(ifname, rate_bps, buffer_s)

    def enable(self, ifname, rate_bps, buffer_s=DEFAULT_BUFFER_S):
        link = self._link(ifname)
        queue = self.queues.get(ifname)
        if queue is None:
            queue = self.queues[ifname] = LinkQueue(self.node, self.forwarder, FairShareScheduler(rate_bps, buffer_s))
            self.forwarder.egress[link.switch_index] = queue
        else:
            queue.scheduler.set_rate(rate_bps, buffer_s)

    def disable(self, ifname):
        link = self._link(ifname)
        queue = self.queues.pop(ifname, None)
        if queue is not None:
            del self.forwarder.egress[link.switch_index]
            queue.close()

    def _link(self, ifname):
        link = self.node.links_by_name.get(ifname)
        if link is None:
            raise ValueError(f"no peer link {ifname!r} (links: {', '.join(sorted(self.node.links_by_name))})")
        return link

    def close(self):
        for ifname in list(self.queues):
            self.disable(ifname)

    # -- control API -------------------------------------------------------------------------------------
    def commands(self) -> dict:
        return {"fair_share": self.cmd_fair_share}

    def cmd_fair_share(self, req, respond):
        if "ifname" in req:
            if not isinstance(req["ifname"], str):
                raise ValueError('"ifname" must be a string')
            if "rate_bps" not in req:
                raise ValueError('needs "rate_bps": bit/s to switch fair share on, null to switch it off')
            if req["rate_bps"] is None:
                self.disable(req["ifname"])
            else:
                self.enable(req["ifname"], req["rate_bps"], req.get("buffer_s", DEFAULT_BUFFER_S))
        return self.describe()

    def describe(self):
        now = self.node.clock()
        return {"links": {ifname: q.scheduler.describe(now) for ifname, q in self.queues.items()}}
