"""The PKT lease rules in a running node: glue between node.dataplane.Node and tun_switch.lease_datapath.

One :class:`LeasePlane` per Node, created when the agent config has a "leases" section
(tun_switch/lease_config.py). ``start()`` installs it as the node's ``_switch_out`` (the data plane's hook
point: link input and our own packets both go through it). It

* opens one extra peer link per paid lease: the same veth addresses as the link's peer, the lease's own UDP
  port (the same at both ends) and its own switch interface, so a label chooses the lease and the receiver
  knows which lease a packet came in on; the socket's SO_PRIORITY is the lease's HTB class (tc_plan.py), for
  when the backend installs the HTB plan on the veth;
* runs every switched packet through ingress (clear-customer-bit, re-prioritisation by the meter), the switch,
  egress (deprioritize-non-customer) and, on links with a capacity, the link's EgressScheduler, drained by a
  timer at the link's pace; links without a capacity send at once (no queue, so no priority drops);
* marks this node's own unclassed packets with the configured "origin" traffic class (the customer's device
  declares its priority and customer bit);
* answers the control API commands ``leases`` (leases, meters, schedulers, counters) and ``lease_config``
  (a signed configuration request, tun_switch/config_request.py).

Split with Linux traffic control (DESIGN.md §3): HTB can give each lease its guarantee (rate) and let it borrow
up to the link (ceil), and is reached without filters through SO_PRIORITY. It cannot see the 4-bit PKT
priority inside our UDP payload, meter priority x bytes, or rewrite the traffic class, so re-prioritisation,
the customer bit, deprioritize-non-customer and the priority order inside a lease are the agent's; the agent's
scheduler also implements level 1 itself so the rules hold on kernels without HTB.
"""

import logging
import socket
import struct

from node.dataplane import CONTROL_FRAME
from node.peer_link import PeerLink
from node.tun_switch.config_request import ConfigRequestHandler
from node.tun_switch.lease_datapath import LeaseDataPath
from node.tun_switch.switch_header import SIZE as HEADER_SIZE
from node.tun_switch.tc_plan import htb_plan, so_priority

log = logging.getLogger(__name__)

ROUTER = 1
SO_PRIORITY = getattr(socket, "SO_PRIORITY", 12)
_tc = struct.Struct(">H")


class LeasePlane:
    def __init__(self, node, lease_config, wall_clock=None, replay_state=None):
        self.node = node
        self.config = lease_config
        self.table = lease_config.table
        self.datapath = LeaseDataPath(self.table)
        self.requests = ConfigRequestHandler(self.table, replay_state=replay_state)
        self.wall_clock = wall_clock or node.wall_clock
        self._drain_timers = {}             # link name -> pending timer

    # -- setup -----------------------------------------------------------------------------------------------
    def start(self, make_link=None):
        """Open the per-lease peer links next to each peer link (``make_link`` replaces PeerLink in tests)."""
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
                                peer.peer_name, node.loop)
                try:
                    link.sock.setsockopt(socket.SOL_SOCKET, SO_PRIORITY, so_priority(lease.slot))
                except OSError as e:             # needs CAP_NET_ADMIN for values > 6
                    log.warning("%s: SO_PRIORITY for lease %s: %s", node.name, name, e)
            node.add_link(link)
        node._switch_out = self.switch_out      # the data plane's hook: every switched packet comes here

    # -- packet path -----------------------------------------------------------------------------------------
    def switch_out(self, source, packet):
        """Node._switch_out with the lease rules: ``packet`` came from switch interface ``source``."""
        node = self.node
        now = node.clock()
        dp = self.datapath
        ticket = None
        if source == ROUTER:
            origin = self.config.origin_tc
            if origin is not None and len(packet) >= HEADER_SIZE and packet[10:12] == b"\xff\xff":
                packet = packet[:10] + _tc.pack(origin) + packet[12:]
        elif len(packet) >= HEADER_SIZE:
            tc = _tc.unpack_from(packet, 10)[0]
            new_tc, ticket = dp.ingress(source, tc, len(packet), now)
            if new_tc != tc:
                packet = packet[:10] + _tc.pack(new_tc) + packet[12:]
        for dest, out in node.switch.receive(source, packet):
            if dest == ROUTER:
                dp.charge(ticket, len(out), now)
                node._to_router(out)
                continue
            target = node.links.get(dest)
            if target is None:
                continue
            if source == ROUTER and out[12:16] == CONTROL_FRAME:
                # our link pings and control messages are never queued behind data: a congested lease must
                # not look dead (missed link pings take the link down for everyone on it)
                node._link_out(source, packet, dest, target, out)
                continue
            tc = _tc.unpack_from(out, 10)[0]
            new_tc = dp.egress_class(dest, tc, now, ticket)
            if new_tc != tc:
                out = out[:10] + _tc.pack(new_tc) + out[12:]
            lease = dp.egress_lease(dest, ticket, now)
            if lease is None or self.table.links[lease.link].capacity_kbit is None:
                node._link_out(source, packet, dest, target, out)
                dp.charge(ticket, len(out), now)         # forwarded at once: charge it now
                continue
            if node.next_hop_down(source, packet, dest):
                node._undeliverable(source, packet, target)    # not queued behind a dead link
                continue
            reason = dp.enqueue(dest, (target, out), len(out), new_tc, ticket, now)
            if reason is not None:
                node.drop(f"lease_{reason}")
            self._drain(lease.link)

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
        self.node.__dict__.pop("_switch_out", None)
        for timer in self._drain_timers.values():
            if timer is not None:
                timer.cancel()
        self._drain_timers.clear()

    # -- control API -----------------------------------------------------------------------------------------
    def describe(self):
        now = self.node.clock()
        d = self.datapath.describe(now)
        d["requests"] = dict(self.requests.counters)
        d["htb_plans"] = {name: htb_plan(ll.capacity_kbit, ll.active(now))
                          for name, ll in self.table.links.items() if ll.capacity_kbit}
        return d

    def configure(self, request_text):
        """Apply one signed configuration request (JSON text); the answer says ok or why not."""
        data = request_text.encode() if isinstance(request_text, str) else bytes(request_text)
        return self.requests.handle(data, self.node.clock(), self.wall_clock())
