"""Route servers inside the node agent: the client as the data plane's path provider, and the route-server role.

:class:`RouteServerGlue` connects the pure :class:`~.client.RouteServerClient` (and, on a node whose config has
``"route_server": {"serve": true}``, a :class:`~.service.RouteServerService`) to a ``node.tun_switch.node.Node``:

* Route server messages travel inside the nodes' end-to-end CryptoAuth sessions as session content of type
  256 (cjdns ``ContentType_CJDHT``); the data plane hands such content to :meth:`on_content`, and
  :meth:`send_message` sends through the session of the destination key (created on demand).
* GETSNODE and RPATH switch control messages go to :meth:`on_control`. RPATH is how a node learns its peer's
  one-hop label back to it (the PEER entity's ``label``): the peer answers with the bit-reversed label the query
  arrived with, which is exactly that label.
* At each tick the peer list (links that answered link pings; when it changes, and its RTTs every
  ``PEERS_REFRESH_S``: rebuilding it was most of an idle tick's cost) and, on a node with leases
  (``use_lease_table``), its end of every paid lease in force (:func:`lease_entities`) go to the client, the
  client's and the service's queued messages are sent, and newly learned paths are pushed to existing
  destinations. Ticks are driven by deadlines: the next one comes when the client or the service has timed
  work (``next_due``), a silent destination's ``SILENCE_S`` runs out, or something happens (a look-up, a
  switch error, a message, a link going up or down: ``wake``), never sooner than ``TICK_S`` after the last
  unless woken, and at least every ``IDLE_TICK_S`` (on the grid of the node's housekeeping, so an idle agent
  host wakes once a second for both instead of ten times for this alone).
  The node's market offers (``market_offers``, sent by its market service, node/market/service.py) go to the
  client the same way and are announced at once when they change; a route-server node lists the offers it holds
  with ``rs_offers``.
  A destination that has not answered for ``SILENCE_S`` while we keep sending (a link on its path died without
  a switch error, e.g. packets lost on the wire) is reported to the client like a switch error, so it re-queries.
* A route server's links record when the kernel received each frame (``Node.stamp_arrivals``): the service
  judges an announcement's clock skew by the time it arrived and answers it as ``recvTime``, so a server whose
  queue is long does not reject announcements for the time they waited in it.
* A route server works through the messages to it in slices (``SERVE_SLICE_S`` of work, then the loop runs): they
  wait in a backlog (at most ``MAX_BACKLOG``; the oldest goes when it is full, and one that waited
  ``MAX_BACKLOG_WAIT_S``, longer than any client waits for an answer, is dropped; both counted). A server handling
  every message of a read batch at once (up to 64 per link) went silent on its links for seconds at 1000 nodes;
  its neighbours took it for dead (3.5 s, liveness.py), each such false link-down changed the graph, dropped the
  path cache and sent every client through it back to the server with a dead link to route around.
  Once the oldest message has waited ``NEWEST_FIRST_AFTER_S`` the newest is served first
  (``backlog_newest_first``), as adaptive LIFO does under overload: the askers of the oldest have given up or
  asked again, and served in order every answer would come after its asker stopped waiting (at 1000 nodes the
  servers' backlogs stayed full of messages 30 s old: their work was wasted).

Configuration (the ``route_server`` object of the agent config; all optional)::

    {"serve": false, "allowed": ["<key>.k", ...], "federation": ["<key>.k", ...], "same_isp": ["<key>.k", ...],
     "lease_holders": ["<key>.k", ...],
     "announce_interval_s": 10, "hunt_interval_s": 3, "cache_ttl_s": 60, "query_timeout_s": 2}

``allowed``: the route servers this node may use (its Cloud ISP's), empty = any found through peers;
``federation``/``same_isp``: for a route server, the other route servers it exchanges link state with;
``lease_holders``: the keys whose bandwidth leases this node's traffic may use (its Cloud ISP's holder key): its
path queries name them, and the route server prefers their leases.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from node.cjdns import control, keys, labels
from node.cjdns.switch_header import SwitchHeader
from node.leases.table import LeaseTable
from node.replay_state import ReplayState
from node.route_server import announcement as A, messages as M
from node.route_server.client import ClientConfig, PeerInfo, RouteServerClient
from node.route_server.server import MAX_OFFERS
from node.route_server.service import RouteServerService

CJDHT = 256                      # session content type of route server messages (cjdns ContentType_CJDHT)
TICK_S = 0.1                     # the shortest gap between two timed ticks (a wake is not held back)
IDLE_TICK_S = 1.0                # an idle node ticks this often (the client's timers are seconds long)
RPATH_RETRY_S = 1.0
PEERS_REFRESH_S = 1.0            # the peer list's RTTs go to the client this often (a changed list at once)
SILENCE_S = 2.0                  # a destination we send to that answers nothing for this long: re-query its path
ROUTER = 1
LINK_CAPACITY_KBPS = 1_000_000   # until leases say otherwise
MAX_RTT_MS = 0xFFFFFFFF / 1000   # LINK_QUALITY carries the RTT as u32 microseconds
SERVE_SLICE_S = 0.02             # a route server handles messages for this long, then lets the loop run
MAX_BACKLOG = 4096               # messages waiting for the route server
MAX_BACKLOG_WAIT_S = 30.0        # client.MAX_TIMEOUT_MS: nobody waits longer for the answer
NEWEST_FIRST_AFTER_S = 1.0       # the clients' shortest query timeout (testbed settings): after it, newest first


@dataclass
class RouteServerSettings:
    serve: bool = False
    allowed: tuple = ()
    federation: tuple = ()
    same_isp: tuple = ()
    lease_holders: tuple = ()
    announce_interval_s: float = 10.0
    hunt_interval_s: float = 3.0
    cache_ttl_s: float = 60.0
    query_timeout_s: float = 2.0
    extra: dict = field(default_factory=dict)

    def client_config(self) -> ClientConfig:
        return ClientConfig(announce_interval_ms=int(self.announce_interval_s * 1000),
                            hunt_interval_ms=int(self.hunt_interval_s * 1000),
                            cache_ttl_ms=int(self.cache_ttl_s * 1000),
                            query_timeout_ms=int(self.query_timeout_s * 1000),
                            allowed=tuple(self.allowed), lease_holders=tuple(self.lease_holders))


def parse_settings(data, where: str = "route_server") -> RouteServerSettings:
    """Validate the config object; ValueError names the field."""
    if data is None:
        return RouteServerSettings()
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    known = {"serve", "allowed", "federation", "same_isp", "lease_holders", "announce_interval_s", "hunt_interval_s",
             "cache_ttl_s", "query_timeout_s"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown field (known: {', '.join(sorted(known))})")
    s = RouteServerSettings()
    if "serve" in data:
        if not isinstance(data["serve"], bool):
            raise ValueError(f"{where}.serve: expected true or false")
        s.serve = data["serve"]
    for name in ("allowed", "federation", "same_isp", "lease_holders"):
        items = data.get(name, [])
        if not isinstance(items, list):
            raise ValueError(f"{where}.{name}: expected a list of public keys")
        parsed = []
        for i, text in enumerate(items):
            try:
                parsed.append(keys.parse_pubkey_text(text))
            except (ValueError, TypeError, AttributeError) as e:
                raise ValueError(f"{where}.{name}[{i}]: {e}") from None
        setattr(s, name, tuple(parsed))
    if len(s.lease_holders) > M.MAX_HOLDERS:
        raise ValueError(f"{where}.lease_holders: at most {M.MAX_HOLDERS} keys (what a path query carries)")
    for name in ("announce_interval_s", "hunt_interval_s", "cache_ttl_s", "query_timeout_s"):
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 3600:
                raise ValueError(f"{where}.{name}: expected seconds between 0.05 and 3600")
            setattr(s, name, float(v))
    return s


def lease_entities(table: LeaseTable, now: float, wall_now: float) -> list:
    """This device's end of every paid lease in force, as LEASE entities (announcement.py): the link and the
    lease's own interface as one-hop labels in peerNum form, its expiry in Unix time (``now`` is the data path's
    clock the table runs on, ``wall_now`` the Unix time at that moment)."""
    out = []
    for lease in table.paid(now):
        link_index, lease_index = table.interface_of(lease.link), table.interface_of(lease.link, lease.id)
        if link_index is None or lease_index is None or lease.holder is None:
            continue
        expires = A.NEVER if lease.expires is None else min(int(wall_now + lease.expires - now), A.NEVER - 1)
        out.append(A.LeaseEntity(lease.id, labels.one_hop_label(link_index) & 0xFFFF,
                                 labels.one_hop_label(lease_index) & 0xFFFF, lease.guarantee_bps, expires,
                                 holder=lease.holder))
    return out


OFFER_FIELDS = {"token", "lease", "link", "kbps", "start", "end", "price"}


def offer_entities(offers, seller: bytes) -> list:
    """A market's offers (its /offers items: token, lease, link, kbps, start, end, price, and issuer, which must be
    ``seller``: this node's market key) as OFFER entities; ValueError naming the offer and what is wrong."""
    if not isinstance(offers, list):
        raise ValueError('"offers" must be a list of offers')
    if len(offers) > MAX_OFFERS:
        raise ValueError(f"{len(offers)} offers: a node announces at most {MAX_OFFERS}")
    out = []
    for i, o in enumerate(offers):
        if not isinstance(o, dict) or not OFFER_FIELDS <= set(o) <= OFFER_FIELDS | {"issuer"}:
            raise ValueError(f"offers[{i}]: an object with {', '.join(sorted(OFFER_FIELDS))} (and issuer)")
        if o.get("issuer", seller.hex()) != seller.hex():
            raise ValueError(f"offers[{i}]: issuer {str(o['issuer'])[:16]}... is not this node's market key")
        e = A.OfferEntity(o["token"], o["lease"], o["link"], o["kbps"], o["start"], o["end"], o["price"], seller)
        try:
            e.body()
        except A.AnnouncementError as err:
            raise ValueError(f"offers[{i}]: {err}") from None
        out.append(e)
    return out


