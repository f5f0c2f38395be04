"""The data plane of one emulated PKT routing device: TUN <-> CryptoAuth sessions <-> switch <-> peer links.

Packet path (DESIGN.md §3, pkt-reference.md §2-§3):

  TUN read (IPv6, dst in fc00::/8)
    -> session for the destination (end-to-end CryptoAuth; key and label from the path provider)
    -> plaintext = DataHeader(content type = IPv6 next header) + IPv6 payload (the header itself is not sent:
       the receiver rebuilds it from the session's addresses, as cjdns does)
    -> [her handle] + CryptoAuth packet, behind a switch header carrying the path label
    -> Switch.receive(1, packet) -> peer link(s), each frame sealed in the link's own CryptoAuth session
       (cjdns' outer session, node/cjdns/link_session.py; unless the link's config turns it off)
  peer link read -> open the link session -> Switch.receive(link index, packet) -> other links, or our router
  (index 1):
    -> control (0xffffffff: switch errors, pings) | waypoint frames (0xfffffffe/0xfffffffd: sent on by the next
       label, or the way back from the waypoints it came by; node/cjdns/waypoints.py)
       | handshake (nonce 0..3, key inside) | data (our handle)
    -> decrypt -> rebuild the IPv6 header -> TUN write

A path longer than a label has waypoints: the destination's switch header is followed by one waypoint frame per
further segment (``Destination.set_label(label, via)``). The switch numbers its interfaces with the scheme its
highest peer interface needs (V358 up to 256 peers, a hub scheme above: labels.scheme_for_interfaces).

A packet that waits for its destination's path (asked from a route server) or for a session that can carry data
(the handshake: no user data rides in a Hello or Key, as in cjdns) is held, bounded and counted
(node/tun_switch/held_packets.py), and sent the moment it can be.

Every malformed, unauthenticated or undeliverable packet is counted in `drops` by reason; nothing here raises
into the event loop for bad input. The node's handlers (TUN and link input, its timers, the planes' message
handlers) run behind the edge of node/agent/handler_errors.py: an exception costs one call and is counted in
`errors` (the agent's counters: handler_errors).

One Node object holds all per-node state, so one process could host several nodes.
"""

import errno
import functools
import logging
import os
import random
import socket
import struct
import time

from node.agent.handler_errors import HandlerErrors
from node.cjdns import control, keys, labels, waypoints
from node.cjdns.cryptoauth import CryptoAuthError, State
from node.cjdns.link_session import LinkSession
from node.cjdns.paths import StaticPathProvider
from node.cjdns.sessions import SessionManager, pack_data_header, parse_data_header
from node.cjdns.switch import Switch
from node.cjdns.switch_header import UNCLASSED, SwitchHeader
from node.tun_switch.forwarding import CONTROL_FRAME, ROUTER, Forwarder
from node.tun_switch.held_packets import HeldPackets
from node.tun_switch.link_emulation import LinkParams
from node.tun_switch.liveness import DEAD_AFTER_S, KEEPALIVE_S, LoopWatch
from node.tun_switch.peer_link import PeerLink
from node.tun_switch.tun import Tun

log = logging.getLogger(__name__)

READ_BATCH = 64
ICMPV6 = 58
HOP_LIMIT = 64
# An established session that keeps sending without hearing anything back is restarted with a fresh Hello:
# this is how a node notices that its peer restarted and forgot the session (cjdns waits 60 s for this).
UNANSWERED_RESET_S = 5.0
DOWN_PROBE_S = 0.2           # a link that is down is pinged this often: it is back one round trip after it is
PONG_MAX_AGE_S = DEAD_AFTER_S    # a pong echoing an older send time is not an answer (an RTT sample) any more
PROTOCOL_VERSION = 22

_be32 = struct.Struct(">I")
_be64 = struct.Struct(">Q")
_ip6_head = struct.Struct(">IHBB16s16s")
_link_ping = struct.Struct(">Hd")       # our switch index of the link, send time


