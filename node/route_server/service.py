"""The route server service: bencoded messages in, replies out, federation with other route servers.

:class:`RouteServerService` wraps the pure graph core (:mod:`.server`) with the message layer
(:mod:`.messages`). It does no I/O and reads no clock: ``handle(msg_bytes, src, now_ms, path=None)`` takes one
message from the node with public key ``src`` (known from the CryptoAuth session that carried it; ``path`` is
the way back, if the host knows it: ``(label, via)``, via the further segments when the message came through
waypoints) and returns the reply bytes, or None when nothing should be sent.

* ``ann``: accept or reject (a counted reason, see server.py) and reply with ``recvTime``, the sender's
  ``stateHash`` and, for a rejection, ``error``; ``alt`` lists the other route servers of our Cloud ISP with a
  path to each from the sender.
* ``pn``: ``recvTime``, ``stateHash`` (zeros for an unknown node) and ``alt``.
* ``gr``: Dijkstra over links announced in both directions, preferring the leases of the asker (``hk`` and its
  own key, see server.py); ``n`` holds the target's key and the spliced label, or, for a path that needs
  waypoints, ``wp`` the key and label of each segment (messages.py).
* Federation: route servers listed in ``federation`` (public keys of other route servers, ours or other Cloud
  ISPs) may ``sub``scribe; from then on every announcement we accept, from a node or from another server, is
  forwarded to them in ``fwd`` batches (not back to the server it came from), and a subscription first gets a
  catch-up of all we hold. Passing on what other servers sent is what lets a server that has no path to a
  foreign server yet (it learns the foreign links only by federation) get that state from a server of its own
  ISP; duplicates (a state that reached us by two servers) are dropped by the core's replay check. A subscriber
  names the servers that forward to it themselves (``hr``), and what those sent is not passed on to it: with S
  servers that all reach each other, an announcement crosses the mesh S - 1 times instead of about (S - 1)^2.
  We subscribe to every federation peer we have a path to. A peer's path comes from our own graph, from a ``frs``
  report of one of our nodes (a route server its neighbours use), or from the return path of its last message to
  us.

Outgoing federation traffic is queued: the host calls :meth:`take_outbox` and sends each
``Outbound(public_key, label, payload, via)`` (``via``: waypoint segments after the first, for a far peer); replies
to those messages go to :meth:`handle` like any other message.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from node.cjdns import keys, labels
from node.cjdns.labels import LabelError, splice
from . import messages as M
from .server import AGREED_TIMEOUT_MS, Rejected, RouteServer

SUBSCRIBE_RETRY_MS = 5000
SUBSCRIBE_REFRESH_MS = 60_000     # renewed, so a peer that restarted (and forgot us) forwards again
EXPIRE_EVERY_MS = 10_000
FORWARD_BATCH_BYTES = 16 * 1024
# an announcement bigger than a batch goes alone, up to what one datagram carries: a hub's (Freifunk Altdorf's 659
# peers with their link qualities: 33 KB) was dropped, and the other servers never knew the hub's links
MAX_FORWARD_BYTES = 60 * 1024
MAX_QUEUED_FORWARDS = 10_000
# Each costs path searches over the whole graph, and at 1000 nodes they were most of a server's CPU (two searches
# per announcement for the alternatives, one per report and announcement for frs): each is done at most this often
# per node (alternatives; a reply in between lists none, the node keeps what it has) or per federation peer (reports).
# Alternatives a node was given hold longer (ALT_KEEP_MS): at 1000 nodes each re-announces every 40 s, and three
# searches per announcement for its alternatives were a sixth of a busy server's time.
ALT_REFRESH_MS = 30_000
ALT_KEEP_MS = 300_000
REPORT_CHECK_MS = SUBSCRIBE_RETRY_MS
# Queued announcements go to the subscribed peers in batches, about one batch this often in all: to each of N peers
# every N times this (each batch costs a path search and a trip across the mesh; with 7 servers and announcements
# spread evenly, a batch to each peer every 0.5 s was 84 multi-hop messages a second: grid:32x32 idled at 1.7
# cores, 1.2 with the pacing)
FORWARD_EVERY_MS = 500


class Outbound(NamedTuple):
    public_key: bytes
    label: int
    payload: bytes
    via: tuple = ()


@dataclass
class FederationPeer:
    public_key: bytes
    ip6: bytes
    same_isp: bool
    interested: bool = False          # it subscribed to us
    subscribed: bool = False          # it acknowledged our subscription
    last_sub_ms: int = -SUBSCRIBE_RETRY_MS
    last_fwd_ms: int = -FORWARD_EVERY_MS
    heard_label: int | None = None    # a path to it learned from a node's report or its own messages
    heard_via: tuple = ()             # ... and its further waypoint segments (the reporting node is a waypoint)
    report_checked_ms: int | None = None   # when a node's report of it was last looked at
    hears: frozenset = frozenset()    # servers that forward to it themselves (its ``sub``): not passed on to it
    told: frozenset | None = None     # the servers we named in our last ``sub`` to it
    queue: list = None                # announcements waiting to be forwarded

    def __post_init__(self):
        self.queue = []


class RouteServerService:
    def __init__(self, public_key: bytes, federation=(), same_isp=(), version: int = M.PROTOCOL_VERSION,
                 replay_state=None, cpu_clock=None):
        """federation: public keys of route servers to exchange link state with; same_isp: the subset that
        belongs to our Cloud ISP (offered to our nodes as failover candidates); replay_state: where the core
        keeps its replay high-water marks (node/replay_state.py; default in memory); cpu_clock: () -> seconds
        (the host's CPU time): if given, the CPU spent per kind of query is counted (``cpu_us_<kind>``)."""
        self.public_key = bytes(public_key)
        self.ip6 = keys.address_for_key(self.public_key)
        self.version = version
        same = {bytes(k) for k in same_isp}
        self.peers: dict[bytes, FederationPeer] = {}
        for k in list(federation) + list(same):
            k = bytes(k)
            if k != self.public_key and keys.address_for_key(k) not in self.peers:
                self.peers[keys.address_for_key(k)] = FederationPeer(k, keys.address_for_key(k), k in same)
        self.core = RouteServer(self.ip6, servers=self.peers, replay_state=replay_state)
        self.counters: Counter = Counter()
        self._txids = 0
        self._last_expire = None
        self._alt_given: dict[bytes, tuple] = {}   # node -> (when they were last looked for, how long that holds)
        self.cpu_clock = cpu_clock

    # -- messages from nodes and peers ----------------------------------------------------------------
    def handle(self, msg_bytes: bytes, src: bytes, now_ms: int, path: tuple | None = None,
               arrived_ms: int | None = None) -> bytes | None:
        """``arrived_ms``: when the message reached this node (the kernel's receive time of its frame), if the host
        knows it; a server that is behind gets to a message later than it arrived. An announcement's clock skew
        is judged by it and replies carry it as ``recvTime``, with ``now_ms`` as ``sendTime`` (messages.py)."""
        if self.cpu_clock is None:
            return self._handle(msg_bytes, src, now_ms, path, arrived_ms)[0]
        t0 = self.cpu_clock()
        reply, kind = self._handle(msg_bytes, src, now_ms, path, arrived_ms)
        self.counters[f"cpu_us_{kind}"] += int((self.cpu_clock() - t0) * 1e6)
        return reply

    def _handle(self, msg_bytes: bytes, src: bytes, now_ms: int, path: tuple | None,
                arrived_ms: int | None) -> tuple[bytes | None, str]:
        """(the reply or None, the kind of message: the query's ``sq``, ``gr_server`` for a path to this server
        (a client's backup query, or its look-up of this node), ``reply`` or ``bad``)"""
        src_ip6 = keys.address_for_key(bytes(src))
        at = now_ms if arrived_ms is None else min(arrived_ms, now_ms)
        self._housekeeping(now_ms)
        try:
            if not M.is_query(msg_bytes):
                self._on_peer_reply(M.parse_reply(msg_bytes), src_ip6)
                return None, "reply"
            q = M.parse_query(msg_bytes)
        except M.MessageError as e:
            self.counters["bad_message"] += 1
            txid = M.query_txid(msg_bytes)
            if txid is None:
                return None, "bad"
            return M.pack_reply(M.Reply(txid, self.version, recv_time=at, send_time=now_ms,
                                        error=f"bad message: {e}")), "bad"
        self.counters[f"query_{q.sq}"] += 1
        peer = self.peers.get(src_ip6)
        if peer is not None and path is not None:
            peer.heard_label, peer.heard_via = path[0], tuple(path[1])
        self._note_foreign(q.foreign, src_ip6, now_ms)
        if q.sq == "ann":
            return self._announce(q, src_ip6, at, now_ms), q.sq
        if q.sq == "pn":
            return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms,
                                        state_hash=self.core.state_hash(src_ip6),
                                        alternatives=self._alternatives(src_ip6, now_ms))), q.sq
        if q.sq == "gr":
            # where path queries come from (each counted in query_gr too): a path to us (a client's backup query
            # or its look-up of this node), our own node's look-ups, queries naming failed labels or dead links
            if q.tar == self.ip6:
                self.counters["query_gr_server"] += 1
            if src_ip6 == self.ip6:
                self.counters["query_gr_own"] += 1
            if q.bad:
                self.counters["query_gr_bad"] += 1
            if q.dead:
                self.counters["query_gr_dead"] += 1
            return self._path(q, at, now_ms), "gr_server" if q.tar == self.ip6 else q.sq
        if peer is None:
            self.counters["rejected_not_federated"] += 1
            return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms,
                                        error="not_federated")), q.sq
        if q.sq == "sub":
            peer.hears = frozenset(q.hears)
            if q.catch_up or not peer.interested:
                peer.interested = True
                peer.queue = [a.raw for n in self.core.nodes.values() for a in n.announcements]
            return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms)), q.sq
        return self._forwarded(q, peer, at, now_ms), q.sq

    def _announce(self, q: M.Query, src_ip6: bytes, at: int, now_ms: int) -> bytes:
        error = None
        ann_ip6 = src_ip6
        try:
            node = self.core.handle_announce(q.ann, at)
            ann_ip6 = node.ip6
            self._pass_on(bytes(q.ann))
        except Rejected as e:
            error = e.reason
        return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms, error=error,
                                    state_hash=self.core.state_hash(ann_ip6),
                                    alternatives=self._alternatives(ann_ip6, now_ms)))

    def _path(self, q: M.Query, at: int, now_ms: int) -> bytes:
        route = self.core.route(q.src, q.tar, q.bad, q.dead, now_ms, holders=q.holders)
        if route is None:
            self.counters["path_not_found"] += 1
            return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms, error="not_found"))
        self.counters["path_found"] += 1
        if route.leases:
            self.counters["path_over_leases"] += 1
        key = self.core.nodes[q.tar].public_key
        if not route.via:
            return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms,
                                        nodes=(M.Address(key, route.label),)))
        self.counters["path_found_waypoints"] += 1
        ends = [self.core.nodes[w].public_key for w in route.waypoints] + [key]
        return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms, waypoints=tuple(
            M.Address(k, label) for k, label in zip(ends, (route.label,) + route.via))))

    def _forwarded(self, q: M.Query, peer: FederationPeer, at: int, now_ms: int) -> bytes:
        accepted = 0
        for raw in q.anns:
            try:
                self.core.handle_announce(raw, at, via=peer.ip6)    # counted by reason in the core
                accepted += 1
                self._pass_on(raw, came_from=peer)
            except Rejected:
                pass
        return M.pack_reply(M.Reply(q.txid, self.version, recv_time=at, send_time=now_ms, accepted=accepted))

    def _pass_on(self, raw: bytes, came_from: FederationPeer | None = None) -> None:
        for peer in self.peers.values():
            if peer.interested and (came_from is None or (peer is not came_from and came_from.ip6 not in peer.hears)):
                if len(peer.queue) < MAX_QUEUED_FORWARDS:
                    peer.queue.append(raw)
                else:
                    self.counters["forward_dropped_queue_full"] += 1

    def _on_peer_reply(self, reply: M.Reply, src_ip6: bytes) -> None:
        peer = self.peers.get(src_ip6)
        if peer is None or not reply.txid.startswith(b"sub"):
            return
        if reply.error is None:
            peer.subscribed = True

    def _alternatives(self, ip6: bytes, now_ms: int) -> tuple:
        """The other route servers of our ISP with a path from ``ip6``; none if they were looked for lately."""
        when, hold = self._alt_given.get(ip6, (None, 0))
        if when is not None and 0 <= now_ms - when < hold:
            return ()
        out = []
        for peer in self.peers.values():
            if peer.same_isp:
                route = self.core.route(ip6, peer.ip6)
                if route is not None and not route.via:      # a client reaches its servers by one label
                    out.append(M.Address(peer.public_key, route.label))
        self._alt_given[ip6] = (now_ms, ALT_KEEP_MS if out else ALT_REFRESH_MS)
        return tuple(out)

    def _note_foreign(self, found, src_ip6: bytes, now_ms: int) -> None:
        """A node reports route servers its neighbours use: a first path to a federation peer. Where our path to
        the node and its label to the server do not fit one label, the node becomes a waypoint between the two
        (waypoints.py): servers far apart in a big mesh still find each other."""
        for addr in found:
            peer = self.peers.get(keys.address_for_key(addr.public_key))
            if peer is None or (peer.report_checked_ms is not None
                                and 0 <= now_ms - peer.report_checked_ms < REPORT_CHECK_MS):
                continue
            peer.report_checked_ms = now_ms
            if self.core.route(self.ip6, peer.ip6) is not None:
                continue
            to_node = self.core.route(self.ip6, src_ip6)
            if to_node is None:
                continue
            if not to_node.via:
                try:
                    peer.heard_label, peer.heard_via = splice(self._from_node(src_ip6, to_node, addr.label),
                                                              to_node.label), ()
                    continue
                except LabelError:
                    pass
            peer.heard_label, peer.heard_via = to_node.label, to_node.via + (addr.label,)

    def _from_node(self, ip6: bytes, to_node, label: int) -> int:
        """The node's ``label`` (from its router) for a packet that reaches it on our path ``to_node``: its first
        director widened to the node's interface back towards us where that is wider (labels.convert_for_return;
        its switch refuses a narrower one)."""
        if len(to_node.nodes) < 2:
            return label
        back = self.core.hop_label(ip6, to_node.nodes[-2])
        return labels.convert_for_return(self.core.nodes[ip6].scheme, label, back)

    # -- federation output ---------------------------------------------------------------------------
    def _route_to(self, peer: FederationPeer) -> tuple[int, tuple] | None:
        """(label, via) to a federation peer: our own graph's path, else what we heard."""
        route = self.core.route(self.ip6, peer.ip6)
        if route is not None:
            return route.label, route.via
        return None if peer.heard_label is None else (peer.heard_label, peer.heard_via)

    def take_outbox(self, now_ms: int) -> list[Outbound]:
        """Federation messages to send now. ``now_ms`` only times the subscriptions: any steady clock will do."""
        out = []
        every = self._forward_every_ms()
        hears = self._hears()
        for peer in self.peers.values():
            sub_due = now_ms >= self._sub_due_ms(peer, hears)
            fwd_due = peer.interested and peer.queue and not 0 <= now_ms - peer.last_fwd_ms < every
            if not (sub_due or fwd_due):
                continue                         # the path search below costs more than the rest of a tick
            found = self._route_to(peer)
            if found is None:
                continue
            label, via = found
            if sub_due:
                peer.last_sub_ms = now_ms
                peer.told = hears - {peer.ip6}
                sub = M.Query("sub", self._txid(b"sub"), catch_up=not peer.subscribed, hears=tuple(sorted(peer.told)))
                out.append(Outbound(peer.public_key, label, M.pack_query(sub), via))
            if fwd_due:
                peer.last_fwd_ms = now_ms
            while fwd_due and peer.queue:
                batch, size = [], 0
                while peer.queue and size + len(peer.queue[0]) < FORWARD_BATCH_BYTES:
                    raw = peer.queue.pop(0)
                    batch.append(raw)
                    size += len(raw) + 8
                if not batch:                    # one announcement bigger than a batch: alone, if a datagram holds it
                    raw = peer.queue.pop(0)
                    if len(raw) > MAX_FORWARD_BYTES:
                        self.counters["forward_dropped_oversize"] += 1
                        continue
                    batch.append(raw)
                self.counters["forwarded"] += len(batch)
                out.append(Outbound(peer.public_key, label, M.pack_query(M.Query("fwd", self._txid(b"fwd"),
                                                                                 anns=tuple(batch))), via))
        return out

    def next_due(self) -> int | None:
        """The earliest time (ms, the clock of ``take_outbox``) a subscription or a forward batch is due; None:
        nothing queued or timed (the host then needs to call ``take_outbox`` only after ``handle``)."""
        times = []
        every = self._forward_every_ms()
        hears = self._hears()
        for peer in self.peers.values():
            times.append(self._sub_due_ms(peer, hears))
            if peer.interested and peer.queue:
                times.append(peer.last_fwd_ms + every)
        return min(times, default=None)

    def _sub_due_ms(self, peer: FederationPeer, hears: frozenset) -> int:
        """When our next ``sub`` to ``peer`` is due: a refresh, or a retry while it has not acknowledged one or
        while what we told it we hear (``hears``, from :meth:`_hears`) is out of date."""
        current = peer.subscribed and peer.told == hears - {peer.ip6}
        return peer.last_sub_ms + (SUBSCRIBE_REFRESH_MS if current else SUBSCRIBE_RETRY_MS)

    def _hears(self) -> frozenset:
        """The peers that acknowledged our subscription: they forward to us themselves."""
        return frozenset(p.ip6 for p in self.peers.values() if p.subscribed)

    def _forward_every_ms(self) -> int:
        """How long between two batches to one peer (FORWARD_EVERY_MS)."""
        return FORWARD_EVERY_MS * max(1, sum(p.interested for p in self.peers.values()))

    def _txid(self, prefix: bytes) -> bytes:
        self._txids += 1
        return prefix + self._txids.to_bytes(4, "big") + os.urandom(2)

    def explain(self, src_ip6: bytes, dst_ip6: bytes, holders=(), now_ms=None) -> dict | None:
        """The path the server would answer (to an asker naming ``holders``), hop by hop (for demos and
        `rs_route`), or None. A hop over a lease names it."""
        route = self.core.route(src_ip6, dst_ip6, now_ms=now_ms, holders=holders)
        if route is None:
            return None
        hops = []
        for i, ip6 in enumerate(route.nodes[:-1]):
            lease = route.leases[i] if route.leases else None
            hops.append({"node": keys.ip6_text(ip6), "hop_label": labels.label_text(route.hops[i]),
                         "next": keys.ip6_text(route.nodes[i + 1]), "lease": lease and lease.lease_id})
        return {"src": keys.ip6_text(src_ip6), "dst": keys.ip6_text(dst_ip6),
                "label": labels.label_text(route.label), "cost": route.cost, "hops": hops,
                "via": [labels.label_text(v) for v in route.via],
                "waypoints": [keys.ip6_text(w) for w in route.waypoints]}

    # -- status ------------------------------------------------------------------------------------------
    def _housekeeping(self, now_ms: int) -> None:
        if self._last_expire is None or now_ms - self._last_expire >= EXPIRE_EVERY_MS:
            self._last_expire = now_ms
            self.core.expire(now_ms)
            self._alt_given = {k: (t, hold) for k, (t, hold) in self._alt_given.items() if 0 <= now_ms - t < hold}

    def offers(self, now_ms: int) -> list[dict]:
        """The market offers the nodes announce (server.py), term not ended: who sells what, on which link."""
        return [{"node": keys.ip6_text(node.ip6), "key": keys.pubkey_text(node.public_key), "token": o.token,
                 "lease": o.lease, "link": o.link, "kbps": o.kbps, "start": o.start_s, "end": o.end_s,
                 "price": o.price, "issuer": o.seller.hex(), "announced_ms": node.timestamp_ms}
                for node, o in self.core.offers(now_ms)]

    def status(self, now_ms: int | None = None) -> dict:
        """``now_ms``: count only the offers whose term has not ended then (None: every offer held)."""
        adj = self.core.adjacency()
        rejected = {k[len("rejected_"):]: v for k, v in self.core.counters.items() if k.startswith("rejected_")}
        return {
            "ip6": keys.ip6_text(self.ip6),
            "nodes": len(adj),
            "edges": sum(len(nbrs) for nbrs in adj.values()),
            "announcements_accepted": self.core.counters.get("accepted", 0),
            "announcements_forwarded_in": self.core.counters.get("accepted_forwarded", 0),
            "rejected": rejected,
            "counters": dict(self.counters),
            "routes": {k: v for k, v in self.core.counters.items() if k.startswith("route_")},
            "graph_version": self.core.graph_version,
            "leases": sorted(({"node": keys.ip6_text(n.ip6), "lease": e.lease_id,
                               "holder": keys.pubkey_text(e.holder) if e.holder else None, "expires_s": e.expires_s}
                              for n in self.core.nodes.values() for e in n.leases.values()),
                             key=lambda d: (d["lease"], d["node"])),
            "offers": sum(1 for n in self.core.nodes.values() for o in n.offers
                          if now_ms is None or not o.expired(now_ms)),
            "offers_refused": {k[len("offer_refused_"):]: v for k, v in self.core.counters.items()
                               if k.startswith("offer_refused_")},
            "federation": {keys.ip6_text(p.ip6): {"same_isp": p.same_isp, "interested": p.interested,
                                                  "subscribed": p.subscribed, "queued": len(p.queue),
                                                  "hears": len(p.hears)}
                           for p in self.peers.values()},
            "window_ms": AGREED_TIMEOUT_MS,
        }
