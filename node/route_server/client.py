"""The node's side of the route server protocol, as pure clock-injected logic (pkt-reference.md §4, DESIGN.md §4).

:class:`RouteServerClient` is a path provider (``lookup(ip6)`` / ``report_failure(ip6, label)``, see
node/path_provider.py) that learns paths like a DNS stub resolver learns addresses:

* **Discovery** (cjdns SupernodeHunter): every ``hunt_interval_ms`` while it has no route server (and every
  ``refresh_interval_ms`` after), it sends a GETSNODE query to each peer. A reply names the route server the peer
  uses and the peer's label to it; our label is that label spliced onto our one-hop label to the peer. With an
  ``allowed`` list (the route servers of our Cloud ISP) other servers are not used. Every server heard of is
  reported to ours (``frs``), which is how route servers find a first path to each other. Replies to ``ann``
  also list ``alt``: the other route servers of the ISP with a path from us, the failover candidates. Static
  candidates can be configured.
* **Announcements** (cjdns ReachabilityAnnouncer): at most ``announce_interval_ms`` apart (each wait drawn from
  its second half, seeded by our key: the nodes of a mesh that came up together, or failed over together, do not
  keep announcing in one burst; at 1000 nodes such bursts held up every path for seconds every interval) and soon
  after the peer set changes, a signed announcement with our encoding scheme, version, one PEER entity per link
  (the peer's label to us, our label to it as peerNum), a LINK_QUALITY entity per measured link and a LEASE entity
  per lease of ours (``set_leases``: the host passes what its lease table holds), an OFFER entity per market offer
  of this device whose term has not ended (``set_offers``: its market tells the host); peers that went away are
  withdrawn with label 0. The first announcement to a server, every ``reset_every``-th one, and any after a
  rejection or a state-hash mismatch carry the reset flag. Timestamps are in the server's time (clock-skew
  estimate from the ``recvTime`` of announcement replies only, as cjdns's ReachabilityAnnouncer does; with the
  reply's ``sendTime`` as NTP does, so the time a busy server held the query is not taken for skew, messages.py).
  A sample is off by at most half the network time of its round trip; one whose bound is wider than
  ``SKEW_EXACT_MS`` and still holds the current estimate leaves it (``skew_kept``). A ``recvTime`` more than
  ``MAX_SKEW_MS`` (a day) away from our clock says nothing about clocks: it is counted (``bad_recv_time``) and
  ignored.
* **Look-ups**: ``lookup`` answers ``(key, label, via)`` from the cache (``via``: the labels of waypoint segments
  after the first, from a ``wp`` reply; node/cjdns/waypoints.py); a miss queues a ``gr`` query (naming
  ``lease_holders``, the keys whose leases our traffic may use, so the server prefers them) and returns None (the
  data plane holds the packet until the path comes, node/tun_switch/node.py). Entries live ``cache_ttl_ms``; an
  expired entry is still served while it is being refreshed. ``report_failure`` (a switch error for that label)
  drops the entry and re-queries at once, naming the failed labels (``bad``) so the server can answer with a path
  around them; a server that still answers with a label that just failed is asked again after a short wait.
* **Timeouts follow the server** (TCP's RTO, RFC 6298): the round trips of our queries to the server give a smoothed
  RTT and its variation; a query is given up after ``query_timeout_ms`` or SRTT + 4 RTTVAR, whichever is longer
  (at most ``MAX_TIMEOUT_MS``). A server that answers late because it is busy (its queue is long) is not taken
  for dead, and we do not pile re-sent queries and re-announcements onto its queue; after an announcement was
  rejected, the next waits a round trip (a server that is behind would reject it too while its queue is long).
  Each timeout doubles the least timeout until an answer comes (RFC 6298's back-off) while no other server is
  there to try: a client fails over as soon as before, but once it has tried every server it knows since the
  last answer (a whole mesh coming up on a busy machine, where a first answer takes longer than the configured
  timeout) it waits longer for one instead of sending it a reset announcement every few seconds, each one more
  in its queue. An answer that comes after its query was given up is still a round-trip sample: unlike TCP's
  retransmissions (Karn's rule) each query has its own txid, so the sample is not ambiguous. And the round trip
  is kept when the client moves to another server (it is the mesh's, more than the server's). Without those,
  at 1000 nodes on a saturated machine (round trips of 3-13 s) the clients' 1 s timeouts never learned anything:
  every announcement timed out, each client failed over every few seconds (n5: 122 timeouts and 129 failovers
  in 6 minutes, one announcement accepted), every failover re-announcing: a congestion collapse.
* **Failover**: a query unanswered after its timeout (above), or a switch error on the way to the server, marks
  the server failed for ``fail_hold_ms``; the next candidate (shortest label first) takes over, with a reset
  announcement, and queued look-ups go to it. With no other candidate, a failed one is tried again after
  ``lone_retry_ms`` (the failure may have been passing: a neighbour's agent not started yet).
* **A backup path to the server**: once the server holds our announcement, we ask it (a ``gr`` query for the
  server itself, with our current label as ``bad``) for a second path that shares no link with the first. When
  the first breaks (a switch error on the way to the server, or silence), queries move to the backup at once,
  instead of hunting: a link cut under both a flow and the way to the server costs one round trip, not a
  hunt and a query timeout. Labels that just failed are not taken again from peers' GETSNODE answers. While the
  server finds no second way, it is asked again after a doubling wait (MAX_BACKUP_WAIT_MS).

The host (agent or simulation) moves bytes: ``poll(now)`` returns :class:`Outgoing` items (GETSNODE control
messages to peers, bencoded messages to a route server inside a CryptoAuth session); it hands back GETSNODE
replies (``on_getsnode_reply``), answers peers' GETSNODE queries with ``answer_getsnode``, and passes route server
replies to ``on_reply``. Times are milliseconds (Unix epoch for announcement timestamps).
"""
from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace

