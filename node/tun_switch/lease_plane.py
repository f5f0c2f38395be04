"""The PKT lease rules in a running node: glue between node.tun_switch.node.Node and leases.datapath.

One :class:`LeasePlane` per Node, created when the agent config has a "leases" section (node/leases/config.py).
``start()`` puts it in the place of the node's Forwarder (forwarding.py: link input and our own packets both go
through it) and it builds on that Forwarder's public face. It

* opens one extra peer link per paid lease: the same veth addresses as the link's peer, the lease's own UDP
  port (the same at both ends) and its own switch interface, so a label chooses the lease and the receiver
  knows which lease a packet came in on; it is encrypted like the link it rides on, in a session of its own;
  the socket's SO_PRIORITY is the lease's HTB class (tc_plan.py), for when the backend installs the HTB plan on
  the veth;
* runs every switched packet through ingress (clear-customer-bit, re-prioritisation by the meter), the switch,
  egress (deprioritize-non-customer) and, on links with a capacity, the link's EgressScheduler, drained by a
  timer at AGENT_PACE of the link's capacity (below); links without a capacity send at once (no queue, so no
  priority drops);
* marks this node's own unclassed packets with the configured "origin" traffic class (the customer's device
  declares its priority and customer bit);
* brings the control API commands ``leases`` (leases, meters, schedulers, counters), ``lease_config``
  (a signed configuration request, node/leases/requests.py) and ``lease_grant`` (the device's operator hands a
  paid lease to a new holder until a Unix time: what the testbed does when the market sells the lease's token).

Split with Linux traffic control (DESIGN.md §3): HTB can give each lease its guarantee (rate) and let it borrow
up to the link (ceil), and is reached without filters through SO_PRIORITY. It cannot see the 4-bit PKT
priority inside our UDP payload, meter priority x bytes, or rewrite the traffic class, so re-prioritisation,
the customer bit, deprioritize-non-customer and the priority order inside a lease are the agent's; the agent's
scheduler also implements level 1 itself so the rules hold on kernels without HTB.
"""

import logging
import math
import socket

from node.cjdns.keys import parse_pubkey_text
from node.cjdns.switch_header import SIZE as HEADER_SIZE, UNCLASSED, traffic_class_of, with_traffic_class
from node.leases.datapath import LeaseDataPath
from node.leases.requests import ConfigRequestHandler
from node.leases.table import LeaseError
from node.leases.tc_plan import htb_plan, so_priority
from node.tun_switch.forwarding import ROUTER, is_own_control
from node.tun_switch.peer_link import PeerLink

log = logging.getLogger(__name__)

SO_PRIORITY = getattr(socket, "SO_PRIORITY", 12)
# The agent paces a link with a capacity at this fraction of it (the one place the fraction applies): the kernel's
# HTB below shapes the link at its capacity counting whole frames (outer IPv6, UDP and Ethernet headers on top of
# the switch frames the agent's scheduler counts), and contention must resolve in the agent's priority-aware queue,
# not in the kernel's FIFO behind it.
AGENT_PACE = 0.9


