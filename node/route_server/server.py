"""The route server's pure core (pkt-reference.md §4.3, after ``cjdns-snode/src/server.rs``).

:class:`RouteServer` accepts signed announcements, keeps per node the announcements of the last 20 minutes
(older ones survive while they still carry a node's newest peer/version/scheme entity), builds the link
graph and answers path queries with Dijkstra. Time is passed in (milliseconds); there is no I/O.

* Rejections (:class:`Rejected` with ``reason``): ``malformed``, ``bad_signature``, ``wrong_snode``,
  ``clock_skew`` (|now - timestamp| > 10 s), ``old_timestamp`` (older than the node's newest accepted
  announcement), ``replay`` (the same announcement again, or one not newer than the node's high-water mark, see
  below), ``no_encoding_scheme``, ``no_version``,
  ``too_many_announcements`` (256 kept without a reset), and for
  announcements forwarded by a federated route server ``stale`` (older than the 20-minute window).
* Federation: ``handle_announce(raw, now, via=ip6)`` accepts an announcement forwarded by the federated route
  server ``via`` (the caller checked that it is a peer); it must be addressed to a route server of the
  federation (``via``, us, or one of ``servers``: route servers pass on what they got from each other, so every
  server ends up with every ISP's state), and the clock-skew check becomes the 20-minute window, since a
  catch-up transfer carries announcements up to 20 minutes old. A forwarded announcement we already hold
  (it reached us by two servers) is counted as ``forwarded_duplicate``, not as a rejection; one of the last
  RECENT_ACCEPTED accepted, byte for byte, is turned away before it is parsed or its signature checked.
* ``now_ms`` of ``handle_announce`` is when the announcement arrived (the service passes the kernel's receive
  time): a server that is behind judges the clock skew of what waited in its queue by its arrival.
* Replay across a restart: the newest timestamp accepted per node (a high-water mark) is kept in a
  :class:`~node.replay_state.ReplayState`, which the agent stores in the node's state directory, so it outlives
  the process. A direct announcement that is not newer than the mark, while the announcements held in memory do
  not reach it (after a restart they are gone), is a ``replay``: without it a restarted server accepts any
  announcement of the last 10 s again. (Refusing everything stamped before the server started would do for a
  restart, but not when the server's clock steps back; the mark does not depend on the server's clock.)
  Forwarded announcements are exempt: they come from a federated server, and after our restart its catch-up
  (older than what we held) is what rebuilds our state.
* PKT entities: LINK_QUALITY samples feed the link value like LINK_STATE; LEASE entities are kept per lease id
  until they expire.
* Market offers (OFFER entities, announcement.py): a node's offers are the ones its newest accepted announcement
  carries (an announcement without any withdraws them: sold, or the market stopped), listed by :meth:`offers`
  until their term ends. An offer entry that breaks a rule is dropped, the rest of the announcement is accepted,
  and the reason is counted as ``offer_refused_<reason>``: ``malformed``, ``unknown_version``, ``bad_term``,
  ``bad_value`` (announcement.py), ``forged`` (its seller key is not the key that signed the announcement: a
  node announces only what its own market sells), ``duplicate`` (a token twice in one announcement),
  ``too_many`` (more than MAX_OFFERS).
* Links: a PEER entity with label 0 withdraws the link with that peerNum; otherwise it inserts or replaces it.
  An edge exists only if **both** nodes announce the link to each other.
* Link quality: a LINK_STATE slot contributes ``kbRecv / (lag * 2^drops)`` (0 when lag is 0); the link value
  decays by ``1 / (1 + slots_elapsed / 18)`` between announcements (10-second slots, "halves every 3 minutes").
  Edge cost is ``1 / max(value of both directions, 1e-20)``.
* Leases: a link carries a lease when both its ends announce a LEASE entity on it with the same id and holder
  and an interface of its own (leaseNum); an expired one drops out (checked at every query). A path query names
  the keys the asker's traffic may use leases of (``holders``: its Cloud ISP's holder key; the asker's own key
  counts too). The search then prefers those leases: a hop over one costs 1 / LEASE_PREFERENCE of the same hop
  on the free tier, but only while every hop before it was one too, because a device keeps what came in on the
  free tier on the free tier (node/leases/datapath.py); and the label goes through the lease's interfaces at
  both ends, so it chooses the lease as on a PKT device (the return path too). Such a search starts at the asker
  (it is not symmetric: the other end holds other leases). The server does not check that the asker belongs to
  the holder: a PKT device does not check who sends over a lease either, a label is no access right.
* Links: a PEER entity with label 0 withdraws the link with that peerNum; otherwise it inserts or replaces it.
  An edge exists only if **both** nodes announce the link to each other.
* Link quality: a LINK_STATE slot contributes ``kbRecv / (lag * 2^drops)`` (0 when lag is 0); the link value
  decays by ``1 / (1 + slots_elapsed / 18)`` between announcements (10-second slots, "halves every 3 minutes").
  Edge cost is ``1 / max(value of both directions, 1e-20)``.
* Paths: Dijkstra in C (scipy, over a sparse matrix of the links kept up to date as costs move: csr.py) from the
  lower of the two addresses, so A->B and B->A are the same path reversed (without leases of the asker, see
  above); each search's answer is cached until a link on it goes, or 10 s after a cost moved or a link came
  (COST_STALE_MS; "no path" answers go when a link comes). A link a client reported dead (the ``dead`` field of a
  path query) is avoided in every answer for 10 s.
* Route labels: per hop the forward node's label to the next node (its peerNum, or the next node's announced
  label back-reference), re-encoded to the width of the reverse hop where needed (labels.build_label), with each
  node's announced encoding scheme (hubs announce a wider one). A path that does not fit one label (59 bits, and
  the return path a wide incoming interface leaves at the end) is cut into waypoint segments
  (node/cjdns/waypoints.py, a pktlab extension): ``Route.via`` holds the labels after the first.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import networkx as nx

from node.cjdns import keys
from node.cjdns.labels import CANONICAL, EncodingScheme, LabelError, convert_label, mask
from node.cjdns.waypoints import split
from node.replay_state import ReplayState
from .announcement import (NEVER, UNKNOWN_PEER_NUM, Announcement, AnnouncementError, BadOfferEntity,
                           EncodingSchemeEntity, LeaseEntity, LinkQualityEntity, LinkStateEntity, PeerEntity,
                           VersionEntity)
from .state_hash import state_hash

AGREED_TIMEOUT_MS = 20 * 60 * 1000
MAX_CLOCKSKEW_MS = 10 * 1000
SLOT_MS = 10 * 1000
LINK_STATE_DECAY_SLOTS = 18
MIN_VALUE = 1e-20
MAX_ANNOUNCEMENTS_PER_NODE = 256   # more (without a reset) are refused: the node has to send a reset
RECENT_ACCEPTED = 8192             # accepted announcements remembered byte for byte (forwarded duplicates)
DEAD_LINK_HOLD_MS = 10 * 1000   # a link a client reported dead is avoided in every answer this long
REPLAY_SCOPE = "route_server.announcement"
LEASE_PREFERENCE = 10           # a hop over one of the asker's leases costs a tenth of the same hop on the free tier
MAX_OFFERS = 8                  # market offers kept per node (what one announcement may carry)
# Path cache (cjdns-snode caches answers per pair and drops them when it rebuilds its graph, at most every 3 s, so
# an answer may be 3 s behind even a link that went down; pktlab's choice): a search's answer is kept until a link
# on it goes (at once), or until COST_STALE_MS after a link's cost moved or a new link came (a new link breaks no
# path; a "no path" answer goes at once). Link values move with nearly every announcement (RTT samples; a reset
# announcement starts a link's value afresh): at 1000 nodes that is about 25 times a second, so dropping the cache
# at each move would keep nothing; and dropping all of it whenever any link came or went (3 times a second at 1000
# nodes while they came up) kept a quarter of the answers at best.
COST_STALE_MS = 10_000
MAX_CACHED_PATHS = 65_536       # searches kept; the oldest go first


def _edge(a: bytes, b: bytes) -> tuple:
    """A link's key, the same from both ends."""
    return (a, b) if a < b else (b, a)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Link:
    peer_ip6: bytes
    label: int              # the peer's one-hop label back to the announcing node
    peer_num: int           # the announcing node's one-hop label (low 16 bits) to the peer
    encoding_form: int
    create_time_ms: int
    value: float = 0.0
    value_slot: int | None = None