class Destination:
    """What the data plane knows about one remote node: its key, the label we send on, what came back."""

    __slots__ = ("ip6", "public_key", "label", "via", "header", "learned_label", "learned_via", "rx_packets",
                 "tx_packets", "last_rx_data", "last_tx", "unanswered_since")

    def __init__(self, ip6, public_key, label=None, via=()):
        self.ip6 = ip6
        self.public_key = public_key
        self.label = None
        self.via = ()
        self.header = None
        self.learned_label = None    # the label her last packet arrived with
        self.learned_via = ()        # and its RETURN frames: the rest of the way back (waypoints.returns)
        self.rx_packets = self.tx_packets = 0
        self.last_tx = None
        self.last_rx_data = None     # when she last sent us IPv6 data: only that makes a keepalive due
        self.unanswered_since = None
        if label:
            self.set_label(label, via)

    def set_label(self, label, via=()):
        """The label of the first segment and those of the segments after it (waypoints; usually none)."""
        self.label = label
        self.via = tuple(via)
        # packed once, prepended to every packet
        self.header = SwitchHeader(label=label).pack() + waypoints.frames(self.via)

    def way_back(self):
        """(label, via) back the way her last packet came, all segments of it; None before she sent any."""
        if not self.learned_label:
            return None
        return labels.bit_reverse64(self.learned_label), self.learned_via