class LeasePlane:
    COMMANDS = ("leases", "lease_config", "lease_grant")
    ABSENT = 'this node has no "leases" section in its config'

    def __init__(self, node, lease_config, wall_clock=None, replay_state=None):
        self.node = node
        self.config = lease_config
        self.table = lease_config.table
        self.datapath = LeaseDataPath(self.table, pace=AGENT_PACE)
        self.requests = ConfigRequestHandler(self.table, replay_state=replay_state)
        self.wall_clock = wall_clock or node.wall_clock
        self.base = node.forwarder          # the way out we build on
        self._drain_timers = {}             # link name -> pending timer

    # -- setup -----------------------------------------------------------------------------------------------
    def start(self, make_link=None):
        """Open the per-lease peer links next to each peer link (``make_link`` replaces PeerLink in tests) and
        take the Forwarder's place."""
        node = self.node
        base = {link.ifname: link for link in node.links.values()}
        for (ifname, lease_id), port in self.config.ports.items():
            peer = base[ifname]
            index = self.config.interfaces[(ifname, lease_id)]
            lease = self.table.links[ifname].leases[lease_id]
            name = f"{ifname}:{lease_id}"
            if make_link is not None:
                link = make_link(index, name, peer, port)
            else:
                link = PeerLink(index, name, peer.local_addr, peer.peer_addr, port, peer.peer_public_key,
                                peer.peer_name, node.loop, session=node.link_session(peer.peer_public_key)
                                if peer.session is not None else None)
                try:
                    link.sock.setsockopt(socket.SOL_SOCKET, SO_PRIORITY, so_priority(lease.slot))
                except OSError as e:             # needs CAP_NET_ADMIN for values > 6
                    log.warning("%s: SO_PRIORITY for lease %s: %s", node.name, name, e)
            node.add_link(link)
        node.use_forwarder(self)

    # -- packet path (the Forwarder's face, with the lease rules) ----------------------------------------------
    def forward(self, source, packet):
        """Switch ``packet``, which came from switch interface ``source``, through the lease rules."""
        base, dp = self.base, self.datapath
        now = self.node.clock()
        ticket = None
        if len(packet) >= HEADER_SIZE:
            tc = traffic_class_of(packet)
            if source == ROUTER:
                if self.config.origin_tc is not None and tc == UNCLASSED:
                    packet = with_traffic_class(packet, self.config.origin_tc)
            else:
                new_tc, ticket = dp.ingress(source, tc, len(packet), now)
                packet = with_traffic_class(packet, new_tc)
        for dest, out in base.switch.receive(source, packet):
            if dest == ROUTER:
                dp.charge(ticket, len(out), now)
                base.to_router(out)
                continue
            target = base.links.get(dest)
            if target is None:
                continue
            if is_own_control(source, out):
                # our link pings and control messages are never queued behind data: a congested lease must
                # not look dead (missed link pings take the link down for everyone on it)
                base.send_on_link(source, packet, dest, target, out)
                continue
            egress = dp.egress(dest, traffic_class_of(out), ticket, now)
            if egress is not None:
                out = with_traffic_class(out, egress.tc)
            if egress is None or not egress.paced:
                base.send_on_link(source, packet, dest, target, out)
                dp.charge(ticket, len(out), now)         # forwarded at once: charge it now
                continue
            if base.next_hop_down(source, packet, dest):
                base.undeliverable(source, packet, target)    # not queued behind a dead link
                continue
            reason = dp.enqueue(egress, (target, out), len(out), ticket, now)
            if reason is not None:
                self.node.drop(f"lease_{reason}")
            self._drain(egress.lease.link)

    def send_on_link(self, *args):
        self.base.send_on_link(*args)

    def undeliverable(self, *args):
        self.base.undeliverable(*args)

    def next_hop_down(self, *args):
        return self.base.next_hop_down(*args)

    def to_router(self, packet):
        self.base.to_router(packet)

    def _drain(self, link_name):
        """Send what the link's scheduler allows now; make sure a timer comes back for the rest."""
        now = self.node.clock()
        while (item := self.datapath.dequeue(link_name, now)) is not None:
            target, out = item
            target.send(out)
        when = self.datapath.scheduler(link_name).next_send_time()
        if when is not None and link_name not in self._drain_timers:
            self._drain_timers[link_name] = self.node.loop.call_at(
                when, self.node.errors.guard("lease_drain", self._on_drain_timer), link_name)

    def _on_drain_timer(self, link_name):
        self._drain_timers.pop(link_name, None)
        self._drain(link_name)

    def close(self):
        if self.node.forwarder is self:
            self.node.use_forwarder(self.base)
        for timer in self._drain_timers.values():
            if timer is not None:
                timer.cancel()
        self._drain_timers.clear()

    # -- control API -----------------------------------------------------------------------------------------
    def commands(self) -> dict:
        """The control commands this plane brings (a handler refuses a request by raising ValueError)."""
        return {"leases": lambda req, respond: self.describe(), "lease_config": self.cmd_lease_config,
                "lease_grant": self.cmd_lease_grant}

    def cmd_lease_config(self, req, respond):
        if not isinstance(req.get("request"), str):
            raise ValueError('needs "request": the signed request as JSON text')
        return self.configure(req["request"])

    def cmd_lease_grant(self, req, respond):
        """lease=ID holder="<key>.k" expires_at=UNIX|null: the lease's new holder and end (Unix time)."""
        lease_id, holder, until = req.get("lease"), req.get("holder"), req.get("expires_at")
        if not isinstance(lease_id, str) or not isinstance(holder, str):
            raise ValueError('needs "lease" (an id) and "holder" (a cjdns key "....k")')
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))
                                  or not math.isfinite(until)):
            raise ValueError(f'"expires_at": a Unix time or null, got {until!r}')
        try:
            key = parse_pubkey_text(holder)
        except ValueError as e:
            raise ValueError(f"holder: {e}") from None
        now = self.node.clock()
        try:
            expires = None if until is None else max(0.0, now + until - self.wall_clock())
            lease = self.table.grant(lease_id, key, expires)
        except LeaseError as e:
            raise ValueError(str(e)) from None
        log.info("%s: lease %s granted to %s", self.node.name, lease_id, holder)
        return {"lease": lease.describe(now)}

    def describe(self):
        now = self.node.clock()
        d = self.datapath.describe(now)
        d["requests"] = dict(self.requests.counters)
        d["htb_plans"] = {name: htb_plan(ll.capacity_bps, ll.active(now))
                          for name, ll in self.table.links.items() if ll.capacity_bps}
        return d

    def configure(self, request_text):
        """Apply one signed configuration request (JSON text); the answer says ok or why not."""
        data = request_text.encode() if isinstance(request_text, str) else bytes(request_text)
        return self.requests.handle(data, self.node.clock(), self.wall_clock())
