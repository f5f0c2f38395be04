"""How a switched packet leaves the PKT routing device: the Forwarder, the data path's one hook.

Every packet that arrives on a peer link, and every packet of our own (from the TUN device, link pings, route
server messages), goes through ``forward(source, packet)``: the cjdns switch picks the outgoing interface from the
label, and the packet goes up to our router (interface 1) or out on a peer link. A plane that changes the way out
(the lease rules: ingress metering, egress queues) takes the Forwarder's place with ``Node.use_forwarder`` and
builds on the same public face: ``send_on_link``, ``undeliverable``, ``next_hop_down`` and ``to_router``.

A dead next hop (its veth is down, its agent gone, or it missed its link pings) gets no packets: the source is
answered with a switch ERROR UNDELIVERABLE at once, as cjdns does, so it asks for another path instead of waiting
for silence. Our own link pings still go out on a dead link: only a pong brings it back.

A link may have an egress queue (``egress[switch index]``, the fair-share plane's): ``send_on_link`` hands it
what would go out on that link, and the queue gives it back to ``transmit`` when its turn comes. Our own link
pings and control messages never wait in it (a congested link must not look dead).
"""
from __future__ import annotations

import functools

ROUTER = 1                           # the switch interface of the node's own router
CONTROL_FRAME = b"\xff\xff\xff\xff"  # where the handle of a session packet would be: a switch control message


def is_own_control(source: int, packet: bytes) -> bool:
    """A link ping or control message of our own router (never queued, never answered with an error)."""
    return source == ROUTER and packet[12:16] == CONTROL_FRAME


class Forwarder:
    def __init__(self, switch, links: dict, down_links: set, mark_down, link_up, to_router, drop):
        self.switch = switch
        self.links = links               # switch index -> PeerLink (the node's own table)
        self.down_links = down_links     # switch indexes of links that stopped answering (the node's own set)
        self.mark_down = mark_down       # index -> None: add to that set (and start probing the link)
        self.link_up = link_up           # link -> bool
        self.to_router = to_router       # a packet for this node's own router
        self.drop = drop                 # count a drop by reason
        self.egress = {}                 # switch index -> queue with enqueue(source, packet, dest, target, out)

    def forward(self, source: int, packet: bytes) -> None:
        """Switch ``packet``, which came from switch interface ``source``."""
        for dest, out in self.switch.receive(source, packet):
            if dest == ROUTER:
                self.to_router(out)
            else:
                target = self.links.get(dest)
                if target is not None:
                    self.send_on_link(source, packet, dest, target, out)

    def send_on_link(self, source: int, packet: bytes, dest: int, target, out: bytes) -> None:
        """Send a switched packet (``packet`` as it came in, ``out`` as it leaves) on peer link ``target``, through
        the link's egress queue if it has one; a dead link answers the source with UNDELIVERABLE instead."""
        queue = self.egress.get(dest)
        if queue is not None and not is_own_control(source, out) and not self.next_hop_down(source, packet, dest):
            queue.enqueue(source, packet, dest, target, out)
        else:
            self.transmit(source, packet, dest, target, out)

    def transmit(self, source: int, packet: bytes, dest: int, target, out: bytes) -> None:
        """Send on the link now (send_on_link without the egress queue)."""
        on_fail = functools.partial(self.undeliverable, source, packet, target) if target.emulated else None
        if self.next_hop_down(source, packet, dest) or target.send(out, on_fail) is False:
            if not self.link_up(target):
                self.mark_down(dest)          # refused: its agent is gone; a pong brings it back
            self.undeliverable(source, packet, target)

    def next_hop_down(self, source: int, packet: bytes, dest: int) -> bool:
        """dest missed its link pings (or refused); our own control frames still go out on it."""
        return dest in self.down_links and not is_own_control(source, packet)

    def undeliverable(self, source: int, packet: bytes, link) -> None:
        """Answer the source of ``packet`` with a switch ERROR UNDELIVERABLE (``link``: the dead next hop)."""
        self.drop("next_hop_down")
        if is_own_control(source, packet):
            return                   # our own link pings and control messages: nobody to tell
        for back, err in self.switch.error(source, packet, "UNDELIVERABLE"):
            if back == ROUTER:
                self.to_router(err)
            else:
                link_back = self.links.get(back)
                if link_back is not None:
                    link_back.send(err)
