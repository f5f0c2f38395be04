"""In-memory peer links and a hand-driven event loop: data-plane Nodes wired together without namespaces or
sockets, for simulations (bench.route_server) and tests. A MemoryLink has what a Node reads from a PeerLink."""
import heapq
import itertools
from collections import deque

from node.agent.event_loop import Timer
from node.agent.handler_errors import HandlerErrors
from node.tun_switch.link_emulation import LinkEmulator
from node.tun_switch.liveness import Liveness
from node.tun_switch.peer_link import open_frame, seal


class ManualLoop:
    """Just enough event loop for Nodes driven by hand: the caller sets `now`; timers never fire by themselves."""

    def __init__(self, now=100.0):
        self.now = now
        self.errors = HandlerErrors()      # like the real loop's (nothing runs behind it here)

    def clock(self):
        return self.now

    def add_reader(self, *a):
        pass

    remove_reader = add_reader

    def call_later(self, delay, fn, *args):
        return Timer(self.now + delay, fn, args)     # a handle to cancel, like the real loop's

    def call_at(self, when, fn, *args):
        return Timer(when, fn, args)

    call_every = call_later


class TimerLoop(ManualLoop):
    """A ManualLoop whose timers fire: ``run_until(t)`` moves ``now`` from one due timer to the next and runs it,
    as the real loop would (without sleeping). For tests of what runs on timers alone."""

    def __init__(self, now=100.0):
        super().__init__(now)
        self._heap = []
        self._seq = itertools.count()

    def call_at(self, when, fn, *args):
        timer = Timer(when, fn, args)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay, fn, *args):
        return self.call_at(self.now + delay, fn, *args)

    def call_every(self, period, fn):
        def tick():
            self.call_later(period, tick)
            fn()
        return self.call_later(period, tick)

    def run_until(self, until, after_each=lambda: None):
        """Run every timer due up to ``until`` in time order (``after_each`` after each, e.g. a wire's pump)."""
        while self._heap and self._heap[0][0] <= until:
            when, _, timer = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.fn(*timer.args)
                after_each()
        self.now = until


class MemoryWire:
    """All links of an in-memory mesh: frames wait in one queue until pump().

    `cut` holds (owner, ifname) link ends whose frames are lost; `tamper(node, packet)`, if set, rewrites each
    frame as it is delivered; every callable in `taps` is then called with (sending link, packet), a capture
    point on the wire that sees each frame as its receiver gets it."""

    def __init__(self):
        self.queue = deque()
        self.cut = set()
        self.tamper = None
        self.taps = []

    def pump(self, limit=100_000):
        n = 0
        while self.queue and n < limit:
            node, link, packet = self.queue.popleft()
            if self.tamper:
                packet = self.tamper(node, packet)
            for tap in self.taps:
                tap(link.remote[1], packet)
            node.receive_from_link(link, packet)
            n += 1

    def join(self, node_a, link_a, node_b, link_b):
        """Connect two link ends and add them to their nodes."""
        link_a.remote, link_b.remote = (node_b, link_b), (node_a, link_a)
        node_a.add_link(link_a)
        node_b.add_link(link_b)


class MemoryLink:
    """``session`` (a LinkSession, with ``clock`` for its time) seals what the link sends, like a PeerLink's."""

    def __init__(self, wire, owner, switch_index, ifname, peer_name="", peer_key=None, session=None, clock=None):
        self.wire, self.owner = wire, owner
        self.session, self.clock = session, clock
        self.drops = {}
        self.switch_index, self.ifname, self.peer_name = switch_index, ifname, peer_name
        self.peer_addr = "fd00::1"
        self.peer_public_key = peer_key
        self.emulator = LinkEmulator()
        self.rx_packets = self.rx_bytes = self.tx_packets = self.pings_sent = 0
        self.liveness = Liveness()
        self.rtt_ms = self.refused_at = None
        self.was_up = False
        self.remote = None          # (node, link) at the other end

    emulated = False

    def drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def send(self, packet, on_fail=None):
        if self.session is not None and (packet := seal(self, packet, self.clock())) is None:
            return
        self.tx_packets += 1
        if (self.owner, self.ifname) not in self.wire.cut:
            self.wire.queue.append((*self.remote, packet))

    def open(self, packet):
        return packet if self.session is None else open_frame(self, packet, self.clock())

    def counters(self):
        return {"rx_packets": self.rx_packets, "tx_packets": self.tx_packets, "drops": dict(self.drops)}