class Node:
    def __init__(self, config, loop, path_provider=None, clock=time.monotonic, wall_clock=time.time):
        self.config = config
        self.name = config.node
        self.identity = config.identity
        self.ip6 = self.identity.ip6
        self.loop = loop
        self.clock = clock
        self.started = clock()
        self._wall_clock = wall_clock
        self.clock_offset_s = 0.0    # added to the wall clock this node reports (the clock-skew fault)
        self.rng = random.Random()
        self.paths = path_provider or StaticPathProvider(config.paths)
        # a route server answers its clients back the way each query came: a switch error on such an answer (a
        # destination we send no IP data to) is not a path to look up (_switch_error)
        self.serves_routes = False
        self.switch = Switch(scheme=labels.scheme_for_interfaces(max((p.switch_index for p in config.peers),
                                                                     default=0)))
        self.links = {}              # switch index -> PeerLink
        self.links_by_name = {}      # ifname -> PeerLink
        self.down_links = set()      # switch indexes of links that stopped answering pings: forwarding answers ERROR
        self.sessions = SessionManager(self.identity)   # CryptoAuth sessions and handles, by her key
        self.dests = {}              # her ip6 -> Destination
        self.dests_by_key = {}       # her public key -> Destination
        self.held = HeldPackets()    # user packets waiting for a path or a session (held_packets.py)
        self.drops = {}
        self.errors = HandlerErrors(log)   # exceptions caught at this node's handler edges, by reason
        self.counters = {"tun_rx_packets": 0, "tun_rx_bytes": 0, "tun_tx_packets": 0, "tun_tx_bytes": 0,
                         "switch_errors_received": 0, "sessions_reset": 0, "waypoint_relayed": 0,
                         "waypoint_errors_relayed": 0, "peer_down": 0, "loop_stalls": 0,
                         "switch_errors_on_answers": 0, "keepalives_sent": 0}
        self.loop_watch = LoopWatch(KEEPALIVE_S)    # our own loop's stalls (liveness.py)
        self.tun = None
        self.deliver = None          # writes one rebuilt IPv6 packet to the TUN (set by start())
        self._pings = {}
        # Hooks for other planes (the route-server glue): handlers for session content types >= 256 (256 =
        # route server messages), and a hook for switch control messages the data plane does not handle
        # itself (GETSNODE, RPATH); it returns True when it took the message.
        self.content_handlers = {}
        self.control_hook = None
        self.on_link_change = lambda: None     # called when a peer link goes up or down
        self._probe_timer = None     # the next probe of the down links, armed only while there are some
        self.forwarder = Forwarder(self.switch, self.links, self.down_links, self.mark_down, self.link_up,
                                   self.to_router, self.drop)
        self._ping_id = self.rng.randrange(1, 0xFFFF)
        self._ping_seq = 0
        self.arrival_stamps = False  # stamp_arrivals: the links record when the kernel received each frame
        self._rx_link = None         # the link whose frames are being handled

    # -- setup / teardown ---------------------------------------------------------------------------------
    def start(self):
        cfg = self.config
        self.tun = Tun(cfg.tun_ifname, self.ip6, cfg.tun_mtu)
        self._tun_read = os.read
        self._tun_fd = self.tun.fd
        self.deliver = functools.partial(os.write, self.tun.fd)
        guard = self.errors.guard
        self.loop.add_reader(self.tun, guard("tun_rx", self._on_tun_readable))
        self.loop.call_every(KEEPALIVE_S, guard("housekeeping", self.housekeeping))
        self.loop.call_later(0, guard("housekeeping", self.housekeeping))
        for p in cfg.peers:
            link = PeerLink(p.switch_index, p.ifname, p.local_addr, p.peer_addr, cfg.udp_port,
                            p.peer_public_key, p.peer_name, self.loop, cfg.link_emulation.get(p.ifname),
                            session=self.link_session(p.peer_public_key) if p.link_crypto else None)
            self.add_link(link)

    def link_session(self, peer_key):
        """A new CryptoAuth session for a peer link to ``peer_key`` (cjdns' outer session)."""
        return LinkSession(self.identity, peer_key, self.clock())

    def use_forwarder(self, forwarder):
        """A plane takes the Forwarder's place (and gives it back on close): every switched packet goes to it."""
        self.forwarder = forwarder

    def add_link(self, link):
        if self.arrival_stamps and hasattr(link, "stamp_arrivals"):
            link.stamp_arrivals()
        self.links[link.switch_index] = link
        self.links_by_name[link.ifname] = link
        self.switch.add_interface(link.switch_index)
        self.loop.add_reader(link, self.errors.guard("link_rx", lambda link=link: self._on_link_readable(link)))

    def stamp_arrivals(self):
        """Have the peer links record when the kernel received each frame (a route server judges a message's age
        by it, node/route_server/service.py): ``rx_wait``. Links without kernel stamps (in-memory ones) have none."""
        self.arrival_stamps = True
        for link in self.links.values():
            if hasattr(link, "stamp_arrivals"):
                link.stamp_arrivals()

    def rx_wait(self) -> float:
        """Seconds the frame being handled waited in the kernel before we read it: 0 when not known (no stamps, or
        not handling a frame from a link)."""
        arrived = getattr(self._rx_link, "arrived", None)
        return 0.0 if arrived is None else max(0.0, time.time() - arrived)

    def close(self):
        for link in self.links.values():
            self.loop.remove_reader(link)
            link.close()
        self.links.clear()
        self.down_links.clear()          # and the probe timer stops
        if self.tun is not None:
            self.loop.remove_reader(self.tun)
            self.tun.close()
            self.tun = None

    def drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # -- from TUN ----------------------------------------------------------------------------------------
    def _on_tun_readable(self):
        read, fd = self._tun_read, self._tun_fd
        for _ in range(READ_BATCH):
            try:
                packet = read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                self.drop("tun_read_error")
                return
            self.counters["tun_rx_packets"] += 1
            self.counters["tun_rx_bytes"] += len(packet)
            self.send_ip6(packet)

    def send_ip6(self, packet):
        """Send one IPv6 packet (from TUN, or built by the agent) into the mesh; hold it while its destination
        has no path yet (one is being asked for) or no session that can carry data yet."""
        if len(packet) < 40 or packet[0] >> 4 != 6:
            self.drop("tun_not_ipv6")
            return
        dest = packet[24:40]
        d = self.dests.get(dest)
        if d is None:
            if dest[0] != 0xFC:
                self.drop("tun_not_fc00")
                return
            d = self._new_destination(dest)
        if d is None or d.header is None:
            if self.paths.asks:
                self._hold(dest, packet)
            else:
                self.drop("no_path")
            return
        if not self._session_ready(d):
            first = dest not in self.held
            self._hold(dest, packet)
            if first:
                self._start_session(d)
            return
        if dest in self.held:           # earlier packets still wait: they go first
            self._hold(dest, packet)
            self._release(d)
            return
        self._send_ip6_now(d, packet)

    def _hold(self, ip6, packet):
        self.held.hold(ip6, packet, self.clock())      # no room: counted there (held_full, in the drops)

    def _session_ready(self, d):
        """The session can carry data: established, or our Hello was answered (cjdns: RECEIVED_KEY and up)."""
        peer = self.sessions.peers.get(d.public_key)
        if peer is None:
            return False
        peer.session.check_timeout(self.clock())          # an idle session resets here, not inside wrap()
        return not peer.session.next_packet_is_handshake

    def _start_session(self, d):
        """A bare handshake packet (Hello, or a repeated Hello or Key) to get the session to carry data."""
        self._send_content(d, b"", self.clock())

    def release_held(self):
        """Send what waits for a destination that can now be reached: its path came (a route server answered) or
        its session can carry data. Called when either may have happened, and every housekeeping run (which also
        repeats a handshake that got no answer)."""
        self.held.expire(self.clock())
        for ip6 in self.held.destinations():
            d = self.dests.get(ip6) or self._new_destination(ip6)
            if d is None or d.header is None:
                continue                     # still no path (the path provider keeps asking)
            if not self._release(d):
                self._start_session(d)

    def _release(self, d):
        """Send what is held for d if its session can carry data; False if it cannot yet."""
        if not self._session_ready(d):
            return False
        for packet in self.held.take(d.ip6, self.clock()):
            self._send_ip6_now(d, packet)
        return True

    def _send_ip6_now(self, d, packet):
        now = self.clock()
        if d.unanswered_since is None:
            d.unanswered_since = now
        elif now - d.unanswered_since > UNANSWERED_RESET_S:
            self._restart_session(d, now)
        try:
            out = d.header + self.sessions.wrap(d.public_key, pack_data_header(packet[6]) + packet[40:], now)
        except CryptoAuthError as e:
            self.drop("encrypt_" + e.reason)
            return
        d.tx_packets += 1
        d.last_tx = now
        self.forwarder.forward(ROUTER, out)

    def send_content_to(self, public_key, label, content_type, payload, via=()):
        """Session content of another type (256: route server messages) to a key, on the given label (and
        waypoint segments)."""
        d = self.dests_by_key.get(public_key)
        if d is None:
            ip6 = keys.address_for_key(public_key)
            d = Destination(ip6, public_key, label, via)
            self.dests[ip6] = d
            self.dests_by_key[public_key] = d
        elif label and (d.label, d.via) != (label, tuple(via)):
            d.set_label(label, via)
        self._send_content(d, pack_data_header(content_type) + payload, self.clock())

    def _send_content(self, d, content, now):
        """Send session content (b"" = a bare handshake or keepalive) to a destination."""
        if d.header is None:
            return
        try:
            out = d.header + self.sessions.wrap(d.public_key, content, now)
        except CryptoAuthError as e:
            self.drop("encrypt_" + e.reason)
            return
        d.last_tx = now
        self.forwarder.forward(ROUTER, out)

    def housekeeping(self):
        """Every KEEPALIVE_S: the liveness verdict of every peer link (liveness.py; a stall of our own loop
        forgives what went unanswered meanwhile), a switch PING to every peer that needs one (a quiet peer, an
        unanswered probe, an answer due: Liveness.wants_probe), and a keepalive
        to destinations that send us data while we stay silent, so their sessions see answers (and only a really
        lost session triggers their restart). Only IPv6 data makes one due (its sender's silence watch waits for
        an answer): were keepalives answered too, two ends that ever talked would keep each other's sessions busy
        for good."""
        now = self.clock()
        if self.loop_watch.tick(now):
            self.counters["loop_stalls"] += 1
            for link in self.links.values():
                link.liveness.forgive()
        for link in self.links.values():
            link.liveness.check(now)
            up = self.link_up(link)
            if up:
                self.down_links.discard(link.switch_index)
            elif link.liveness.last_answered is not None:     # it answered once, and then stopped
                self.mark_down(link.switch_index)
            self._note_transition(link, up)
            if link.liveness.wants_probe(now):
                self.ping_link(link, now)
        if self.held:
            self.release_held()
        for d in self.dests.values():
            if d.last_rx_data is not None and now - d.last_rx_data < 2 * KEEPALIVE_S and \
                    (d.last_tx is None or now - d.last_tx > KEEPALIVE_S):
                self.counters["keepalives_sent"] += 1
                self._send_content(d, b"", now)

    def _note_transition(self, link, up):
        if up != link.was_up:
            log.info("%s: peer %s on %s is %s", self.name, link.peer_name or link.peer_addr, link.ifname,
                     "up" if up else "down")
            link.was_up = up
            self.counters["peer_down"] += not up
            self.on_link_change()

    def _new_destination(self, ip6, public_key=None):
        label, via = None, ()
        found = self.paths.lookup(ip6)
        if found is not None:
            public_key, label, via = found
        if public_key is None:
            return None
        d = Destination(ip6, public_key, label, via)
        log.info("%s: new destination %s (label %s)", self.name, keys.ip6_text(ip6),
                 labels.label_text(label) if label is not None else "learned from its packets")
        self.dests[ip6] = d
        self.dests_by_key[public_key] = d
        return d

    def _restart_session(self, d, now):
        """We keep sending but hear nothing: the other end may have restarted. Start over with a Hello."""
        d.unanswered_since = now
        peer = self.sessions.peers.get(d.public_key)
        if peer is not None and peer.session.state not in (State.INIT, State.SENT_HELLO):
            peer.session.reset()
            self.counters["sessions_reset"] += 1
            log.info("%s: no answer from %s for %.0f s: restarting the session", self.name,
                     keys.ip6_text(d.ip6), UNANSWERED_RESET_S)

    # -- switching ---------------------------------------------------------------------------------------
    def _on_link_readable(self, link):
        recv = link.recv
        forward = self.forwarder.forward    # looked up per batch: a plane may have taken the forwarder's place
        index = link.switch_index
        link.liveness.heard(self.clock())   # any frame is proof of life (liveness.py)
        open_frame = link.open if link.session is not None else None
        self._rx_link = link
        try:
            for _ in range(READ_BATCH):
                try:
                    packet = recv(65535)
                except BlockingIOError:
                    return
                except OSError as e:
                    link.drop("recv_error")     # e.g. ECONNREFUSED after the peer's port was closed
                    if e.errno == errno.ECONNREFUSED:
                        link.refused_at = self.clock()
                    continue
                link.rx_packets += 1
                link.rx_bytes += len(packet)
                if open_frame is not None:
                    packet = open_frame(packet)     # the link session's frame, or None (counted on the link)
                    if packet is None:
                        continue
                forward(index, packet)
        finally:
            self._rx_link = None

    def receive_from_link(self, link, packet):
        """One packet from a peer link (what the readable handler does for each packet it reads)."""
        link.liveness.heard(self.clock())
        link.rx_packets += 1
        link.rx_bytes += len(packet)
        packet = link.open(packet)
        if packet is not None:
            self.forwarder.forward(link.switch_index, packet)

    # -- to our router -----------------------------------------------------------------------------------
    def to_router(self, packet):
        """A switched packet for this node's own router: a control message, or session traffic for us."""
        if len(packet) < 16:
            self.drop("runt")
            return
        marker = packet[12:16]
        if marker == CONTROL_FRAME:
            self._control(packet)
            return
        back = ()               # the way from the last waypoint the packet came by to its source
        if marker == waypoints.WAYPOINT or marker == waypoints.RETURN:
            try:
                back, rest = waypoints.returns(packet[12:])
            except waypoints.WaypointError as e:
                self.drop(e.reason)
                return
            if rest[:4] == waypoints.WAYPOINT:
                self._relay(packet)
                return
            packet = packet[:12] + rest
        now = self.clock()
        try:
            her_key, plain = self.sessions.unwrap(packet[12:], now)
        except CryptoAuthError as e:
            self.drop("session_" + e.reason)
            return
        d = self.dests_by_key.get(her_key)
        if d is None:
            ip6 = keys.address_for_key(her_key)
            if ip6[0] != 0xFC:
                self.sessions.forget(her_key)
                self.drop("session_bad_key")
                return
            d = self._new_destination(ip6, her_key)
        d.rx_packets += 1
        d.unanswered_since = None
        label = _be64.unpack_from(packet)[0]
        if label != d.learned_label or back != d.learned_via:
            d.learned_label, d.learned_via = label, back
            if d.header is None:        # no path from the provider: answer on the path it came by
                d.set_label(*d.way_back())
        if packet[12] == 0 and packet[13] == 0 and packet[14] == 0 and packet[15] <= 3:
            if packet[15] <= 1:
                # We just accepted a Hello: answer with a Key at once, so the handshake completes even when we
                # have nothing to send (a one-way flow would otherwise stay on repeated Hellos).
                self._send_content(d, b"", now)
            elif d.ip6 not in self.held:
                # Our Hello was answered: data from us now makes the other side's session established, and it
                # sends what it holds for us (held_packets.py)
                self._send_content(d, b"", now)
        if d.ip6 in self.held:
            self._release(d)
        if not plain:
            return      # a bare handshake or keepalive
        try:
            _, content_type, payload = parse_data_header(plain)
        except CryptoAuthError:
            self.drop("bad_data_header")
            return
        if content_type >= 256:
            # route-server messages arm no silence watch at their sender (only IPv6 data does): they need no
            # keepalive (at 1000 nodes, one after each announcement's reply was most of the keepalives)
            handler = self.content_handlers.get(content_type)
            if handler is None:
                self.drop("unsupported_content_type")
            else:
                handler(d, payload)
            return
        d.last_rx_data = now
        if content_type == ICMPV6 and self._pings and len(payload) >= 8 and payload[0] == 129:
            if self._pong(payload, now):
                return
        header = _ip6_head.pack(0x60000000, len(payload), content_type, HOP_LIMIT, d.ip6, self.ip6)
        try:
            self.deliver(header + payload)
        except OSError:
            self.drop("tun_write_error")
            return
        self.counters["tun_tx_packets"] += 1
        self.counters["tun_tx_bytes"] += len(payload) + 40

    def _relay(self, packet):
        """We are a waypoint: send the packet on by the next segment's label (node/cjdns/waypoints.py)."""
        header = SwitchHeader.unpack(packet)
        try:
            label, rest = waypoints.relay(packet[12:], header.label)
        except waypoints.WaypointError as e:
            self.drop(e.reason)
            return
        self.counters["waypoint_relayed"] += 1
        self.forwarder.forward(ROUTER, header.replace(label=label, label_shift=0).pack() + rest)

    def _control(self, packet):
        try:
            msg = control.unframe(packet[12:])
        except ValueError:
            self.drop("bad_control")
            return
        if isinstance(msg, control.Error):
            self._switch_error(msg)
            return
        if isinstance(msg, control.Ping) and msg.pong:
            self._link_pong(msg, _be64.unpack_from(packet)[0])
            return
        if isinstance(msg, control.Ping) and not msg.pong:
            back = labels.bit_reverse64(_be64.unpack_from(packet)[0])
            reply = SwitchHeader(label=back).pack() + control.frame(msg.reply(PROTOCOL_VERSION))
            self.forwarder.forward(ROUTER, reply)
            return
        if self.control_hook is not None and self.control_hook(msg, packet):
            return
        self.drop("control_ignored")

    def _switch_error(self, msg):
        """A switch on the path could not forward a packet (dead hop, bad label). Ours: count it and tell the path
        provider which destination's label failed (the cause carries her handle, after any waypoint frames). One
        we sent on as a waypoint: send the error back the way the packet came."""
        self.counters["switch_errors_received"] += 1
        self.drop(f"switch_error_{msg.name.lower()}")
        cause = msg.cause
        if len(cause) < 16:
            return
        relayed = waypoints.error_back(cause)
        if relayed is not None:             # a packet we sent on as a waypoint: the error goes back its way
            back, rest = relayed
            header = SwitchHeader(label=back, congestion=1, suppress_errors=True, version=1, traffic_class=UNCLASSED)
            self.counters["waypoint_errors_relayed"] += 1
            self.forwarder.forward(ROUTER, header.pack() + control.frame(control.Error(msg.error_type, rest)))
            return
        try:
            ahead, session = waypoints.session_part(cause[12:])
        except waypoints.WaypointError:
            return
        if len(session) < 4:
            return
        d = self.dests_by_key.get(self.sessions.key_for_her_handle(_be32.unpack_from(session)[0]))
        if d is None or d.label is None:
            return
        if self.serves_routes and d.tx_packets == 0:
            # an answer to a client (or a federation peer) that went back a way that broke: its next query comes
            # its own new way; asking our server for a path we would not use cost the servers of a 1000-node
            # mesh most of their path queries (each re-asked while it failed)
            self.counters["switch_errors_on_answers"] += 1
            return
        self.paths.report_failure(d.ip6, d.label, self._dead_hop(msg, d, cause, ahead))

    @staticmethod
    def _dead_hop(msg, d, cause, ahead):
        """The label to the far end of the dead link, for an UNDELIVERABLE on our first segment (the cause still
        has all our waypoint frames); None for other errors and those a waypoint sent back from a later segment."""
        if msg.name != "UNDELIVERABLE" or ahead != len(d.via):
            return None
        return Switch.dead_hop_label(d.label, cause)

    # -- link liveness: switch PING to the peer's router, PONG back -----------------------------------------
    def ping_link(self, link, now=None):
        now = self.clock() if now is None else now
        data = _link_ping.pack(link.switch_index, now)
        packet = SwitchHeader(label=self.switch.label_for(link.switch_index)).pack() + \
            control.frame(control.Ping(PROTOCOL_VERSION, data))
        link.pings_sent += 1
        link.liveness.probe_sent(now)
        self.forwarder.forward(ROUTER, packet)

    def _link_pong(self, msg, label):
        """A PONG echoes what our link ping carried (our link index, our send time). The peer can write anything
        there: it counts only when it came in on the link it names, with a send time we can have used lately
        (NaN, infinite, future or stale times are dropped), so a forged pong neither marks a link up nor
        poisons its RTT."""
        if len(msg.data) != _link_ping.size:
            self.drop("pong_unknown")
            return
        index, sent = _link_ping.unpack(msg.data)
        link = self.links.get(index)
        if link is None:
            self.drop("pong_unknown")
            return
        if labels.bit_reverse64(label) != self.switch.label_for(index):
            self.drop("pong_wrong_link")
            return
        now = self.clock()
        if not 0 <= now - sent <= PONG_MAX_AGE_S:
            self.drop("pong_bad_time")
            return
        link.liveness.answered(now - sent, now)
        link.rtt_ms = round((now - sent) * 1000, 3)
        if self.link_up(link):
            self.down_links.discard(link.switch_index)           # back now, not at the next housekeeping
            self._note_transition(link, True)

    def mark_down(self, index):
        """Link ``index`` stopped answering (or refused): forwarding answers ERROR on it, and it is probed every
        DOWN_PROBE_S until it answers; the probe timer runs only while a link is down (an idle mesh has none)."""
        self.down_links.add(index)
        self._arm_probe()

    def _arm_probe(self):
        if self._probe_timer is None and self.down_links:
            self._probe_timer = self.loop.call_later(DOWN_PROBE_S, self._probe_tick)

    def _probe_tick(self):
        self._probe_timer = None
        self.errors.guard("probe_down_links", self._probe_down_links)()
        self._arm_probe()

    def _probe_down_links(self):
        now = self.clock()
        for index in list(self.down_links):
            link = self.links.get(index)
            if link is not None:
                self.ping_link(link, now)

    def link_up(self, link):
        """Up by its liveness (liveness.py), and its port was not refused since its last answer (a dead agent)."""
        lv = link.liveness
        return lv.up and (link.refused_at is None or link.refused_at < lv.last_answered)

    # -- end-to-end ping (ICMPv6 echo through the mesh) ----------------------------------------------------
    def ping(self, dest_ip6, on_result, timeout_s=3.0, size=56):
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        seq = self._ping_seq
        body = struct.pack(">BBHHH", 128, 0, 0, self._ping_id, seq) + bytes(size)
        body = body[:2] + struct.pack(">H", _icmp6_checksum(self.ip6, dest_ip6, body)) + body[4:]
        packet = _ip6_head.pack(0x60000000, len(body), ICMPV6, HOP_LIMIT, self.ip6, dest_ip6) + body
        started = self.clock()
        timer = self.loop.call_later(timeout_s, self.errors.guard("ping_timeout", self._ping_timeout), seq)
        self._pings[seq] = (started, on_result, timer)
        self.send_ip6(packet)

    def _pong(self, payload, now):
        ident, seq = struct.unpack_from(">HH", payload, 4)
        if ident != self._ping_id or seq not in self._pings:
            return False
        started, on_result, timer = self._pings.pop(seq)
        timer.cancel()
        on_result({"reachable": True, "rtt_ms": round((now - started) * 1000, 3)})
        return True

    def _ping_timeout(self, seq):
        entry = self._pings.pop(seq, None)
        if entry:
            entry[1]({"reachable": False, "rtt_ms": None})

    # -- run-time changes and reports ----------------------------------------------------------------------
    def set_link(self, ifname, changes):
        link = self.links_by_name.get(ifname)
        if link is None:
            raise ValueError(f"no peer link {ifname!r} (links: {', '.join(sorted(self.links_by_name))})")
        if changes.get("reset"):
            params = LinkParams.from_dict({k: v for k, v in changes.items() if k != "reset"}, ifname)
        else:
            params = link.emulator.params.merged(changes, ifname)
        link.set_params(params)
        return params.to_dict()

    def set_paths(self, table):
        self.paths.replace(table)
        for d in self.dests.values():
            found = self.paths.lookup(d.ip6)
            if found is not None and found[0] == d.public_key:
                d.set_label(found[1], found[2])

    def describe_sessions(self):
        out = []
        for key, peer in self.sessions.peers.items():
            d = self.dests_by_key.get(key)
            out.append({"ip6": keys.ip6_text(d.ip6 if d else keys.address_for_key(key)),
                        "public_key": keys.pubkey_text(key), "state": peer.session.state.name,
                        "established": peer.session.established, "my_handle": peer.my_handle,
                        "her_handle": peer.her_handle,
                        "label": labels.label_text(d.label) if d and d.label is not None else None,
                        "via": [labels.label_text(v) for v in d.via] if d else [],
                        "return_label": labels.label_text(labels.bit_reverse64(d.learned_label))
                        if d and d.learned_label is not None else None,
                        "return_via": [labels.label_text(v) for v in d.learned_via] if d else [],
                        "rx_packets": d.rx_packets if d else 0, "tx_packets": d.tx_packets if d else 0})
        return out

    def wall_clock(self) -> float:
        """This node's idea of the Unix time: what announcements and config requests are stamped and judged by."""
        return self._wall_clock() + self.clock_offset_s

    def status(self):
        return {"node": self.name, "ip6": self.identity.ip6_text, "public_key": self.identity.pubkey_text,
                "uptime_s": round(self.clock() - self.started, 3), "healthy": self.tun is not None,
                "peers_up": sum(1 for l in self.links.values() if self.link_up(l)), "peers": len(self.links),
                "tun": self.config.tun_ifname, "mtu": self.config.tun_mtu,
                "clock_offset_s": self.clock_offset_s}

    def peers(self):
        return [{"switch_index": l.switch_index, "ifname": l.ifname, "local_addr": l.local_addr,
                 "peer_addr": l.peer_addr, "peer_name": l.peer_name,
                 "peer_public_key": keys.pubkey_text(l.peer_public_key) if l.peer_public_key else None,
                 "label": labels.label_text(self.switch.label_for(l.switch_index)),
                 "up": self.link_up(l), "rtt_ms": l.rtt_ms, "pings_sent": l.pings_sent,
                 "liveness": l.liveness.describe(self.clock()),
                 "link_session": l.session.state if l.session is not None else "off",
                 "link_emulation": l.emulator.params.to_dict()} for l in self.links.values()]

    def all_counters(self):
        switch_counters = getattr(self.switch, "counters", {})
        return {"tun": dict(self.counters), "interfaces": {l.ifname: l.counters() for l in self.links.values()},
                "drops": dict(self.drops, **{k: n for k, n in self.held.counters.items()
                                             if k.startswith("held_") and n}),
                "held": {"held": self.held.counters["held"], "released": self.held.counters["released"],
                         "waiting": len(self.held)}, "switch": dict(switch_counters),
                "path_failures": dict(getattr(self.paths, "failures", {})),
                "handler_errors": dict(self.errors.counts)}


def _icmp6_checksum(src, dst, body):
    pseudo = src + dst + struct.pack(">IxxxB", len(body), ICMPV6) + body
    if len(pseudo) % 2:
        pseudo += b"\0"
    total = sum(struct.unpack(f">{len(pseudo) // 2}H", pseudo))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip6_bytes(text):
    return socket.inet_pton(socket.AF_INET6, text)
