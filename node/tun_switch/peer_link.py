"""One peer link in overlay mode: a UDP socket bound to the link's local IPv6 address, connected to the peer.

With a LinkSession (node/cjdns/link_session.py, the default: cjdns encrypts every peer link) each frame is
sealed in the link's CryptoAuth session before it leaves, and ``open`` takes a received datagram back to its
frame (a rejected one is a drop counted as ``link_<reason>``). Egress goes through an optional LinkEmulator,
after the encryption (it stands for the wire: a corrupted frame fails authentication at the peer); when it is
inactive packets are sent straight away. Send errors
(peer down: ECONNREFUSED, full buffers: EAGAIN, no route) are counted as drops, never raised. ECONNREFUSED (the
peer's kernel answered port unreachable: its agent is gone) and a missing route mean nobody will forward what we
send: ``send`` returns False, and ``refused_at`` tells the node the peer was last refused (the link is down until
it answers a link ping again).

``stamp_arrivals`` (a route server's links) has the kernel stamp each datagram's arrival (SO_TIMESTAMPNS): a
busy node reads a datagram later than it arrived, and the node can tell how long it waited (``arrived``).
"""

import errno
import logging
import socket
import struct

from node.cjdns.cryptoauth import CryptoAuthError
from node.tun_switch.link_emulation import LinkEmulator, LinkParams
from node.tun_switch.liveness import Liveness

log = logging.getLogger(__name__)

IP_FREEBIND = 15
SO_TIMESTAMPNS = 35            # Linux <asm-generic/socket.h>; Python's socket module does not name it
_TIMESPEC = struct.Struct("@qq")
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
SOCKET_BUFFER = 4 * 1024 * 1024
RECV_SIZE = 65535
# send errors that mean the link itself is gone (its veth is down: the route to the peer went with it)
DEAD_LINK_ERRNOS = (errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)


class PeerLink:
    def __init__(self, switch_index, ifname, local_addr, peer_addr, port, peer_public_key=None, peer_name="",
                 loop=None, params=None, rng=None, session=None):
        self.switch_index = switch_index
        self.ifname = ifname
        self.local_addr = local_addr
        self.peer_addr = peer_addr
        self.port = port
        self.peer_public_key = peer_public_key
        self.peer_name = peer_name
        self.loop = loop
        self.session = session                   # LinkSession, or None: frames go in plaintext
        self.emulator = LinkEmulator(params or LinkParams(), rng)
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self.drops = {}
        self.liveness = Liveness()               # kept by the node: its probes, their answers, any frame heard
        self.rtt_ms = None                       # the last probe's round trip
        self.refused_at = None                   # the last ECONNREFUSED (the peer's port is closed)
        self.dead = False                        # the last send failed for good (no route, refused)
        self.was_up = False
        self.pings_sent = 0
        self.arrived = None                      # with stamp_arrivals: the kernel's receive time of the last read
        self.sock = self._open_socket()
        self._send = self.sock.send
        self.recv = self.sock.recv
        self.emulated = self.emulator.active

    def _open_socket(self):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            # Bind even if the per-link address is not configured yet (the orchestrator adds it).
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            sock.bind((self.local_addr, self.port))
            sock.connect((self.peer_addr, self.port))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"peer link {self.ifname} [{self.local_addr}]:{self.port} -> "
                                   f"[{self.peer_addr}]:{self.port}: {e.strerror}") from e
        return sock

    def fileno(self):
        return self.sock.fileno()

    def stamp_arrivals(self):
        """From now on ``recv`` records in ``arrived`` when the kernel received the datagram (Unix seconds)."""
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.recv = self._recv_stamped

    def _recv_stamped(self, size):
        data, ancillary, _, _ = self.sock.recvmsg(size, _STAMP_SPACE)
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                self.arrived = sec + nsec * 1e-9
        return data

    def drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def set_params(self, params):
        self.emulator.set_params(params)
        self.emulated = params.active

    def send(self, packet, on_fail=None):
        """Send or queue one packet; False when the link is dead (the caller answers with a switch error).
        Behind emulated delay the send happens later: ``on_fail()`` is called then if the link turned out dead,
        so that packet's sender still gets its switch error."""
        if self.session is not None:
            packet = seal(self, packet, self.loop.clock())
            if packet is None:
                return True                # counted; the link itself is fine
        if self.emulated:
            loop = self.loop
            alive = not self.dead          # a link whose last send failed counts as dead (a link ping revives it)
            for when, pkt in self.emulator.process(packet, loop.clock()):
                loop.call_at(when, self._send_delayed, pkt, on_fail if alive else None)
                on_fail = None             # one error for a duplicated packet
            return alive
        return self.send_now(packet)

    def _send_delayed(self, packet, on_fail):
        if not self.send_now(packet) and on_fail is not None:
            on_fail()

    def send_now(self, packet):
        try:
            self._send(packet)
        except OSError as e:
            self.drop(_send_error_reason(e))
            if e.errno == errno.ECONNREFUSED:
                self.refused_at = self.loop.clock() if self.loop else 0.0
            self.dead = e.errno == errno.ECONNREFUSED or e.errno in DEAD_LINK_ERRNOS
            return not self.dead
        self.dead = False
        self.tx_packets += 1
        self.tx_bytes += len(packet)
        return True

    def open(self, packet):
        """The frame inside a datagram from the peer (plaintext links: the datagram), or None (counted)."""
        return packet if self.session is None else open_frame(self, packet, self.loop.clock())

    def counters(self):
        out = {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes, "tx_packets": self.tx_packets,
               "tx_bytes": self.tx_bytes, "drops": dict(self.drops)}
        emu = {k: v for k, v in self.emulator.counters.items() if v}
        if emu:
            out["emulation"] = emu
        return out

    def close(self):
        self.sock.close()


def seal(link, frame, now):
    """``frame`` sealed in the link's session, or None (a drop counted on the link)."""
    try:
        return link.session.seal(frame, now)
    except CryptoAuthError as e:
        link.drop("link_" + e.reason)
        return None


def open_frame(link, packet, now):
    """The frame inside a datagram of the link's session, or None (a drop counted on the link)."""
    try:
        return link.session.open(packet, now)
    except CryptoAuthError as e:
        link.drop("link_" + e.reason)
        return None


def _send_error_reason(e):
    if e.errno in (errno.EAGAIN, errno.ENOBUFS):
        return "send_buffer_full"
    if e.errno == errno.ECONNREFUSED:
        return "peer_unreachable"
    if e.errno == errno.EMSGSIZE:
        return "too_big"
    if e.errno in DEAD_LINK_ERRNOS:
        return "link_down"
    return "send_error"