from node.cjdns.paths import PathProvider, path_entry
from node.cjdns import control, keys, labels
from node.cjdns.labels import LabelError, V358
from . import announcement as A
from . import messages as M
from .state_hash import state_hash

SELF_LABEL = 1
MAX_CACHE = 4096                 # cached paths (and not-found entries); the soonest-expiring go first
MAX_WANTED = 512                 # look-ups waiting for an answer; more are refused (counted)
U32_MAX = 0xFFFFFFFF
MAX_SKEW_MS = 86_400_000         # a server clock further off than a day is a bad reply, not a skew to follow
SKEW_EXACT_MS = 1000             # a clock sample whose error bound is at most this always sets the estimate
MAX_TIMEOUT_MS = 30_000          # the longest a query waits for a slow server's answer
MAX_GIVEN_UP = 64                # queries given up whose late answers still count as round-trip samples
# A server that found no second way to it (none, or only one through waypoints, which a client does not use to reach
# its server) is asked again after twice the last wait, up to this (pktlab: at 1000 nodes these repeated backup
# queries, each up to four searches, cost a server more than all its other path queries; a new label to the server
# starts the wait again from the announce interval).
MAX_BACKUP_WAIT_MS = 600_000


def _u32(v) -> int:
    """A link metric as an announcement carries it: clamped into 0..2^32-1, 0 (unknown) if not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return 0
    return int(min(max(v, 0), U32_MAX))


@dataclass
class ClientConfig:
    announce_interval_ms: int = 10_000
    announce_min_gap_ms: int = 250          # after a peer change, announce this soon (rate limit)
    hunt_interval_ms: int = 3_000
    refresh_interval_ms: int = 30_000
    cache_ttl_ms: int = 60_000
    retry_ms: int = 1_000                    # a not-found or just-failed path is asked again after this
    failed_label_hold_ms: int = 10_000
    query_timeout_ms: int = 2_000
    fail_hold_ms: int = 30_000
    lone_retry_ms: int = 2_000               # no other candidate: a failed one is tried again after this
    reset_every: int = 8
    max_foreign_reports: int = 8
    allowed: tuple = ()                      # public keys of acceptable route servers; empty = any
    lease_holders: tuple = ()                # keys whose leases our traffic may use (our Cloud ISP's holder key)


@dataclass
class PeerInfo:
    """One link of ours as the agent sees it."""
    ip6: bytes
    our_label: int                 # our one-hop label to the peer
    their_label: int               # the peer's one-hop label to us
    public_key: bytes | None = None
    rtt_us: int = 0
    loss_ppm: int = 0
    capacity_kbps: int = 0


@dataclass(frozen=True)
class Outgoing:
    kind: str                      # "control" (payload: a control message object) or "snode" (payload: bytes)
    public_key: bytes | None       # the receiver's key (None for a control message to a peer)
    label: int
    payload: object


@dataclass
class Candidate:
    public_key: bytes
    label: int
    source: str
    failed_until: int = 0
    backup: int | None = None            # a second label to the server, sharing no link with ``label``
    backup_asked_ms: int | None = None
    backup_wait_ms: int = 0              # after "no second way": how long until we ask again (0: the announce interval)


@dataclass
class CacheEntry:
    public_key: bytes | None
    label: int | None
    expires_ms: int
    retry_at: int = 0
    via: tuple = ()


@dataclass
class _Pending:
    kind: str
    server: bytes
    sent_ms: int
    target: bytes | None = None
    raw: bytes = b""
    peers: dict | None = None          # for an announcement: the peers it listed
    sent_wall_ms: int = 0


@dataclass
class _Announced:
    raw: bytes
    timestamp_ms: int
    peers: dict = field(default_factory=dict)


class RouteServerClient(PathProvider):
    asks = True                 # a miss queues a query: the data plane holds the packet meanwhile
    def __init__(self, identity, clock, config: ClientConfig | None = None, scheme=V358,
                 version: int = M.PROTOCOL_VERSION, route_servers=(), serve_self: bool = False, wall_clock=None):
        """identity: keys.Identity; clock: () -> ms, steady (timers, timeouts, cache); wall_clock: () -> ms, the
        node's Unix time (announcement stamps; default: clock), which may jump; route_servers: static
        (public_key, label) candidates; serve_self: this node runs a route server, use it (label 1) and name it
        in GETSNODE replies."""
        self.identity = identity
        self.clock = clock
        self.wall_clock = wall_clock or clock
        self.config = config or ClientConfig()
        self.scheme = scheme
        self.version = version
        self.serve_self = serve_self
        self.allowed = {bytes(k) for k in self.config.allowed}
        self.counters: Counter = Counter()
        self.candidates: dict[bytes, Candidate] = {}
        self.heard: dict[bytes, int] = {}                   # route servers our peers use -> label from us
        if serve_self:
            self.candidates[identity.public_key] = Candidate(identity.public_key, SELF_LABEL, "self")
        for key, label in route_servers:
            self._add_candidate(bytes(key), label, "static")
        self.server: bytes | None = None
        self._had_server = False
        self.peers: dict[int, PeerInfo] = {}                # our_label -> peer
        self._peer_by_ip6: dict[bytes, PeerInfo] = {}
        self.leases: list = []
        self.offers: list = []
        self.cache: dict[bytes, CacheEntry] = {}
        self.wanted: dict[bytes, int] = {}                  # ip6 -> earliest time to ask
        self.failed_labels: dict[bytes, dict[int, int]] = {}     # ip6 -> {label: avoid until}
        self.dead_labels: dict[int, int] = {}               # label to the far end of a dead link -> avoid until
        self.pending: dict[bytes, _Pending] = {}
        self.acked: list[_Announced] = []                   # what the server holds since our last reset
        self.announced_peers: dict[int, PeerInfo] = {}      # as of the last acknowledged announcement
        self.needs_reset = True
        self.skew_ms = 0
        self.srtt_ms: float | None = None                 # our servers' smoothed round trip (kept across them)
        self.rttvar_ms = 0.0
        self.backoff = 1                                  # doubled by each timeout, 1 again at the next answer
        self.tried: set[bytes] = set()                    # servers we turned to since the last answer
        self.given_up: dict[bytes, tuple[bytes, int]] = {}   # txid -> (server, sent ms) of queries that timed out
        self.last_ts = 0
        self.next_announce = 0
        self._spread = random.Random(identity.public_key)    # the announcement waits (module docstring)
        self.next_hunt = 0
        self.snode_answered: set[int] = set()            # peers (our labels to them) that named a route server
        self.wake = lambda: None    # the host sets it: something waits to be sent, poll soon (not at the next tick)
        self._txid = 0

    # -- host inputs ----------------------------------------------------------------------------------
    def set_peers(self, peers) -> None:
        """Replace the peer list (PeerInfo items); an announcement follows soon if it changed. Link metrics
        outside what LINK_QUALITY carries (u32) are clamped into it and counted."""
        new = {p.our_label: self._checked_metrics(p) for p in peers}
        if {k: (p.ip6, p.their_label) for k, p in new.items()} != \
                {k: (p.ip6, p.their_label) for k, p in self.peers.items()}:
            self.next_announce = min(self.next_announce, self.clock() + self.config.announce_min_gap_ms)
            if not self.peers and new:
                self.next_hunt = 0
        self.peers = new
        self._peer_by_ip6 = {p.ip6: p for p in new.values()}

    def _checked_metrics(self, p: PeerInfo) -> PeerInfo:
        metrics = {name: getattr(p, name) for name in ("rtt_us", "loss_ppm", "capacity_kbps")}
        fixed = {name: _u32(v) for name, v in metrics.items()}
        if fixed == metrics and all(type(v) is int for v in metrics.values()):
            return p
        self.counters["peer_metric_clamped"] += 1
        return replace(p, **fixed)

    def set_leases(self, leases) -> None:
        """The LEASE entities (announcement.LeaseEntity) our next announcements carry: our end of each lease; an
        announcement follows soon if a lease came, went or changed hands (not for the expiry's rounding)."""
        def what(entities):
            return {(e.lease_id, e.peer_num, e.lease_num, e.guarantee_bps, e.holder) for e in entities}
        leases = list(leases)
        if what(leases) != what(self.leases):
            self.next_announce = min(self.next_announce, self.clock() + self.config.announce_min_gap_ms)
        self.leases = leases

    def set_offers(self, offers) -> None:
        """The OFFER entities (announcement.OfferEntity) our announcements carry from now on; an announcement
        follows soon if they changed (an offer came, or went: sold, withdrawn)."""
        offers = list(offers)
        if offers != self.offers:
            self.next_announce = min(self.next_announce, self.clock() + self.config.announce_min_gap_ms)
        self.offers = offers

    def on_getsnode_reply(self, msg: control.GetSnode, peer_label: int) -> None:
        """A peer (reached with our one-hop ``peer_label``) told us which route server it uses."""
        if not msg.reply or msg.snode_key == bytes(32) or msg.path_to_snode == 0:
            self.counters["getsnode_empty"] += 1
            return
        self.snode_answered.add(peer_label)
        key = bytes(msg.snode_key)
        if key == self.identity.public_key:
            return
        # a route server that is our own peer is reached by the one-hop label, never by a detour through the
        # peer that named it (its path may even lead back through us)
        label = next((p.our_label for p in self.peers.values() if p.public_key == key), None)
        if label is None:
            try:
                label = labels.splice(msg.path_to_snode, peer_label)
            except LabelError:
                self.counters["getsnode_label_too_long"] += 1
                return
        if len(self.heard) < self.config.max_foreign_reports or key in self.heard:
            self.heard[key] = min(label, self.heard.get(key, label), key=labels.log2)
        if self.allowed and key not in self.allowed:
            self.counters["getsnode_foreign"] += 1
            return
        self.counters["getsnode_ok"] += 1
        self._add_candidate(key, label, "peer")
        if self.server is None:
            self.wake()

    def set_serve_self(self, on: bool) -> None:
        """Our own route server came up (use it) or went away (fail over to the ISP's others)."""
        me = self.identity.public_key
        self.serve_self = on
        if on:
            self.candidates[me] = Candidate(me, SELF_LABEL, "self")
            if self.server != me:
                self.server = None
        else:
            self.candidates.pop(me, None)
            if self.server == me:
                self._fail_server(self.clock(), "lost")

    def answer_getsnode(self, msg: control.GetSnode, asker_label: int | None = None) -> control.GetSnode | None:
        """Our reply to a peer's GETSNODE query: the route server we use and our label to it. ``asker_label`` is
        our label back to the asker (the query's arrival label, bit-reversed): the asker splices our label onto
        its label to us, so our first director must be at least as wide as the director back to it, or our
        switch refuses the packet (a small interface must be written with a big director when the packet comes
        in on a big one). cjdns does the same (ControlHandler: NumberCompress_getLabelFor)."""
        if msg.reply:
            return None
        server = self._server(self.clock())
        if server is None:
            return None
        label = self.candidates[server].label
        if asker_label is not None and label != SELF_LABEL:
            try:
                label = labels.convert_for_return(self.scheme, label, asker_label)
            except LabelError:
                self.counters["getsnode_not_expressible"] += 1      # too long once widened: the asker cannot use it
                return None
        return control.GetSnode(self.version, snode_version=self.version, snode_key=server, path_to_snode=label,
                                reply=True)

    def on_reply(self, payload: bytes, src_key: bytes | None = None) -> bool:
        """A message from a route server; True if it answered one of our queries."""
        now = self.clock()
        try:
            reply = M.parse_reply(payload)
        except M.MessageError:
            self.counters["bad_reply"] += 1
            return False
        p = self.pending.pop(reply.txid, None)
        if p is None or (src_key is not None and bytes(src_key) != p.server):
            if p is not None:
                self.pending[reply.txid] = p
            else:
                self._late_answer(reply.txid, src_key, now)
            return False
        if p.server == self.server:
            self._rtt_sample(now - p.sent_ms)
            self.backoff = 1
            self.tried.clear()
        # only our announcements' replies move the clock estimate, as in cjdns (ReachabilityAnnouncer's
        # estimateClockSkew): a look-up's reply must not hide a clock jump before an announcement shows it
        if reply.recv_time is not None and p.kind == "ann":
            # NTP's offset, ((T2 - T1) + (T3 - T4)) / 2: the time the server held the query (sendTime - recvTime)
            # is left out; without sendTime (cjdns) T3 = T2, which is cjdns's midpoint rule
            sent_back = reply.recv_time if reply.send_time is None else reply.send_time
            wall = self.wall_clock()
            skew = (reply.recv_time + sent_back - p.sent_wall_ms - wall) // 2
            # the truth lies within half the network time of that (NTP's error bound): a sample that wide
            # which still holds our estimate does not move it (on a busy mesh one leg can wait seconds more)
            half = max(0, (wall - p.sent_wall_ms) - (sent_back - reply.recv_time)) // 2
            if abs(skew) > MAX_SKEW_MS:
                self.counters["bad_recv_time"] += 1
            elif half > SKEW_EXACT_MS and skew - half <= self.skew_ms <= skew + half:
                self.counters["skew_kept"] += 1
            else:
                self.skew_ms = skew
        for alt in reply.alternatives:
            if not self.allowed or alt.public_key in self.allowed:
                self._add_candidate(alt.public_key, alt.label, "alt")
        if p.kind == "ann":
            self._on_ann_reply(reply, p)
        elif p.kind == "bk":
            self._on_backup_reply(reply, p)
        elif p.kind == "gr":
            self._on_path_reply(reply, p, now)
        return True

    # -- path provider ------------------------------------------------------------------------------------
    def lookup(self, ip6):
        ip6 = bytes(ip6)
        if ip6 == self.identity.ip6:
            return None
        now = self.clock()
        peer = self._peer_by_ip6.get(ip6)
        if peer is not None and peer.public_key is not None and peer.our_label not in self.dead_labels \
                and peer.our_label not in self._bad(ip6, now):
            # a direct peer is reached over its own link, as cjdns's subnode pathfinder hands the core a peer's
            # one-hop path (SubnodePathfinder.c `peer`): no query, whatever the server would weigh
            self.counters["peer_path"] += 1
            return peer.public_key, peer.our_label, ()
        e = self.cache.get(ip6)
        if e is not None and e.label is not None:
            if now >= e.expires_ms and ip6 not in self.wanted:
                self.wanted[ip6] = now
                self.counters["refresh"] += 1
            self.counters["cache_hit"] += 1
            return e.public_key, e.label, e.via
        self.counters["cache_miss"] += 1
        if ip6 not in self.wanted:
            if len(self.wanted) >= MAX_WANTED:
                self.counters["lookup_queue_full"] += 1
                return None
            self.wanted[ip6] = e.retry_at if e is not None else now
            self.wake()
        return None

    def refresh(self, ip6) -> None:
        """Ask again for a path we hold, using it until the answer comes (the other end of a flow moved: a link
        of ours may have died under it, which the server has heard of)."""
        ip6 = bytes(ip6)
        if ip6 in self.cache and ip6 not in self.wanted:
            self.wanted[ip6] = self.clock()
            self.counters["refresh"] += 1
            self.wake()

    def report_failure(self, ip6, label, dead=None):
        ip6 = bytes(ip6)
        now = self.clock()
        self.counters["failures_reported"] += 1
        if dead is not None:                     # a dead link, whatever the destination: every query avoids it
            self.dead_labels[dead] = now + self.config.failed_label_hold_ms
        if self.server is not None and ip6 == keys.address_for_key(self.server):
            # our way to the server broke: find it again; a data path to the server's node (another label,
            # e.g. the other end moved its return path) is a path like any other
            if label is None or label == self.candidates[self.server].label:
                self._fail_server(now, "switch_error")
                return
        e = self.cache.get(ip6)
        if e is not None and label is not None and e.label not in (None, label):
            return                                   # already replaced by a newer path
        failed = label if label is not None else (e.label if e is not None else None)
        if failed is not None:
            self._note_failed(ip6, failed, now)
        self.cache.pop(ip6, None)
        self.wanted[ip6] = now
        self.wake()

    def _note_failed(self, ip6: bytes, label: int, now: int) -> None:
        for dst in [d for d, f in self.failed_labels.items() if max(f.values()) <= now]:
            del self.failed_labels[dst]                                  # forget what expired
        self.failed_labels.setdefault(ip6, {})[label] = now + self.config.failed_label_hold_ms

    def replace(self, table) -> None:
        """The static path table of the control API's set_paths does not apply here."""
        raise ValueError("this node learns its paths from route servers (config \"route_server\")")

    def flush_cache(self) -> None:
        self.cache.clear()

    def describe(self):
        server = self.server
        return {
            "route_server": keys.ip6_text(keys.address_for_key(server)) if server else None,
            "route_server_label": labels.label_text(self.candidates[server].label) if server else None,
            "candidates": {keys.ip6_text(keys.address_for_key(k)): {"label": labels.label_text(c.label),
                                                                    "source": c.source,
                                                                    "failed": c.failed_until > self.clock()}
                           for k, c in self.candidates.items()},
            "paths": {keys.ip6_text(ip6): path_entry(e.public_key, e.label, e.via)
                      for ip6, e in self.cache.items() if e.label is not None},
            "skew_ms": self.skew_ms,            # the server's clock minus ours, from its last reply
            "counters": dict(self.counters),
        }

    # -- the periodic work ----------------------------------------------------------------------------
    def poll(self, now: int | None = None) -> list[Outgoing]:
        now = self.clock() if now is None else now
        out: list[Outgoing] = []
        timeout = self.timeout_ms(now)
        for txid, p in list(self.pending.items()):
            if now - p.sent_ms >= timeout and self.pending.pop(txid, None) is not None:
                self.counters[f"timeout_{p.kind}"] += 1
                self.given_up[txid] = (p.server, p.sent_ms)
                if len(self.given_up) > MAX_GIVEN_UP:
                    del self.given_up[next(iter(self.given_up))]
                if p.server == self.server:
                    self.backoff = min(self.backoff * 2, MAX_TIMEOUT_MS // max(self.config.query_timeout_ms, 1))
                    self._fail_server(now, "silence")
        if now >= self.next_hunt and self.peers:
            # keep hunting quickly until every peer named its route server: a neighbour in another Cloud ISP
            # may find its own later than we do, and its answer is how our server reaches the foreign one
            settled = self._server(now) is not None and all(l in self.snode_answered for l in self.peers)
            self.next_hunt = now + (self.config.refresh_interval_ms if settled else self.config.hunt_interval_ms)
            for label in sorted(self.peers):
                out.append(Outgoing("control", self.peers[label].public_key, label,
                                    control.GetSnode(self.version)))
                self.counters["getsnode_sent"] += 1
        server = self._server(now)
        if server is None:
            return out
        label = self.candidates[server].label
        if now >= self.next_announce and not any(p.kind == "ann" for p in self.pending.values()):
            out.append(self._announce(server, label, now))
        asking = {p.target for p in self.pending.values() if p.kind == "gr"}
        for ip6, when in list(self.wanted.items()):
            if when <= now and ip6 not in asking:
                out.append(self._query(server, label, "gr", now, target=ip6,
                                       query=M.Query("gr", b"", src=self.identity.ip6, tar=ip6,
                                                     bad=self._bad(ip6, now), dead=self._dead(now),
                                                     holders=self.config.lease_holders)))
        c = self.candidates[server]
        due = self._backup_due(c)
        if due is not None and now >= due:
            c.backup_asked_ms = now
            server_ip6 = keys.address_for_key(server)
            out.append(self._query(server, label, "bk", now, target=server_ip6,
                                   query=M.Query("gr", b"", src=self.identity.ip6, tar=server_ip6,
                                                 bad=(label,) + self._bad(server_ip6, now)[:15],
                                                 dead=self._dead(now), holders=self.config.lease_holders)))
        return out

    def next_due(self) -> int | None:
        """The earliest time (ms, our steady clock) at which ``poll`` has timed work: a reply's timeout, a hunt,
        an announcement, a look-up or backup query due, a failed server becoming usable again. The host sleeps
        until then instead of polling on a fixed short period; None: nothing is timed (new work calls ``wake``)."""
        cfg = self.config
        timeout = self.timeout_ms(self.clock())
        times = [p.sent_ms + timeout for p in self.pending.values()]
        if self.peers:
            times.append(self.next_hunt)
        if self.server is None:
            times += [t for c in self.candidates.values()
                      for t in (c.failed_until, c.failed_until - cfg.fail_hold_ms + cfg.lone_retry_ms)]
            return min(times, default=None)
        if not any(p.kind == "ann" for p in self.pending.values()):
            times.append(self.next_announce)
        asking = {p.target for p in self.pending.values() if p.kind == "gr"}
        times += [when for ip6, when in self.wanted.items() if ip6 not in asking]
        due = self._backup_due(self.candidates[self.server])
        if due is not None:
            times.append(due)
        return min(times, default=None)

    def _backup_due(self, c: Candidate) -> int | None:
        """When to ask the server for a backup path to it (module docstring), or None: not now."""
        if c.source == "self" or c.backup is not None or not self.acked:
            return None
        if c.backup_asked_ms is None:
            return 0
        return c.backup_asked_ms + (c.backup_wait_ms or self.config.announce_interval_ms)

    def timeout_ms(self, now: int | None = None) -> int:
        """How long a query to our server waits for its answer (see the module docstring): the RTO, backed off
        after timeouts unless another server is there to try (``now``: checked then; None: assume none is)."""
        rto = self.config.query_timeout_ms if self.srtt_ms is None else \
            max(self.config.query_timeout_ms, self.srtt_ms + 4 * self.rttvar_ms)
        if now is None or not self._untried_candidate(now):
            rto = max(rto, self.config.query_timeout_ms * self.backoff)
        return int(min(rto, MAX_TIMEOUT_MS))

    def _untried_candidate(self, now: int) -> bool:
        return any(k != self.server and k not in self.tried and c.failed_until <= now
                   for k, c in self.candidates.items())

    def _late_answer(self, txid: bytes, src_key: bytes | None, now: int) -> None:
        """The answer to a query we gave up on: its round trip is a sample all the same (the module docstring)."""
        late = self.given_up.pop(txid, None)
        if late is not None and (src_key is None or bytes(src_key) == late[0]):
            self.counters["late_answers"] += 1
            self._rtt_sample(now - late[1])

    def _rtt_sample(self, rtt_ms: int) -> None:
        if self.srtt_ms is None:
            self.srtt_ms, self.rttvar_ms = float(rtt_ms), rtt_ms / 2
        else:
            self.rttvar_ms = 0.75 * self.rttvar_ms + 0.25 * abs(self.srtt_ms - rtt_ms)
            self.srtt_ms = 0.875 * self.srtt_ms + 0.125 * rtt_ms

    def _dead(self, now: int) -> tuple:
        for label in [l for l, until in self.dead_labels.items() if until <= now]:
            del self.dead_labels[label]
        return tuple(sorted(self.dead_labels, key=self.dead_labels.get, reverse=True)[:16])

    def _bad(self, ip6: bytes, now: int) -> tuple:
        """Labels to ip6 that failed lately, the newest failure first (the server avoids as many as it can)."""
        held = sorted(((until, l) for l, until in self.failed_labels.get(ip6, {}).items() if until > now),
                      reverse=True)
        return tuple(l for _, l in held[:16])

    # -- internals ----------------------------------------------------------------------------------------
    def _add_candidate(self, key: bytes, label: int, source: str) -> None:
        c = self.candidates.get(key)
        if c is None:
            self.candidates[key] = Candidate(key, label, source)
            return
        if c.source == "self" or label == c.label:
            return
        if self.failed_labels.get(keys.address_for_key(key), {}).get(label, 0) > self.clock():
            return                                 # it just failed (the peer has not noticed yet)
        if c.failed_until > self.clock():
            c.failed_until = 0                     # it failed on its old label: the new one gets a chance
        elif not (labels.log2(label) < labels.log2(c.label) or (source == "alt" and key != self.server)):
            return                                 # keep the shorter label; a server-computed one wins
        # a new label: ask for a backup again an announce interval after the last ask (not at once: labels get
        # shorter many times while a big mesh comes up, and each ask costs the server up to four searches)
        c.label, c.source, c.backup, c.backup_wait_ms = label, source, None, 0

    def _server(self, now: int) -> bytes | None:
        if self.server is not None:
            return self.server
        usable = [c for c in self.candidates.values() if c.failed_until <= now] or \
            [c for c in self.candidates.values()
             if c.failed_until - self.config.fail_hold_ms + self.config.lone_retry_ms <= now]
        if not usable:
            return None
        best = min(usable, key=lambda c: (c.source != "self", labels.log2(c.label), c.public_key))
        if self._had_server:
            self.counters["failovers"] += 1
        self._had_server = True
        self.server = best.public_key
        self.tried.add(best.public_key)
        self.needs_reset = True
        self.acked = []
        self.next_announce = now
        return self.server

    def _fail_server(self, now: int, why: str) -> None:
        c = self.candidates.get(self.server)
        if c is not None and c.source != "self" and why == "switch_error":
            self._note_failed(keys.address_for_key(c.public_key), c.label, now)    # the way broke, not the node
        if c is not None and c.backup is not None:
            # the way to the server broke, not the server (we cannot tell; the backup shares no link with it):
            # resend what was on the way over the backup at once
            c.label, c.backup, c.backup_asked_ms, c.backup_wait_ms = c.backup, None, None, 0
            self.counters["server_backup_used"] += 1
            self._resend_pending(now)
            return
        if c is not None and c.source != "self":
            c.failed_until = now + self.config.fail_hold_ms
            self.counters[f"server_failed_{why}"] += 1
        self._resend_pending(now)
        self.server = None
        self.next_hunt = now                       # ask the peers again: their answers bring fresh labels

    def _resend_pending(self, now: int) -> None:
        """What was on its way to the server is void: announce and ask again, soon."""
        for txid, p in list(self.pending.items()):
            if p.server == self.server:
                del self.pending[txid]
                if p.kind == "ann":
                    self.next_announce = now
                elif p.kind == "gr":
                    self.wanted.setdefault(p.target, now)
        self.wake()

    def _query(self, server: bytes, label: int, kind: str, now: int, query: M.Query, target=None,
               raw=b"", peers=None) -> Outgoing:
        self._txid += 1
        txid = kind.encode() + self._txid.to_bytes(4, "big") + os.urandom(2)
        foreign = tuple(M.Address(k, l) for k, l in sorted(self.heard.items()) if k != server) \
            if kind == "ann" else ()
        q = M.Query(query.sq, txid, self.version, ann=query.ann, src=query.src, tar=query.tar, bad=query.bad,
                    dead=query.dead, holders=query.holders, foreign=foreign)
        self.pending[txid] = _Pending(kind, server, now, target, raw, peers, self.wall_clock())
        self.counters[f"sent_{kind}"] += 1
        return Outgoing("snode", server, label, M.pack_query(q))

    def _announce(self, server: bytes, label: int, now: int) -> Outgoing:
        interval = self.config.announce_interval_ms
        self.next_announce = now + interval - int(self._spread.random() * interval / 2)
        reset = self.needs_reset or len(self.acked) >= self.config.reset_every
        entities = [A.VersionEntity(self.version), A.EncodingSchemeEntity(self.scheme)]
        for our_label, p in sorted(self.peers.items()):
            peer_num = our_label & 0xFFFF
            entities.append(A.PeerEntity(p.ip6, p.their_label & 0xFFFFFFFF, peer_num=peer_num,
                                         encoding_form=max(self.scheme.get_form_num(our_label), 0)))
            if p.rtt_us:
                entities.append(A.LinkQualityEntity(peer_num, p.rtt_us, p.loss_ppm, p.capacity_kbps))
        if not reset:
            for our_label, p in self.announced_peers.items():
                if our_label not in self.peers:
                    entities.append(A.PeerEntity(p.ip6, 0, peer_num=our_label & 0xFFFF))
        entities.extend(self.leases)
        ts = max(self.wall_clock() + self.skew_ms, self.last_ts + 1)
        entities.extend(o for o in self.offers if not o.expired(ts))
        self.last_ts = ts
        ann = A.Announcement.build(self.identity, keys.address_for_key(server), ts, tuple(entities), reset=reset)
        return self._query(server, label, "ann", now, M.Query("ann", b"", ann=ann.raw), raw=ann.raw,
                           peers=dict(self.peers))

    def _on_ann_reply(self, reply: M.Reply, p: _Pending) -> None:
        if p.server != self.server:
            return
        if reply.error is not None:
            self.counters[f"ann_rejected_{reply.error}"] += 1
            self.needs_reset = True
            # the server holds none of this one: our next stamp need only follow what it accepted (after a
            # clock-skew rejection the corrected stamp may be earlier than the rejected one)
            self.last_ts = self.acked[-1].timestamp_ms if self.acked else 0
            self.next_announce = min(self.next_announce, self.clock() + max(self.config.announce_min_gap_ms,
                                                                            int(self.srtt_ms or 0)))
            return
        ann = A.Announcement.parse(p.raw, verify=False)
        if ann.reset:
            self.acked = []
        self.acked.append(_Announced(p.raw, ann.timestamp_ms))
        self.announced_peers = p.peers or {}
        self.counters["ann_accepted"] += 1
        if reply.state_hash is not None and reply.state_hash != state_hash(a.raw for a in self.acked):
            self.counters["state_hash_mismatch"] += 1
            self.needs_reset = True
        else:
            self.needs_reset = False

    def _on_path_reply(self, reply: M.Reply, p: _Pending, now: int) -> None:
        ip6 = p.target
        via = ()
        if reply.waypoints and keys.address_for_key(reply.waypoints[-1].public_key) == ip6 \
                and all(a.label >= 2 for a in reply.waypoints):
            found, via = reply.waypoints[0], tuple(a.label for a in reply.waypoints[1:])
            found = M.Address(reply.waypoints[-1].public_key, found.label)
        else:
            found = next((a for a in reply.nodes if keys.address_for_key(a.public_key) == ip6), None)
        if found is None or found.label < 2:
            self.counters["path_not_found" if reply.error else "bad_path_reply"] += 1
            self.wanted.pop(ip6, None)
            old = self.cache.get(ip6)
            if old is None or old.label is None:
                self._store(ip6, CacheEntry(None, None, now, retry_at=now + self.config.retry_ms))
            return
        if self.failed_labels.get(ip6, {}).get(found.label, 0) > now:
            # the server has not heard of the failure yet: ask again shortly
            self.counters["path_still_failed"] += 1
            self.wanted[ip6] = now + self.config.retry_ms
            return
        self.wanted.pop(ip6, None)
        self._store(ip6, CacheEntry(found.public_key, found.label, now + self.config.cache_ttl_ms, via=via))
        self.counters["path_found"] += 1

    def _on_backup_reply(self, reply: M.Reply, p: _Pending) -> None:
        c = self.candidates.get(p.server)
        found = next((a for a in reply.nodes if a.public_key == p.server), None)
        if c is None or found is None or found.label < 2 or found.label == c.label:
            self.counters["backup_none"] += 1          # no second way (the server answered the same one)
            if c is not None:
                c.backup_wait_ms = min(2 * (c.backup_wait_ms or self.config.announce_interval_ms), MAX_BACKUP_WAIT_MS)
            return
        c.backup, c.backup_wait_ms = found.label, 0
        self.counters["backup_learned"] += 1

    def _store(self, ip6: bytes, entry: CacheEntry) -> None:
        if ip6 not in self.cache and len(self.cache) >= MAX_CACHE:
            del self.cache[min(self.cache, key=lambda k: self.cache[k].expires_ms)]
            self.counters["cache_evicted"] += 1
        self.cache[ip6] = entry