@dataclass
class NodeState:
    ip6: bytes
    public_key: bytes
    announcements: list = field(default_factory=list)     # accepted Announcement objects, oldest first
    links: dict = field(default_factory=dict)             # peer_num -> Link
    to_peer: dict = field(default_factory=dict)           # peer ip6 -> its newest Link (the path search's look-up)
    version: int | None = None
    scheme: EncodingScheme | None = None
    leases: dict = field(default_factory=dict)            # lease_id -> LeaseEntity (newest, unexpired)
    offers: tuple = ()                                    # OfferEntity of the newest announcement

    @property
    def timestamp_ms(self) -> int:
        return self.announcements[-1].timestamp_ms if self.announcements else -1

    @property
    def state_hash(self) -> bytes:
        return state_hash(a.raw for a in self.announcements)


@dataclass
class LeaseLink:
    """A lease both ends of a link announce: whose it is and the lease's interface at each end."""
    lease_id: str
    holder: bytes
    guarantee_bps: int
    expires_s: int             # the earlier end's (NEVER: neither ends it)
    labels: dict               # ip6 of each end -> its one-hop label through the lease (peerNum form)

    def usable(self, holders, now_ms: int) -> bool:
        return self.holder in holders and (self.expires_s == NEVER or self.expires_s * 1000 > now_ms)