class RouteServerGlue:
    COMMANDS = ("routes", "rs_status", "rs_route", "rs_service", "rs_inject", "routes_refresh", "market_offers",
                "rs_offers")
    ABSENT = 'this node has no "route_server" section in its config'

    def __init__(self, node, settings: RouteServerSettings, clock_ms=None, replay_state=None):
        self.node = node
        self.settings = settings
        # the route server's replay high-water marks outlive the service (rs_service restarts it) and, with a
        # state directory, the process
        self.replay_state = replay_state if replay_state is not None else ReplayState()
        # the node's wall clock (it carries the clock-skew fault's offset), in ms: stamps and the server's checks;
        # the client's timers run on the node's steady clock, so a clock jump does not stall them
        self.clock_ms = clock_ms or (lambda: int(node.wall_clock() * 1000))
        self.client = RouteServerClient(node.identity, lambda: int(node.clock() * 1000), settings.client_config(),
                                        scheme=node.switch.scheme, serve_self=settings.serve,
                                        wall_clock=self.clock_ms)
        self.service = None
        if settings.serve:
            self.start_service()
        self.their_labels: dict[int, int] = {}          # our switch index -> the peer's label to us
        self.rpath_sent: dict[int, float] = {}
        self.silence_reported: dict[bytes, float] = {}
        self.return_seen: dict[bytes, tuple] = {}       # destination -> the last way back (way_back) its packets came by
        self.lease_table = None                         # the node's leases, announced (use_lease_table)
        self.closed = False
        self.loop = None
        self._wake_pending = False
        self._timer = None                              # the next deadline tick (a loop Timer), if one is armed
        self._silence_due = None                        # when the first silent destination is due a report (s)
        self._peers_given, self._peers_due = None, 0.0  # the up links (index, their label) the client has
        self._guarded_tick = node.errors.guard("route_server.tick", self._tick)   # a bug costs one tick
        self._serve = node.errors.guard("route_server.serve", self._serve_one)     # a bug costs one message
        self.backlog = deque()          # (payload, destination, way back, arrived ms, steady s) for the service
        self._drain_pending = False
        self.counters = {"ticks": 0, "messages_in": 0, "messages_out": 0, "bad_messages": 0, "rpath_answered": 0,
                         "getsnode_answered": 0, "silent_paths_reported": 0, "return_path_moves": 0,
                         "queries_unserved": 0, "backlog_max": 0, "backlog_full": 0, "backlog_stale": 0,
                         "backlog_newest_first": 0}

    # -- installation -----------------------------------------------------------------------------------
    def install(self, loop) -> None:
        """Become the node's path provider and message handler; tick on the loop."""
        self.node.paths = self.client
        guard = self.node.errors.guard
        self.node.content_handlers[CJDHT] = guard("route_server.on_content", self.on_content)
        self.node.control_hook = guard("route_server.on_control", self.on_control, result=True)
        self.loop = loop
        self.client.wake = self._wake
        self.node.on_link_change = self._wake
        loop.call_every(IDLE_TICK_S, self.tick)

    def _wake(self) -> None:
        """Something to do now (a re-query after a switch error, a new look-up, a link that went up or down):
        tick as soon as the loop is free instead of at the next deadline; a reroute is a few such steps."""
        if not self._wake_pending and self.loop is not None:
            self._wake_pending = True
            self.loop.call_later(0, self._woken)

    def _woken(self) -> None:
        self._wake_pending = False
        self.tick()

    def use_lease_table(self, table: LeaseTable) -> None:
        """Announce this node's end of its leases from now on (the lease plane's table)."""
        self.lease_table = table

    # -- the route-server role ------------------------------------------------------------------------------
    def start_service(self) -> None:
        """Run the route server, with empty state (as a restarted route-server process starts) but for the replay
        high-water marks, which a restarted process reads back from its state directory."""
        s = self.settings
        self.service = RouteServerService(self.node.identity.public_key, federation=s.federation, same_isp=s.same_isp,
                                          replay_state=self.replay_state, cpu_clock=time.process_time)
        self.client.set_serve_self(True)
        self.node.serves_routes = True
        self.node.stamp_arrivals()      # a message's age is judged by when it arrived, not when we got to it

    def stop_service(self) -> None:
        """Lose the route server (the route-server-loss fault): queries go unanswered, the node keeps switching."""
        self.service = None
        self.client.set_serve_self(False)
        self.node.serves_routes = False

    def send_bad_announcements(self, kind: str, count: int = 1) -> dict:
        """Byzantine inputs from this node, in its real session with its route server: ``forged`` (a flipped
        byte after signing), ``replayed`` (the last announcement the server accepted, again) or ``skewed``
        (stamped a minute ahead). The server must reject each and count the reason."""
        if kind not in ("forged", "replayed", "skewed"):
            raise ValueError(f"unknown kind {kind!r} (forged, replayed, skewed)")
        c = self.client
        server = c.server
        if server is None or server == self.node.identity.public_key:
            raise ValueError("this node has no route server of another node to send to")
        label = c.candidates[server].label
        now = self.clock_ms() + c.skew_ms
        for i in range(count):
            if kind == "replayed":
                if not c.acked:
                    raise ValueError("no announcement accepted yet to replay")
                raw = c.acked[-1].raw
            else:
                ts = now + (60_000 if kind == "skewed" else 0) + i + 1
                entities = (A.VersionEntity(c.version), A.EncodingSchemeEntity(c.scheme))
                raw = A.Announcement.build(self.node.identity, keys.address_for_key(server), ts, entities).raw
                if kind == "forged":
                    raw = raw[:-1] + bytes([raw[-1] ^ 1])
            # sent like any query of ours; the reply (a rejection) is ignored: it answers no query of ours
            self.send_message(server, label, M.pack_query(M.Query("ann", b"bad" + i.to_bytes(4, "big"), c.version,
                                                                  ann=raw)))
        self.counters[f"bad_announcements_{kind}"] = self.counters.get(f"bad_announcements_{kind}", 0) + count
        return {"server": keys.ip6_text(keys.address_for_key(server)), "kind": kind, "sent": count}

    # -- periodic ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """The node is closing (an agent host may close one node of a shared loop): stop working."""
        self.closed = True

    def tick(self) -> None:
        if self.closed:
            return
        self._guarded_tick()
        self._schedule()

    def _schedule(self) -> None:
        """Arm one timer for the earliest deadline before the next idle tick (see the module docstring)."""
        if self.loop is None or self.closed:
            return
        now = self.node.clock()
        dues = [t / 1000 for t in (self.client.next_due(),
                                   self.service.next_due() if self.service is not None else None) if t is not None]
        if self._silence_due is not None:
            dues.append(self._silence_due)
        when = max(min(dues, default=now + IDLE_TICK_S), now + TICK_S)
        if self._timer is not None:
            if not self._timer.cancelled and self._timer.when <= when:
                return                                  # an earlier one is armed already
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._deadline) if when < now + IDLE_TICK_S else None

    def _deadline(self) -> None:
        self._timer = None
        self.tick()

    def _tick(self) -> None:
        node = self.node
        self.counters["ticks"] += 1
        self._serve_backlog()
        self._refresh_peers()
        if self.lease_table is not None:
            self.client.set_leases(lease_entities(self.lease_table, node.clock(), node.wall_clock()))
        for out in self.client.poll():
            if out.kind == "control":
                self._send_control(out.label, out.payload)
            else:
                self.send_message(out.public_key, out.label, out.payload)
        if self.service is not None:
            # subscription timers, on the steady clock like the client's (a skewed clock must not stall them)
            for out in self.service.take_outbox(int(self.node.clock() * 1000)):
                self.send_message(out.public_key, out.label, out.payload, out.via)
        self._push_paths()
        self._watch_silence()

    def _refresh_peers(self) -> None:
        """Give the client the links that are up (with their RTT) when that set changes, else at most every
        PEERS_REFRESH_S for the RTTs: building the list is most of an idle tick's cost, and RTTs change only
        with a pong (about once a second per link)."""
        node = self.node
        # a lease's own peer link is announced as the lease (a LEASE entity), not as one more link to the peer
        lease_links = self.lease_table.lease_interfaces() if self.lease_table is not None else set()
        current = []
        for index, link in node.links.items():
            if not node.link_up(link) or link.peer_public_key is None or index in lease_links:
                continue
            their = self.their_labels.get(index)
            if their is None:
                self._ask_rpath(index)
                continue
            current.append((index, their))
        now = node.clock()
        if current == self._peers_given and now < self._peers_due:
            return
        self._peers_given, self._peers_due = current, now + PEERS_REFRESH_S
        peers = []
        for index, their in current:
            link = node.links[index]
            rtt = link.rtt_ms
            if rtt is not None and not 0 <= rtt <= MAX_RTT_MS:     # NaN too: announced as unmeasured, counted
                self.counters["bad_link_rtt"] = self.counters.get("bad_link_rtt", 0) + 1
                rtt = None
            peers.append(PeerInfo(keys.address_for_key(link.peer_public_key), node.switch.label_for(index), their,
                                  link.peer_public_key, rtt_us=max(int((rtt or 0) * 1000), 1),
                                  capacity_kbps=LINK_CAPACITY_KBPS))
        self.client.set_peers(peers)

    def _watch_silence(self) -> None:
        now = self.node.clock()
        self._silence_due = None
        for ip6, d in self.node.dests.items():
            self._watch_return_path(ip6, d)
            if d.unanswered_since is None or d.label is None:
                continue
            due = max(d.unanswered_since, self.silence_reported.get(ip6, -SILENCE_S)) + SILENCE_S
            if now < due:
                self._silence_due = due if self._silence_due is None else min(due, self._silence_due)
                continue
            self.silence_reported[ip6] = now
            self.counters["silent_paths_reported"] += 1
            self.client.report_failure(ip6, d.label)

    def _watch_return_path(self, ip6, d) -> None:
        """The other end moved to a new path to us while we still send on a different one: it may have found a
        link of the old path dead, and our path may share it (a failure we cannot see while nothing we send
        crosses it). Ask the server again, once per move; it avoids links reported dead for a while, and it
        gives both ends the same path, so a move on a healthy path settles after one exchange. Not for our
        route server: it answers back the way each query came, so its packets arrive by more than one path,
        and its own failure detection (timeouts, switch errors, the backup path) covers the way to it. Nor, on a
        route server, for a node it sends no data to: it answers each of its clients' queries back the way the
        query came, so its own path to them is not used (at 1000 nodes, clients moving to shorter labels to their
        server made each server re-ask its paths to them: most of its path queries)."""
        back = d.way_back()
        moved = back is not None and back != self.return_seen.get(ip6, back)
        self.return_seen[ip6] = back
        if d.public_key == self.client.server or (self.service is not None and d.tx_packets == 0):
            return
        if moved and d.label is not None and back != (d.label, d.via):
            self.counters["return_path_moves"] += 1
            self.client.refresh(ip6)

    def _ask_rpath(self, index: int) -> None:
        now = time.monotonic()
        if now - self.rpath_sent.get(index, -RPATH_RETRY_S) < RPATH_RETRY_S:
            return
        self.rpath_sent[index] = now
        self._send_control(self.node.switch.label_for(index), control.RPath(22))

    def _push_paths(self) -> None:
        """Destinations already in the data plane follow the client's current path."""
        for ip6, d in self.node.dests.items():
            found = self.client.cache.get(ip6)
            if found is not None and found.label is not None and found.public_key == d.public_key \
                    and (found.label, found.via) != (d.label, d.via):
                d.set_label(found.label, found.via)

    # -- sending ------------------------------------------------------------------------------------------
    def _send_control(self, label: int, msg) -> None:
        self.node.forwarder.forward(ROUTER, SwitchHeader(label=label).pack() + control.frame(msg))

    def send_message(self, public_key: bytes, label: int, payload: bytes, via=()) -> None:
        self.counters["messages_out"] += 1
        if public_key == self.node.identity.public_key:
            self._local(payload)
            return
        self.node.send_content_to(public_key, label, CJDHT, payload, via)

    def _local(self, payload: bytes) -> None:
        """A message to ourselves (a route server's own client)."""
        now_ms = self.clock_ms()
        me = self.node.identity.public_key
        if self.service is None:
            return
        reply = self.service.handle(payload, me, now_ms, path=(1, ()))
        if reply is not None:
            self.client.on_reply(reply, me)

    # -- receiving ----------------------------------------------------------------------------------------
    def on_content(self, d, payload: bytes) -> None:
        """Session content of type CJDHT from destination ``d``."""
        self.counters["messages_in"] += 1
        now_ms = self.clock_ms()
        try:
            is_query = M.is_query(payload)
        except M.MessageError:
            self.counters["bad_messages"] += 1
            return
        # the whole way back, with the waypoints' segments when it came through some (a far route server)
        back = d.way_back()
        if is_query:
            if self.service is None:
                self.counters["queries_unserved"] += 1      # we serve nothing (or lost our route server)
                return
            self._to_service(payload, d, back, now_ms - int(self.node.rx_wait() * 1000))
        elif self.client.on_reply(payload, d.public_key):
            self._push_paths()                          # a new path is used from the next packet on
            self.node.release_held()                    # and what waited for a path goes now
            self._schedule()
        elif self.service is not None:
            self._to_service(payload, d, back, None)    # a federation peer's answer

    def _to_service(self, payload: bytes, d, back, arrived_ms) -> None:
        """Into the service's backlog (module docstring); without a loop (a bare harness) handled at once."""
        if self.loop is None:
            self._serve(payload, d, back, arrived_ms)
            return
        if len(self.backlog) >= MAX_BACKLOG:
            self.backlog.popleft()
            self.counters["backlog_full"] += 1
        self.backlog.append((payload, d, back, arrived_ms, self.node.clock()))
        self.counters["backlog_max"] = max(self.counters["backlog_max"], len(self.backlog))
        if not self._drain_pending:
            self._drain_pending = True
            self.loop.call_later(0, self._drain)

    def _drain(self) -> None:
        """Serve the backlog for a slice, then come back after the loop has read its sockets and run its timers
        (link probes and their answers go out in between)."""
        self._drain_pending = False
        if self.closed:
            return
        self._serve_backlog()
        if self.backlog:
            self._drain_pending = True
            self.loop.call_later(0, self._drain)
        self._schedule()                                # e.g. announcements queued for the federation

    def _serve_backlog(self) -> None:
        """Messages of the backlog for SERVE_SLICE_S, the oldest first unless it is late (module docstring; each
        tick does this too)."""
        if self.service is None:                        # the route server was stopped (route-server loss)
            self.counters["queries_unserved"] += len(self.backlog)
            self.backlog.clear()
            return
        start = self.node.clock()
        backlog = self.backlog
        while backlog and start - backlog[0][4] > MAX_BACKLOG_WAIT_S:
            backlog.popleft()
            self.counters["backlog_stale"] += 1
        while backlog and self.node.clock() - start < SERVE_SLICE_S:
            if start - backlog[0][4] > NEWEST_FIRST_AFTER_S:
                self.counters["backlog_newest_first"] += 1
                self._serve(*backlog.pop()[:4])
            else:
                self._serve(*backlog.popleft()[:4])

    def _serve_one(self, payload: bytes, d, back, arrived_ms) -> None:
        """One message to the service; a query's answer goes back the way it came (it just worked), as cjdns
        answers: our own path to the asker may cross the very link whose failure made it ask."""
        reply = self.service.handle(payload, d.public_key, self.clock_ms(), path=back, arrived_ms=arrived_ms)
        if reply is not None:
            label, via = back or (d.label, d.via)
            self.send_message(d.public_key, label, reply, via)

    def on_control(self, msg, packet: bytes) -> bool:
        """GETSNODE / RPATH from the switch; True when handled."""
        arrival = int.from_bytes(packet[:8], "big")
        back = labels.bit_reverse64(arrival)
        if isinstance(msg, control.GetSnode):
            if msg.reply:
                self.client.on_getsnode_reply(msg, back)
            else:
                answer = self.client.answer_getsnode(msg, back)
                if answer is not None:
                    self.counters["getsnode_answered"] += 1
                    self._send_control(back, answer)
            return True
        if isinstance(msg, control.RPath):
            if msg.reply:
                scheme = self.node.switch.scheme
                index = scheme.decompress(back, scheme.bits_for_label(back)) if back else None
                if index in self.node.links and msg.rpath:
                    self.their_labels[index] = msg.rpath
                    self._wake()                        # the client can list this peer now
            else:
                self.counters["rpath_answered"] += 1
                self._send_control(back, control.RPath(22, rpath=back, reply=True))
            return True
        return False

    # -- reports -----------------------------------------------------------------------------------------
    def describe(self) -> dict:
        out = {"client": self.client.describe(), "counters": dict(self.counters),
               "their_labels": {str(i): labels.label_text(l) for i, l in self.their_labels.items()}}
        if self.service is not None:
            out["service"] = self.service.status()
        return out

    # -- control API -------------------------------------------------------------------------------------
    def commands(self) -> dict:
        """The control commands this plane brings (a handler refuses a request by raising ValueError)."""
        return {"routes": self.cmd_routes, "rs_status": self.cmd_rs_status, "rs_route": self.cmd_rs_route,
                "rs_service": self.cmd_rs_service, "rs_inject": self.cmd_rs_inject,
                "routes_refresh": self.cmd_routes_refresh, "market_offers": self.cmd_market_offers,
                "rs_offers": self.cmd_rs_offers}

    def _server(self, running=True):
        if not self.settings.serve:
            raise ValueError('this node is not a route server (config "route_server": {"serve": true})')
        if running and self.service is None:
            raise ValueError("this node's route server is not running (rs_service run=true starts it)")
        return self.service

    def cmd_routes(self, req, respond):
        return dict(self.client.describe(), agent_counters=dict(self.counters))

    def cmd_routes_refresh(self, req, respond):
        """Ask the route server again for every path we hold, using each until its answer comes (a node that
        just got a lease does, to have its traffic over it; _push_paths then moves the flows)."""
        held = list(self.client.cache)
        for ip6 in held:
            self.client.refresh(ip6)
        return {"refreshing": len(held)}

    def cmd_rs_service(self, req, respond):
        self._server(running=False)
        run = req.get("run")
        if not isinstance(run, bool):
            raise ValueError('"run" must be true or false')
        if run and self.service is None:
            self.start_service()
        elif not run and self.service is not None:
            self.stop_service()
        return {"running": self.service is not None}

    def cmd_rs_inject(self, req, respond):
        count = req.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100:
            raise ValueError('"count" must be an integer in 1..100')
        return self.send_bad_announcements(req.get("kind"), count)

    def cmd_rs_status(self, req, respond):
        return dict(self._server().status(self.clock_ms()), glue=self.counters)

    def cmd_market_offers(self, req, respond):
        """What this node's market sells now (all of it: an offer left out is withdrawn), announced at once."""
        offers = offer_entities(req.get("offers"), self.node.identity.signing_public_key)
        self.client.set_offers(offers)
        self._wake()
        return {"offers": len(offers)}

    def cmd_rs_offers(self, req, respond):
        return {"offers": self._server().offers(self.clock_ms())}

    def cmd_rs_route(self, req, respond):
        service = self._server()
        try:
            src, dst = keys.parse_ip6_text(req.get("src")), keys.parse_ip6_text(req.get("dst"))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f'needs "src" and "dst" IPv6 addresses: {e}') from None
        found = service.explain(src, dst)
        if found is None:
            raise ValueError(f"no path from {req['src']} to {req['dst']}")
        return found