@dataclass(frozen=True)
class Route:
    label: int             # the first segment's label (the whole path's, without waypoints)
    nodes: tuple           # ip6 of each node, source first
    hops: tuple            # per-hop labels after re-encoding
    cost: float
    leases: tuple = ()     # per hop: the LeaseLink it goes over, or None (the free tier); () = all free
    via: tuple = ()        # the labels of the segments after the first (waypoints)
    waypoints: tuple = ()  # ip6 of the node each of those segments starts at


def link_state_value(lag: int, drops: int, kb_recv: int) -> float:
    if lag == 0:
        return 0.0
    return kb_recv / (lag * 2.0 ** min(drops, 1023))


class RouteServer:
    def __init__(self, snode_ip6: bytes, servers=(), replay_state: ReplayState | None = None):
        self.snode_ip6 = bytes(snode_ip6)
        self.replay_state = replay_state if replay_state is not None else ReplayState()
        self.servers = {self.snode_ip6} | {bytes(s) for s in servers}     # may be named by forwarded announcements
        self.nodes: dict[bytes, NodeState] = {}
        self.counters: dict[str, int] = {}
        self._adj: dict | None = None        # {ip6: {ip6: cost}}: built on first use, then kept up to date
        self._search = None                  # csr.SearchGraph of _adj: made at the first search (imports scipy)
        self.graph_version = 0               # counts the times links came or went
        self._paths: dict[tuple, tuple | None] = {}   # (a, b, avoid) -> (cost, path) or None, see COST_STALE_MS
        self._paths_over: dict[tuple, set] = {}       # (a, b), a < b -> keys of cached paths over that link
        self._no_path: set = set()                    # keys of cached "no path" answers
        self._costs_moved_ms: int | None = None   # the first cost change since the path cache was dropped
        self._now_ms = 0                     # the latest time we were given (announcements, queries)
        self._lease_nodes: dict[bytes, set] = {}   # holder key -> ip6 of the nodes announcing a lease of it
        self.dead_links: dict[tuple, int] = {}                # (ip6, ip6) both ways -> avoided until (ms)
        self._recent: dict[bytes, None] = {}     # the last RECENT_ACCEPTED announcements accepted, oldest first

    # -- announcements -----------------------------------------------------------------------------------
    def handle_announce(self, raw: bytes, now_ms: int, via: bytes | None = None) -> NodeState:
        """Accept an announcement or raise Rejected. Returns the sender's updated state."""
        raw = bytes(raw)
        self._now_ms = max(self._now_ms, now_ms)
        if via is not None and raw in self._recent:
            # the same bytes, accepted lately (from the node, or passed on by another server): no parse and no
            # signature check again; with S federated servers each announcement comes S - 2 times more like this
            self.counters["forwarded_duplicate"] = self.counters.get("forwarded_duplicate", 0) + 1
            raise Rejected("replay", "accepted already")
        try:
            node = self._accept(raw, now_ms, via)
        except Rejected as e:
            duplicate = via is not None and e.reason in ("replay", "old_timestamp")
            key = "forwarded_duplicate" if duplicate else f"rejected_{e.reason}"
            self.counters[key] = self.counters.get(key, 0) + 1
            raise
        key = "accepted" if via is None else "accepted_forwarded"
        self.counters[key] = self.counters.get(key, 0) + 1
        self._recent[raw] = None
        if len(self._recent) > RECENT_ACCEPTED:
            del self._recent[next(iter(self._recent))]
        self.replay_state.raise_high_water(REPLAY_SCOPE, node.ip6, node.timestamp_ms)
        self._update_graph(node.ip6)
        return node

    def _accept(self, raw: bytes, now_ms: int, via: bytes | None = None) -> NodeState:
        try:
            ann = Announcement.parse(raw, verify=False)
        except AnnouncementError as e:
            raise Rejected("malformed", str(e)) from None
        if not keys.verify(ann.signing_key, raw[64:], ann.signature):
            raise Rejected("bad_signature")
        if ann.snode_ip != self.snode_ip6 if via is None else ann.snode_ip not in self.servers | {bytes(via)}:
            raise Rejected("wrong_snode")
        if via is not None:
            if not now_ms - AGREED_TIMEOUT_MS <= ann.timestamp_ms <= now_ms + MAX_CLOCKSKEW_MS:
                raise Rejected("stale", f"{now_ms - ann.timestamp_ms} ms old")
        elif abs(now_ms - ann.timestamp_ms) > MAX_CLOCKSKEW_MS:
            raise Rejected("clock_skew", f"{now_ms - ann.timestamp_ms} ms")
        node = self.nodes.get(ann.ip6)
        if via is None:
            high = self.replay_state.high_water(REPLAY_SCOPE, ann.ip6)
            if high is not None and ann.timestamp_ms <= high and (node is None or node.timestamp_ms < high):
                raise Rejected("replay", "not newer than the newest announcement accepted before a restart")
        if node is not None:
            if any(a.raw == raw for a in node.announcements):
                raise Rejected("replay")
            if node.timestamp_ms > ann.timestamp_ms:
                raise Rejected("old_timestamp")
        if ann.reset or node is None:
            base = []
            version = scheme = None
        else:
            if len(node.announcements) >= MAX_ANNOUNCEMENTS_PER_NODE:
                raise Rejected("too_many_announcements")
            base = list(node.announcements)
            version, scheme = node.version, node.scheme
        version = ann.protocol_version if ann.protocol_version is not None else version
        scheme = ann.encoding_scheme if ann.encoding_scheme is not None else scheme
        if scheme is None:
            raise Rejected("no_encoding_scheme")
        if version is None:
            raise Rejected("no_version")
        fresh = NodeState(ann.ip6, ann.public_key, base + [ann], version=version, scheme=scheme)
        self._forget_old(fresh, ann.timestamp_ms)
        self._rebuild_links(fresh)
        self._collect_leases(fresh, now_ms)
        fresh.offers = self._accept_offers(ann)
        self._index_leases(ann.ip6, self.nodes.get(ann.ip6), fresh)
        self.nodes[ann.ip6] = fresh
        return fresh

    def _index_leases(self, ip6: bytes, old: NodeState | None, new: NodeState | None) -> None:
        """Keep _lease_nodes: a path query looks up the asker's leases there instead of scanning every node."""
        for state, add in ((old, False), (new, True)):
            for lease in state.leases.values() if state is not None else ():
                where = self._lease_nodes.setdefault(lease.holder, set())
                if add:
                    where.add(ip6)
                else:
                    where.discard(ip6)
                    if not where:
                        del self._lease_nodes[lease.holder]

    @staticmethod
    def _forget_old(node: NodeState, newest_ms: int) -> None:
        """Drop announcements older than 20 minutes unless they hold a node's newest non-ephemeral entity."""
        newest_holder = {}
        for i, ann in enumerate(node.announcements):
            for e in ann.entities:
                if isinstance(e, PeerEntity):
                    newest_holder[("peer", e.peer_num)] = i
                elif isinstance(e, VersionEntity):
                    newest_holder[("version",)] = i
                elif isinstance(e, EncodingSchemeEntity):
                    newest_holder[("scheme",)] = i
        keep = set(newest_holder.values())
        node.announcements = [a for i, a in enumerate(node.announcements)
                              if a.timestamp_ms >= newest_ms - AGREED_TIMEOUT_MS or i in keep]

    @staticmethod
    def _rebuild_links(node: NodeState) -> None:
        links: dict[int, Link] = {}
        for ann in node.announcements:
            slot = ann.timestamp_ms // SLOT_MS
            for e in ann.entities:
                if isinstance(e, PeerEntity):
                    if e.label == 0:
                        links.pop(e.peer_num, None)
                        continue
                    old = links.get(e.peer_num)
                    link = Link(e.ip6, e.label, e.peer_num,
                                e.encoding_form, ann.timestamp_ms)
                    if old is not None and old.peer_ip6 == link.peer_ip6:
                        link.create_time_ms, link.value, link.value_slot = (old.create_time_ms, old.value,
                                                                            old.value_slot)
                    links[e.peer_num] = link
                elif isinstance(e, (LinkStateEntity, LinkQualityEntity)):
                    if isinstance(e, LinkStateEntity):
                        link = links.get(e.node_id)
                        if link is None or not e.slots:
                            continue
                        sample = sum(link_state_value(*t) for t in e.slots) / len(e.slots)
                    else:
                        link = links.get(e.peer_num)
                        if link is None:
                            continue
                        sample = e.value
                    if link.value_slot is not None:
                        elapsed = max(0, slot - link.value_slot)
                        link.value /= 1 + elapsed / LINK_STATE_DECAY_SLOTS
                    link.value += sample
                    link.value_slot = slot
        node.links = links
        node.to_peer = {}
        for link in links.values():
            old = node.to_peer.get(link.peer_ip6)
            if old is None or link.create_time_ms > old.create_time_ms:
                node.to_peer[link.peer_ip6] = link

    @staticmethod
    def _collect_leases(node: NodeState, now_ms: int) -> None:
        leases = {}
        for ann in node.announcements:
            for e in ann.entities:
                if isinstance(e, LeaseEntity):
                    leases[e.lease_id] = e
        node.leases = {k: v for k, v in leases.items() if not v.expired(now_ms)}

    def _accept_offers(self, ann: Announcement) -> tuple:
        """The announcement's offers that keep the rules (module docstring); the others are counted."""
        kept, tokens = [], set()
        for e in ann.offers:
            if isinstance(e, BadOfferEntity):
                reason = e.reason
            elif e.seller != ann.signing_key:
                reason = "forged"
            elif e.token in tokens:
                reason = "duplicate"
            elif len(kept) >= MAX_OFFERS:
                reason = "too_many"
            else:
                kept.append(e)
                tokens.add(e.token)
                continue
            key = f"offer_refused_{reason}"
            self.counters[key] = self.counters.get(key, 0) + 1
        return tuple(kept)

    def offers(self, now_ms: int) -> list:
        """[(NodeState, OfferEntity)] of every node's offers whose term has not ended, by node and token."""
        return sorted(((node, o) for node in self.nodes.values() for o in node.offers if not o.expired(now_ms)),
                      key=lambda x: (x[0].ip6, x[1].token))

    def expire(self, now_ms: int) -> list[bytes]:
        """Forget nodes that sent nothing for 20 minutes; returns their ip6."""
        gone = [ip6 for ip6, n in self.nodes.items() if n.timestamp_ms < now_ms - AGREED_TIMEOUT_MS]
        for ip6 in gone:
            self._index_leases(ip6, self.nodes.pop(ip6), None)
            if self._adj is not None:
                for other in self._adj.pop(ip6):
                    self._adj[other].pop(ip6, None)
                if self._search is not None:
                    self._search.remove_node(ip6)
                self._graph_changed()
        return gone

    def state_hash(self, ip6: bytes) -> bytes:
        node = self.nodes.get(ip6)
        return node.state_hash if node else bytes(64)

    # -- graph and paths --------------------------------------------------------------------------------
    def _link(self, a: bytes, b: bytes) -> Link | None:
        node = self.nodes.get(a)
        if node is None:
            return None
        return node.to_peer.get(b)

    def adjacency(self) -> dict:
        """{ip6: {ip6: cost}} for links announced by both ends; cost = 1 / max(value both ways, 1e-20). Built once,
        then updated node by node as announcements arrive; treat it as read-only."""
        if self._adj is None:
            self._adj = self._build_adjacency()
        return self._adj

    def graph(self, rebuild: bool = False) -> nx.DiGraph:
        """The adjacency as a networkx graph (edge attribute ``weight``); ``rebuild``: from the announcements
        afresh instead of the incrementally kept adjacency."""
        g = nx.DiGraph()
        adj = self._build_adjacency() if rebuild else self.adjacency()
        g.add_nodes_from(adj)
        g.add_weighted_edges_from((a, b, w) for a, nbrs in adj.items() for b, w in nbrs.items())
        return g

    def _cost(self, a: bytes, b: bytes) -> float | None:
        forward, back = self._link(a, b), self._link(b, a)
        if forward is None or back is None:
            return None
        return 1.0 / max(forward.value, back.value, MIN_VALUE)

    def lease_links(self, a: bytes, b: bytes) -> tuple:
        """The leases both ends announce on the link from a to b (LeaseLink, the biggest guarantee first)."""
        forward, back = self._link(a, b), self._link(b, a)
        if forward is None or back is None:
            return ()
        out = []
        theirs = self.nodes[b].leases
        for lease_id, mine in self.nodes[a].leases.items():
            other = theirs.get(lease_id)
            if other is None or (mine.peer_num, other.peer_num) != (forward.peer_num, back.peer_num) \
                    or mine.holder is None or mine.holder != other.holder \
                    or UNKNOWN_PEER_NUM in (mine.lease_num, other.lease_num):
                continue
            out.append(LeaseLink(lease_id, mine.holder, min(mine.guarantee_bps, other.guarantee_bps),
                                 min(mine.expires_s, other.expires_s), {a: mine.lease_num, b: other.lease_num}))
        return tuple(sorted(out, key=lambda l: (-l.guarantee_bps, l.lease_id)))

    def _graph_changed(self) -> None:
        self.graph_version += 1
        self._drop_paths()

    def _links_changed(self, ip6: bytes, gone, came) -> None:
        """Links of ip6 to ``gone`` went, to ``came`` came: cached paths over a gone link go at once (module
        comment above COST_STALE_MS)."""
        self.graph_version += 1
        for other in gone:
            for key in self._paths_over.pop(_edge(ip6, other), ()):
                self._paths.pop(key, None)
        if came:
            for key in self._no_path:
                self._paths.pop(key, None)
            self._no_path.clear()
            if self._costs_moved_ms is None:
                self._costs_moved_ms = self._now_ms

    def _drop_paths(self) -> None:
        self._paths.clear()
        self._paths_over.clear()
        self._no_path.clear()
        self._costs_moved_ms = None

    def _build_adjacency(self) -> dict:
        adj = {ip6: {} for ip6 in self.nodes}
        for ip6, node in self.nodes.items():
            for link in node.links.values():
                cost = self._cost(ip6, link.peer_ip6)
                if cost is not None:
                    adj[ip6][link.peer_ip6] = cost
        return adj

    def _update_graph(self, ip6: bytes) -> None:
        """Redo the links of one node (both directions) after its announcements changed."""
        adj = self._adj
        if adj is None:
            return
        old = adj.get(ip6, {})
        for other in old:
            adj[other].pop(ip6, None)
        adj[ip6] = {}
        for link in self.nodes[ip6].links.values():
            cost = self._cost(ip6, link.peer_ip6)
            if cost is not None:
                adj[ip6][link.peer_ip6] = cost
                adj.setdefault(link.peer_ip6, {})[ip6] = cost
        gone, came = old.keys() - adj[ip6].keys(), adj[ip6].keys() - old.keys()
        if self._search is not None:
            self._search.add_node(ip6)
            for other in gone:
                self._search.remove_link(ip6, other)
            for other, cost in adj[ip6].items():
                if old.get(other) != cost:
                    self._search.set_link(ip6, other, cost)
        if gone or came:
            self._links_changed(ip6, gone, came)
        elif self._costs_moved_ms is None and old != adj[ip6]:
            self._costs_moved_ms = self._now_ms

    def route(self, src_ip6: bytes, dst_ip6: bytes, bad_labels=(), dead_labels=(), now_ms=None,
              holders=()) -> Route | None:
        """Cheapest path and its label from src to dst, or None if there is none, avoiding what failed for the
        asker (the server may not have heard yet): ``dead_labels`` lead from src to the far end of a link a switch
        reported dead (that last link is avoided); ``bad_labels`` are whole paths that failed, newest first, the
        dead link somewhere on them. Tried in turn: around all of it, around the dead links, around the newest
        bad path; else the cheapest path. With ``now_ms`` the reported dead links are remembered for
        DEAD_LINK_HOLD_MS and avoided for every asker: the other end of a flow re-asks when it sees the flow move
        (it cannot see a link die under the packets it sends) and must not get the dead link back. With
        ``now_ms``, the leases of ``holders`` and of src's own key are preferred (module docstring)."""
        def links(path):
            return set(zip(path, path[1:])) | set(zip(path[1:], path))
        bad = [links(p) for p in (self.path_of_label(src_ip6, label) for label in bad_labels) if p]
        dead_paths = [self.path_of_label(src_ip6, label) for label in dead_labels]
        dead = set().union(*(links(p[-2:]) for p in dead_paths if p and len(p) > 1))
        if len(bad) < len(bad_labels) or len(dead) < 2 * len(dead_labels):
            self.counters["route_failed_label_unknown"] = self.counters.get("route_failed_label_unknown", 0) + 1
        if now_ms is not None:
            self._now_ms = max(self._now_ms, now_ms)
            dead |= self._remember_dead_links(dead, now_ms)
        lease_of = self._lease_chooser(src_ip6, holders, now_ms)
        route = self._route(src_ip6, dst_ip6, lease_of=lease_of)
        if route is None or not dead.union(*bad) & set(zip(route.nodes, route.nodes[1:])):
            return route
        for avoid in (dead.union(*bad), dead, bad[0] if bad else set()):
            other = self._route(src_ip6, dst_ip6, avoid, lease_of) if avoid else None
            if other is not None:
                self.counters["route_avoiding_failed"] = self.counters.get("route_avoiding_failed", 0) + 1
                return other
        return route

    def _remember_dead_links(self, reported: set, now_ms: int) -> set:
        """Add the reported links; return every link still held dead."""
        for link in [l for l, until in self.dead_links.items() if until <= now_ms]:
            del self.dead_links[link]
        for link in reported:
            self.dead_links[link] = now_ms + DEAD_LINK_HOLD_MS
        if reported:
            self.counters["route_dead_link_reports"] = self.counters.get("route_dead_link_reports", 0) + 1
        return set(self.dead_links)

    def _lease_chooser(self, src_ip6: bytes, holders, now_ms):
        """(u, v) -> the lease the asker uses on that hop, or None; None when no lease known is
        the asker's (the search then is the plain one)."""
        node = self.nodes.get(bytes(src_ip6))
        if now_ms is None or node is None:
            return None
        mine = {bytes(k) for k in holders} | {node.public_key}
        if not any(lease.holder in mine and not lease.expired(now_ms)
                   for holder in mine for ip6 in self._lease_nodes.get(holder, ())
                   for lease in self.nodes[ip6].leases.values()):
            return None

        def lease_of(u, v):
            return next((lease for lease in self.lease_links(u, v) if lease.usable(mine, now_ms)), None)
        return lease_of

    def path_of_label(self, src_ip6: bytes, label: int) -> list | None:
        """The nodes a label leads through from src, by the announced peerNums; None if it leaves what we know."""
        path, ip6 = [bytes(src_ip6)], bytes(src_ip6)
        for _ in range(64):
            node = self.nodes.get(ip6)
            if node is None or node.scheme is None:
                return None
            try:
                form = node.scheme.form_of(label)
                if label & mask(form.size) == 1:
                    return path                                   # the self route: arrived
                hop = convert_label(node.scheme, (label & mask(form.size)) | (1 << form.size), CANONICAL)
            except LabelError:
                return None
            lease = next((l for l in node.leases.values() if l.lease_num == hop), None)
            link = node.links.get(hop if lease is None else lease.peer_num)      # keyed by peerNum
            if link is None:
                return None
            label >>= form.size
            ip6 = link.peer_ip6
            path.append(ip6)
        return None

    def _route(self, src_ip6: bytes, dst_ip6: bytes, avoid=frozenset(), lease_of=None) -> Route | None:
        src_ip6, dst_ip6 = bytes(src_ip6), bytes(dst_ip6)
        if src_ip6 not in self.nodes or dst_ip6 not in self.nodes:
            return None
        if src_ip6 == dst_ip6:
            return Route(1, (src_ip6,), (), 0.0)
        if lease_of is not None:
            found = self._cheapest_over_leases(self.adjacency(), src_ip6, dst_ip6, lease_of, avoid)
            if found is None:
                return None
            route = self._labelled(*found)
            if route is not None:
                return route
            self.counters["route_leases_unlabelled"] = self.counters.get("route_leases_unlabelled", 0) + 1
        # Searched from the lower address, so both ends of a flow get the same path (reversed) whichever of
        # several equally cheap paths the search meets first: a node re-asks when the other end moves.
        a, b = sorted((src_ip6, dst_ip6))
        found = self._cheapest(a, b, avoid)
        if found is None:
            return None
        cost, path = found
        return self._labelled(path if a == src_ip6 else path[::-1], cost)

    def _cheapest(self, a: bytes, b: bytes, avoid) -> tuple | None:
        """(cost, path) of a cheapest path from a to b, or None, from the path cache (COST_STALE_MS); both directions
        of a pair share an entry (searched from the lower address, _route)."""
        if self._costs_moved_ms is not None and self._now_ms - self._costs_moved_ms >= COST_STALE_MS:
            self._drop_paths()
        key = (a, b, frozenset(avoid))
        if key in self._paths:
            self.counters["route_cache_hit"] = self.counters.get("route_cache_hit", 0) + 1
            return self._paths[key]
        self.counters["route_cache_miss"] = self.counters.get("route_cache_miss", 0) + 1
        if self._search is None:
            from .csr import SearchGraph         # here, not at the top: agents that never search skip scipy
            self._search = SearchGraph.from_adjacency(self.adjacency())
        found = self._search.search(a, b, avoid)
        if len(self._paths) >= MAX_CACHED_PATHS:
            # the evicted answer's keys stay in _paths_over and _no_path until that link goes or the cache is
            # dropped (at most COST_STALE_MS on a live mesh); popping a key no longer cached does nothing
            del self._paths[next(iter(self._paths))]
        self._paths[key] = found
        if found is None:
            self._no_path.add(key)
        else:
            path = found[1]
            for u, v in zip(path, path[1:]):
                self._paths_over.setdefault(_edge(u, v), set()).add(key)
        return found

    @staticmethod
    def _cheapest_over_leases(adj, src: bytes, dst: bytes, lease_of, avoid=frozenset()):
        """(path, cost, lease per hop) of the cheapest path from src, or None. Dijkstra over (node, still on the
        asker's leases): a hop over a lease costs weight / LEASE_PREFERENCE while every hop before it went over one
        too; after a free hop the rest is free (a device keeps free-tier packets on the free tier). Links in
        ``avoid`` ((u, v) pairs) are not used."""
        start = (src, True)
        best, came = {start: 0.0}, {}
        order = itertools.count()
        heap = [(0.0, next(order), start)]
        done = set()
        while heap:
            cost, _, state = heapq.heappop(heap)
            if state in done:
                continue
            done.add(state)
            u, on_leases = state
            if u == dst:
                path, leases = [u], []
                while state != start:
                    state, lease = came[state]
                    path.append(state[0])
                    leases.append(lease)
                return path[::-1], cost, leases[::-1]
            for v, weight in adj[u].items():
                if (u, v) in avoid:
                    continue
                lease = lease_of(u, v) if on_leases else None
                nxt = (v, lease is not None)
                c = cost + weight / (LEASE_PREFERENCE if lease is not None else 1)
                if c < best.get(nxt, float("inf")):
                    best[nxt], came[nxt] = c, (state, lease)
                    heapq.heappush(heap, (c, next(order), nxt))
        return None

    def _labelled(self, path, cost, leases=None) -> Route | None:
        """The route's label(s); ``leases``: per hop the LeaseLink to go over (None: the free tier)."""
        leases = list(leases) if leases is not None else [None] * (len(path) - 1)
        hops, schemes = [], []
        for i, ip6 in enumerate(path):
            prev_label = next_label = None
            if i > 0:
                prev_label = self.hop_label(ip6, path[i - 1]) if leases[i - 1] is None else leases[i - 1].labels[ip6]
            if i + 1 < len(path):
                next_label = self.hop_label(ip6, path[i + 1]) if leases[i] is None else leases[i].labels[ip6]
            hops.append((prev_label, next_label))
            schemes.append(self.nodes[ip6].scheme)
        try:
            segments = split(hops, schemes)
        except LabelError:
            self.counters["route_label_invalid"] = self.counters.get("route_label_invalid", 0) + 1
            return None
        if len(segments) > 1:
            self.counters["route_waypoints"] = self.counters.get("route_waypoints", 0) + 1
        return Route(segments[0].label, tuple(path), tuple(h for s in segments for h in s.hops), cost,
                     leases=tuple(leases) if any(leases) else (), via=tuple(s.label for s in segments[1:]),
                     waypoints=tuple(path[s.end] for s in segments[:-1]))

    def hop_label(self, a: bytes, b: bytes) -> int:
        """a's one-hop label to b: a's peerNum for b, else what b announced as a's label to reach it."""
        forward = self._link(a, b)
        if forward is not None and forward.peer_num != UNKNOWN_PEER_NUM:
            return forward.peer_num
        return self._link(b, a).label
