"""RouteServerService (messages in, replies out) and RouteServerClient logic, driven directly (no network)."""
import pytest

from node.route_server import announcement as A
from node.route_server import messages as M
from node.route_server.client import ClientConfig, PeerInfo, RouteServerClient
from node.route_server.server import AGREED_TIMEOUT_MS
from node.route_server.service import (ALT_KEEP_MS, ALT_REFRESH_MS, FORWARD_BATCH_BYTES, FORWARD_EVERY_MS,
                                       SUBSCRIBE_REFRESH_MS, SUBSCRIBE_RETRY_MS, RouteServerService)
from node.route_server.state_hash import state_hash
from node.cjdns import control
from node.cjdns.keys import Identity
from node.cjdns.labels import V358, convert_label, one_hop_label, splice

T0 = 1_700_000_000_000
RS = Identity.from_seed(b"svc", 0)
RS2 = Identity.from_seed(b"svc", 1)
FOREIGN = Identity.from_seed(b"svc", 2)
NODES = [Identity.from_seed(b"svc-node", i) for i in range(3)]


def ann(ident, peers, ts, snode=RS, reset=True, extra=()):
    ents = [A.VersionEntity(22), A.EncodingSchemeEntity(V358)]
    for peer, ours, theirs in peers:
        ents.append(A.PeerEntity(peer.ip6, one_hop_label(theirs), peer_num=one_hop_label(ours)))
    return A.Announcement.build(ident, snode.ip6, ts, tuple(ents) + tuple(extra), reset=reset).raw


def query(svc, q, src, now=T0, path=None):
    return M.parse_reply(svc.handle(M.pack_query(q), src.public_key, now, path=path))


def line(svc, now=T0):
    """RS - N0 - N1 - N2 - RS2 chain, all announcing to svc (RS2 announces too)."""
    chain = [RS, NODES[0], NODES[1], NODES[2], RS2]
    for i, ident in enumerate(chain):
        peers = []
        if i > 0:
            peers.append((chain[i - 1], 2, 0))
        if i + 1 < len(chain):
            peers.append((chain[i + 1], 0, 2))
        r = query(svc, M.Query("ann", b"a%d" % i, ann=ann(ident, peers, now)), ident, now)
        assert r.error is None, r.error
    return chain


def test_ann_reply_carries_state_hash_and_alternatives():
    svc = RouteServerService(RS.public_key, federation=[FOREIGN.public_key], same_isp=[RS2.public_key])
    line(svc)                                        # N0 announced before RS2: no alternative then
    now = T0 + ALT_REFRESH_MS                        # looked for again only this much later
    raw = ann(NODES[0], [(RS, 2, 0), (NODES[1], 0, 2)], now, reset=False)
    r = query(svc, M.Query("ann", b"x", ann=raw), NODES[0], now)
    assert r.error is None and r.recv_time == now
    assert r.state_hash == state_hash([a.raw for a in svc.core.nodes[NODES[0].ip6].announcements])
    assert len(svc.core.nodes[NODES[0].ip6].announcements) == 2
    [alt] = r.alternatives
    assert alt.public_key == RS2.public_key and alt.label == svc.core.route(NODES[0].ip6, RS2.ip6).label
    pn = query(svc, M.Query("pn", b"p"), NODES[0], now)
    assert pn.state_hash == r.state_hash
    assert pn.alternatives == ()                     # the node got them lately: no searches for them again
    assert query(svc, M.Query("pn", b"p"), NODES[0], now + ALT_REFRESH_MS).alternatives == ()   # found: held longer
    later = now + ALT_KEEP_MS
    assert query(svc, M.Query("pn", b"p"), NODES[0], later).alternatives == (alt,)
    assert query(svc, M.Query("pn", b"p"), FOREIGN, T0).state_hash == bytes(64)


def test_path_query_answer_and_not_found():
    svc = RouteServerService(RS.public_key)
    line(svc)
    r = query(svc, M.Query("gr", b"g", src=NODES[0].ip6, tar=RS2.ip6), NODES[0])
    [addr] = r.nodes
    assert addr.public_key == RS2.public_key
    assert addr.label == svc.core.route(NODES[0].ip6, RS2.ip6).label
    r = query(svc, M.Query("gr", b"g", src=NODES[0].ip6, tar=FOREIGN.ip6), NODES[0])
    assert r.error == "not_found" and not r.nodes
    assert svc.counters["path_not_found"] == 1


def test_garbage_gets_counted_and_answered_when_possible():
    svc = RouteServerService(RS.public_key)
    assert svc.handle(b"\xff garbage", NODES[0].public_key, T0) is None
    r = M.parse_reply(svc.handle(b"d2:sq3:xyz4:txid2:abe", NODES[0].public_key, T0))
    assert r.txid == b"ab" and r.error.startswith("bad message")
    r = query(svc, M.Query("ann", b"z", ann=b"short"), NODES[0])
    assert r.error == "malformed"
    assert svc.counters["bad_message"] == 2 and svc.core.counters["rejected_malformed"] == 1


def test_federation_subscribe_catch_up_forward_and_checks():
    a = RouteServerService(RS.public_key, federation=[FOREIGN.public_key])
    b = RouteServerService(FOREIGN.public_key, federation=[RS.public_key])
    line(a)
    # b does not know a path to a yet; a hears of b through a node's frs report
    assert a.take_outbox(T0) == []
    hint = M.Address(FOREIGN.public_key, 0x15)
    query(a, M.Query("pn", b"p", foreign=(hint,)), NODES[0])
    [(key, label, payload, _)] = a.take_outbox(T0)
    assert key == FOREIGN.public_key and label > 1
    assert M.parse_query(payload).sq == "sub"
    # b answers the subscription and records the return path; a learns it was accepted
    reply = b.handle(payload, RS.public_key, T0, path=(0x1234, ()))
    a.handle(reply, FOREIGN.public_key, T0)
    assert a.peers[FOREIGN.ip6].subscribed and b.peers[RS.ip6].heard_label == 0x1234
    # b subscribes to a (over the return path): a sends the catch-up, b accepts all five announcements
    [(k, label, sub, _)] = b.take_outbox(T0)
    assert label == 0x1234 and M.parse_query(sub).sq == "sub"
    a.handle(sub, FOREIGN.public_key, T0)
    fwd = [o.payload for o in a.take_outbox(T0) if M.parse_query(o.payload).sq == "fwd"]
    assert fwd
    total = sum(M.parse_reply(b.handle(p, RS.public_key, T0 + 500)).accepted for p in fwd)
    assert total == 5
    assert b.core.route(NODES[0].ip6, RS2.ip6) is not None
    # a node's next announcement to a is forwarded at once
    query(a, M.Query("ann", b"n", ann=ann(NODES[1], [(NODES[0], 2, 0), (NODES[2], 0, 2)], T0 + 900,
                                          reset=False)), NODES[1], T0 + 900)
    [(_, _, p, _)] = [o for o in a.take_outbox(T0 + 900)]
    assert M.parse_reply(b.handle(p, RS.public_key, T0 + 1000)).accepted == 1
    # only peers may forward, and only announcements addressed to themselves, at most 20 minutes old
    other = RouteServerService(RS2.public_key)
    r = M.parse_reply(other.handle(p, RS.public_key, T0))
    assert r.error == "not_federated" and other.counters["rejected_not_federated"] == 1
    wrong = ann(NODES[2], [], T0, snode=RS2)
    bad = M.pack_query(M.Query("fwd", b"f", anns=(wrong,)))
    assert M.parse_reply(b.handle(bad, RS.public_key, T0)).accepted == 0
    assert b.core.counters["rejected_wrong_snode"] == 1
    stale = M.pack_query(M.Query("fwd", b"f", anns=(ann(NODES[2], [], T0 + 2000),)))
    assert M.parse_reply(b.handle(stale, RS.public_key, T0 + 2000 + AGREED_TIMEOUT_MS + 1)).accepted == 0
    assert b.core.counters["rejected_stale"] == 1


def test_a_hubs_announcement_bigger_than_a_batch_is_forwarded_alone():
    """A node of 600 peers announces 19 KB (Freifunk Altdorf's hub: 33 KB): forwarded in a message of its own, so
    the other server learns the hub's links too (it was dropped as oversize)."""
    a = RouteServerService(RS.public_key, federation=[FOREIGN.public_key])
    b = RouteServerService(FOREIGN.public_key, federation=[RS.public_key])
    line(a)
    leaves = [Identity.from_seed(b"svc-leaf", i) for i in range(600)]
    ents = [A.VersionEntity(22), A.EncodingSchemeEntity(V358)] + [
        A.PeerEntity(leaf.ip6, 0x13, peer_num=i + 2) for i, leaf in enumerate(leaves)]
    big = A.Announcement.build(NODES[1], RS.ip6, T0, tuple(ents), reset=True).raw
    assert len(big) > FORWARD_BATCH_BYTES
    assert query(a, M.Query("ann", b"h", ann=big), NODES[1]).error is None
    a.handle(M.pack_query(M.Query("sub", b"s", catch_up=True)), FOREIGN.public_key, T0, path=(0x15, ()))
    fwd = [o.payload for o in a.take_outbox(T0) if M.parse_query(o.payload).sq == "fwd"]
    assert any(big in M.parse_query(p).anns for p in fwd)
    for p in fwd:
        b.handle(p, RS.public_key, T0 + 500)
    assert b.core.nodes[NODES[1].ip6].announcements[-1].raw == big
    assert "forward_dropped_oversize" not in a.counters


def test_a_server_sends_about_one_batch_per_forward_interval_whatever_its_number_of_peers():
    """Three subscribed peers get a batch each every 3 x FORWARD_EVERY_MS, each batch holding what came meanwhile;
    with one peer, every FORWARD_EVERY_MS."""
    peers = [Identity.from_seed(b"svc-peer", i) for i in range(3)]
    for subscribed in (peers, peers[:1]):
        a = RouteServerService(RS.public_key, same_isp=[p.public_key for p in peers])
        for p in subscribed:
            a.handle(M.pack_query(M.Query("sub", b"s", catch_up=False)), p.public_key, T0, path=(0x15, ()))
        batches = []
        for i in range(60):                           # an announcement every 100 ms for 6 s
            now = T0 + 100 * i
            assert query(a, M.Query("ann", b"a%d" % i, ann=ann(NODES[i % 3], [], now)), NODES[i % 3], now).error \
                is None
            batches += [(now, o.public_key) for o in a.take_outbox(now) if M.parse_query(o.payload).sq == "fwd"]
        every = FORWARD_EVERY_MS * len(subscribed)
        for p in subscribed:
            times = [t for t, key in batches if key == p.public_key]
            assert all(y - x >= every for x, y in zip(times, times[1:])) and len(times) >= 6000 // every, times
        assert len(batches) <= 6000 // FORWARD_EVERY_MS + len(subscribed)


def federate(servers, now, rounds=4) -> list:
    """``rounds`` times, every server's federation outbox delivered to its peers and their replies back; the
    queries sent."""
    by_key = {s.public_key: s for s in servers}
    sent = []
    for _ in range(rounds):
        for src in servers:
            for key, _, payload, _ in src.take_outbox(now):
                sent.append(M.parse_query(payload))
                reply = by_key[key].handle(payload, src.public_key, now, path=(0x17, ()))
                if reply is not None:
                    src.handle(reply, key, now)
    return sent


def test_servers_pass_on_what_other_servers_forwarded():
    """isp1 has servers a (RS) and a2 (RS2), isp2 has f (FOREIGN); a2 and f have no path to each other (each
    learns the other's links only by federation), both reach a: a passes on what each sent it."""
    a = RouteServerService(RS.public_key, federation=[FOREIGN.public_key], same_isp=[RS2.public_key])
    a2 = RouteServerService(RS2.public_key, federation=[FOREIGN.public_key], same_isp=[RS.public_key])
    f = RouteServerService(FOREIGN.public_key, federation=[RS.public_key, RS2.public_key])
    for x, y in ((a, a2), (a2, a), (a, f), (f, a)):
        x.peers[y.ip6].heard_label = 0x15
    query(a2, M.Query("ann", b"0", ann=ann(NODES[0], [], T0, snode=RS2)), NODES[0])
    query(f, M.Query("ann", b"1", ann=ann(NODES[1], [], T0, snode=FOREIGN)), NODES[1])
    federate((a, a2, f), T0)
    assert NODES[1].ip6 in a2.core.nodes and NODES[0].ip6 in f.core.nodes
    assert a.core.counters["accepted_forwarded"] == 2
    # a later announcement travels the same way; nothing is forwarded back to where it came from
    query(f, M.Query("ann", b"2", ann=ann(NODES[1], [], T0 + 2000, snode=FOREIGN, reset=False)), NODES[1], T0 + 2000)
    federate((a, a2, f), T0 + 2000)
    assert len(a2.core.nodes[NODES[1].ip6].announcements) == 2
    assert f.core.counters.get("forwarded_duplicate", 0) == 0
    assert not any(k.startswith("rejected_") for s in (a, a2, f) for k in s.core.counters)


def test_servers_that_all_reach_each_other_get_each_announcement_once():
    """Three servers with paths to each other: once every subscription names the servers that forward to the
    subscriber themselves, an announcement to a reaches b and c once each (before, each server also passed on what
    the other sent: every announcement crossed the mesh (S - 1)^2 times, and each server dropped S - 2 duplicates)."""
    servers = [RS, RS2, FOREIGN]
    svcs = [RouteServerService(me.public_key, same_isp=[o.public_key for o in servers if o is not me])
            for me in servers]
    for x in svcs:
        for peer in x.peers.values():
            peer.heard_label = 0x15
    federate(svcs, T0)                                # subscribe; the acknowledgements change what each hears ...
    federate(svcs, T0 + SUBSCRIBE_RETRY_MS)           # ... so each subscribes again, naming the other two
    for s in svcs:
        assert all(p.hears == {o.ip6 for o in servers} - {s.ip6, ip6} for ip6, p in s.peers.items())
        assert s.next_due() == T0 + SUBSCRIBE_RETRY_MS + SUBSCRIBE_REFRESH_MS     # nothing more to tell
    for i in range(3):
        now = T0 + SUBSCRIBE_RETRY_MS + 1000 * (i + 1)
        query(svcs[0], M.Query("ann", b"a%d" % i, ann=ann(NODES[i], [], now)), NODES[i], now)
    sent = federate(svcs, now + 10 * FORWARD_EVERY_MS)
    assert sum(len(q.anns) for q in sent if q.sq == "fwd") == 2 * 3          # a to b and to c, nothing passed on
    for s in svcs[1:]:
        assert all(ip6 in s.core.nodes for ip6 in (NODES[0].ip6, NODES[1].ip6, NODES[2].ip6))
        assert "forwarded_duplicate" not in s.core.counters


def test_link_quality_weights_paths_and_leases_are_kept():
    # square RS-N0-N2 / RS-N1-N2: quality makes the N1 side cheaper
    svc = RouteServerService(RS.public_key)
    good = A.LinkQualityEntity(one_hop_label(3), rtt_us=1000, capacity_kbps=100_000)
    lease = A.LeaseEntity("L9", one_hop_label(3), guarantee_bps=500_000, expires_s=(T0 // 1000) + 60, price=3)
    anns = [
        (RS, [(NODES[0], 0, 2), (NODES[1], 3, 4)], (good,)),
        (NODES[0], [(RS, 2, 0), (NODES[2], 0, 2)], ()),
        (NODES[1], [(RS, 4, 3), (NODES[2], 0, 3)], (A.LinkQualityEntity(one_hop_label(0), 1000, 0, 100_000),)),
        (NODES[2], [(NODES[0], 2, 0), (NODES[1], 3, 0)], (A.LinkQualityEntity(one_hop_label(3), 1000, 0, 1),
                                                         lease)),
    ]
    for ident, peers, extra in anns:
        assert query(svc, M.Query("ann", b"a", ann=ann(ident, peers, T0, extra=extra)), ident).error is None
    route = svc.core.route(RS.ip6, NODES[2].ip6)
    assert route.nodes == (RS.ip6, NODES[1].ip6, NODES[2].ip6)
    assert svc.core.nodes[NODES[2].ip6].leases == {"L9": lease}
    svc.core.handle_announce(ann(NODES[2], [(NODES[0], 2, 0)], T0 + 61_000), T0 + 61_000)
    assert svc.core.nodes[NODES[2].ip6].leases == {}             # expired


# -- client logic alone --------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def make_client(**kw):
    clock = Clock()
    cfg = ClientConfig(announce_interval_ms=1000, hunt_interval_ms=500, query_timeout_ms=1000, **kw)
    c = RouteServerClient(NODES[0], clock, cfg)
    c.set_peers([PeerInfo(NODES[1].ip6, one_hop_label(0), one_hop_label(2), NODES[1].public_key, rtt_us=800)])
    return c, clock


def test_client_discovers_through_getsnode_and_announces():
    c, clock = make_client()
    out = c.poll()
    assert [o.kind for o in out] == ["control"] and isinstance(out[0].payload, control.GetSnode)
    assert c.answer_getsnode(control.GetSnode(22)) is None           # nothing to tell peers yet
    c.on_getsnode_reply(control.GetSnode(22, snode_key=RS.public_key, path_to_snode=0x15, reply=True),
                        one_hop_label(0))
    out = c.poll()
    [o] = [o for o in out if o.kind == "snode"]
    assert o.public_key == RS.public_key and o.label == 0x153          # splice(0x15, 0x13)
    q = M.parse_query(o.payload)
    sent = A.Announcement.parse(q.ann)
    assert sent.reset and sent.snode_ip == RS.ip6 and sent.peers[0].label == one_hop_label(2)
    assert sent.link_qualities[0].rtt_us == 800
    svc = RouteServerService(RS.public_key)
    assert c.on_reply(svc.handle(o.payload, NODES[0].public_key, clock.now))
    assert c.counters["ann_accepted"] == 1 and not c.needs_reset
    reply = c.answer_getsnode(control.GetSnode(22))
    assert reply.snode_key == RS.public_key and reply.path_to_snode == 0x153


def test_announcements_come_at_most_an_interval_apart_and_nodes_started_together_drift_apart():
    """Each wait is drawn from the interval's second half, seeded by the node's key: two nodes that start at the
    same moment (a mesh coming up, a failover of all of a server's clients) do not keep announcing together."""
    svc = RouteServerService(RS.public_key)
    times = {}
    for ident in (NODES[0], NODES[2]):
        clock = Clock()
        c = RouteServerClient(ident, clock, ClientConfig(announce_interval_ms=10_000),
                              route_servers=[(RS.public_key, 0x13)])
        sent = times[ident.public_key] = []
        while clock.now < T0 + 300_000:
            for o in c.poll():
                if o.kind == "snode":                   # every query answered at once
                    if M.parse_query(o.payload).sq == "ann":
                        sent.append(clock.now - T0)
                    assert c.on_reply(svc.handle(o.payload, ident.public_key, clock.now))
            clock.now += 100
    a, b = times.values()
    for sent in (a, b):
        gaps = [y - x for x, y in zip(sent, sent[1:])]
        assert all(5000 <= g <= 10_000 for g in gaps) and len(set(gaps)) > 5, gaps
    assert a[0] == b[0] == 0 and abs(a[-1] - b[-1]) > 1000 and len(set(a) & set(b)) <= 2


def test_a_getsnode_answer_widens_its_first_director_to_the_askers_interface():
    """The asker splices our label onto its label to us; when its packet comes in on one of our wide
    interfaces (here 11, a 7-bit director), a 4-bit first director would be refused by our switch
    (MALFORMED_ADDRESS): it is re-encoded as cjdns does (pkt-reference.md 2.4 convertLabel)."""
    c, clock = make_client()
    c.on_getsnode_reply(control.GetSnode(22, snode_key=RS.public_key, path_to_snode=0x15, reply=True),
                        one_hop_label(0))
    c.poll()
    wide, narrow = one_hop_label(11), one_hop_label(2)
    assert c.answer_getsnode(control.GetSnode(22), narrow).path_to_snode == 0x153
    widened = c.answer_getsnode(control.GetSnode(22), wide).path_to_snode
    assert widened == convert_label(V358, 0x153, V358.get_form_num(wide))
    assert V358.form_of(widened).size == V358.form_of(wide).size == 7
    assert V358.decompress(widened, 7) == V358.decompress(0x153, 4) == 0           # the same interface
    assert widened >> 7 == 0x153 >> 4                                             # the same rest of the path
    c.candidates[RS.public_key].label = (1 << 57) | 0x13                          # no room to widen: no answer
    assert c.answer_getsnode(control.GetSnode(22), wide) is None
    assert c.counters["getsnode_not_expressible"] == 1


def test_client_state_hash_mismatch_forces_reset():
    c, clock = make_client()
    c._add_candidate(RS.public_key, 0x13, "static")
    svc = RouteServerService(RS.public_key)
    [o] = [o for o in c.poll() if o.kind == "snode"]
    c.on_reply(svc.handle(o.payload, NODES[0].public_key, clock.now))
    clock.now += 1000
    [o, backup] = [o for o in c.poll() if o.kind == "snode"]          # the announcement, the backup query
    assert not A.Announcement.parse(M.parse_query(o.payload).ann).reset
    assert M.parse_query(backup.payload).tar == RS.ip6
    c.on_reply(svc.handle(backup.payload, NODES[0].public_key, clock.now))
    svc.core.nodes.clear()                                            # the server lost our state
    c.on_reply(svc.handle(o.payload, NODES[0].public_key, clock.now))
    assert c.counters["state_hash_mismatch"] == 1
    clock.now += 1000
    [o] = [o for o in c.poll() if o.kind == "snode" and M.parse_query(o.payload).sq == "ann"]
    assert A.Announcement.parse(M.parse_query(o.payload).ann).reset


def test_client_cache_ttl_failure_and_failover_on_silence():
    c, clock = make_client(cache_ttl_ms=5000)
    c._add_candidate(RS.public_key, 0x13, "static")
    c._add_candidate(RS2.public_key, 0x153, "static")
    assert c.lookup(NODES[2].ip6) is None
    out = [o for o in c.poll() if o.kind == "snode"]
    assert {M.parse_query(o.payload).sq for o in out} == {"ann", "gr"} and all(o.public_key == RS.public_key
                                                                               for o in out)
    queries = {M.parse_query(o.payload).sq: M.parse_query(o.payload) for o in out}
    c.on_reply(M.pack_reply(M.Reply(queries["ann"].txid)), RS.public_key)
    c.on_reply(M.pack_reply(M.Reply(queries["gr"].txid, nodes=(M.Address(NODES[2].public_key, 0x1555),))),
               RS.public_key)
    assert c.lookup(NODES[2].ip6) == (NODES[2].public_key, 0x1555, ())
    assert not c.pending
    clock.now += 6000                                                 # expired: served while refreshed
    assert c.lookup(NODES[2].ip6) == (NODES[2].public_key, 0x1555, ())
    assert NODES[2].ip6 in c.wanted
    c.report_failure(NODES[2].ip6, 0x1555)
    assert c.lookup(NODES[2].ip6) is None
    # the server stays silent: after the timeout the second server takes over the queued look-up
    c.poll()
    clock.now += 1500
    out = c.poll()
    assert c.server == RS2.public_key and c.counters["failovers"] == 1
    assert {o.public_key for o in out if o.kind == "snode"} == {RS2.public_key}
    gr = next(M.parse_query(o.payload) for o in out if o.kind == "snode" and M.parse_query(o.payload).sq == "gr")
    # the same failed label again is not accepted; a new one is
    c.on_reply(M.pack_reply(M.Reply(gr.txid, nodes=(M.Address(NODES[2].public_key, 0x1555),))), RS2.public_key)
    assert c.lookup(NODES[2].ip6) is None and c.counters["path_still_failed"] == 1
    # a reply from the wrong server or for another txid is ignored
    assert not c.on_reply(M.pack_reply(M.Reply(b"nope")), RS2.public_key)


def test_client_with_one_failed_server_tries_it_again_soon_and_keeps_it_for_data_path_failures():
    c, clock = make_client()
    c._add_candidate(RS.public_key, 0x13, "static")
    assert c.poll() and c.server == RS.public_key
    c.report_failure(RS.ip6, 0x1555)                    # a data path to the server's node: not our way to it
    assert c.server == RS.public_key and c.counters["server_failed_switch_error"] == 0
    c.report_failure(RS.ip6, 0x13)                      # our way to it broke
    assert c.server is None and c.counters["server_failed_switch_error"] == 1
    assert not [o for o in c.poll() if o.kind == "snode"]          # held ...
    clock.now += c.config.lone_retry_ms
    assert [o for o in c.poll() if o.kind == "snode"] and c.server == RS.public_key   # ... alone: again soon


def test_client_reaches_a_direct_peer_over_its_own_link_until_that_link_fails():
    """As cjdns's subnode pathfinder: a peer's one-hop path, without asking the server (which may weigh a longer
    way lower); once a switch error or silence reports that label failed, the server is asked instead."""
    c, clock = make_client()
    assert c.lookup(NODES[1].ip6) == (NODES[1].public_key, one_hop_label(0), ())
    assert c.counters["peer_path"] == 1 and c.counters["cache_miss"] == 0 and not c.wanted
    c.report_failure(NODES[1].ip6, one_hop_label(0))
    assert c.lookup(NODES[1].ip6) is None and NODES[1].ip6 in c.wanted
    clock.now += c.config.failed_label_hold_ms
    assert c.lookup(NODES[1].ip6) == (NODES[1].public_key, one_hop_label(0), ())
    c.set_peers([])                                     # the link went down
    assert c.lookup(NODES[1].ip6) is None


def test_client_moves_to_its_backup_path_to_the_server_when_the_first_breaks():
    """A square RS-N1-N0 / RS-N2-N0: N0 reaches RS by N1 (its label) and learns the backup by N2 from RS itself."""
    svc = RouteServerService(RS.public_key)
    square = {RS: [(NODES[1], 2, 0), (NODES[2], 3, 0)], NODES[1]: [(RS, 0, 2), (NODES[0], 2, 0)],
              NODES[2]: [(RS, 0, 3), (NODES[0], 2, 3)], NODES[0]: [(NODES[1], 0, 2), (NODES[2], 3, 2)]}
    for ident, peers in square.items():
        assert query(svc, M.Query("ann", b"a", ann=ann(ident, peers, T0)), ident).error is None
    c, clock = make_client()
    c.set_peers([PeerInfo(NODES[1].ip6, one_hop_label(0), one_hop_label(2), NODES[1].public_key),
                 PeerInfo(NODES[2].ip6, one_hop_label(3), one_hop_label(2), NODES[2].public_key)])
    clock.now = T0
    first = svc.core.route(NODES[0].ip6, RS.ip6).label
    c._add_candidate(RS.public_key, first, "static")

    def exchange():
        out = [o for o in c.poll() if o.kind == "snode"]
        for o in out:
            c.on_reply(svc.handle(o.payload, NODES[0].public_key, clock.now), RS.public_key)
        return out
    exchange()                                          # announced
    clock.now += 1000
    exchange()                                          # the backup asked and answered
    backup = c.candidates[RS.public_key].backup
    assert backup not in (None, first) and c.counters["backup_learned"] == 1
    assert set(svc.core.path_of_label(NODES[0].ip6, backup)) & set(svc.core.path_of_label(NODES[0].ip6, first)) \
        == {NODES[0].ip6, RS.ip6}                       # no node (so no link) in common
    # a look-up on its way when a switch error says the way to the server broke: resent at once on the backup
    # (of a node that is not a peer: a peer is reached over its own link, without a query)
    assert c.lookup(NODES[2].ip6) == (NODES[2].public_key, one_hop_label(3), ())
    c.lookup(RS2.ip6)
    [gr] = [o for o in c.poll() if o.kind == "snode"]
    c.report_failure(RS.ip6, first)
    assert c.server == RS.public_key and c.candidates[RS.public_key].label == backup
    assert c.counters["server_backup_used"] == 1 and c.counters["server_failed_switch_error"] == 0
    out = [o for o in c.poll() if o.kind == "snode"]
    [again] = [o for o in out if M.parse_query(o.payload).tar == RS2.ip6]
    assert {o.label for o in out} == {backup}          # and a new backup is asked for, on the new way
    # a peer still offering the broken label does not bring it back
    c._add_candidate(RS.public_key, first, "peer")
    assert c.candidates[RS.public_key].label == backup


def test_client_asks_for_a_backup_less_often_while_there_is_none():
    """A line RS - N0 - N1 ...: no second way to the server. The backup query is asked again after 1, 2, 4, 8 s
    (doubling from the announce interval), and the server answers the repeats from its path cache."""
    svc = RouteServerService(RS.public_key)
    line(svc)
    c, clock = make_client()
    c._add_candidate(RS.public_key, svc.core.route(NODES[0].ip6, RS.ip6).label, "static")
    asked = []
    while clock.now < T0 + 20_000:
        for o in c.poll():
            if o.kind == "snode":
                q = M.parse_query(o.payload)
                if q.sq == "gr" and q.tar == RS.ip6:
                    asked.append(clock.now - T0)
                c.on_reply(svc.handle(o.payload, NODES[0].public_key, clock.now), RS.public_key)
        clock.now += 100
    assert [b - a for a, b in zip(asked, asked[1:])] == [2000, 4000, 8000]
    assert c.counters["backup_none"] == 4 and c.candidates[RS.public_key].backup is None
    assert svc.core.counters["route_cache_hit"] >= 3


def test_server_avoids_the_newest_failed_path_when_it_cannot_avoid_them_all():
    svc = RouteServerService(RS.public_key)
    square = {RS: [(NODES[1], 2, 0), (NODES[2], 3, 0)], NODES[1]: [(RS, 0, 2), (NODES[0], 2, 0)],
              NODES[2]: [(RS, 0, 3), (NODES[0], 2, 3)], NODES[0]: [(NODES[1], 0, 2), (NODES[2], 3, 2)]}
    for ident, peers in square.items():
        query(svc, M.Query("ann", b"a", ann=ann(ident, peers, T0)), ident)
    core = svc.core
    a = core.route(NODES[0].ip6, RS.ip6)
    b = core.route(NODES[0].ip6, RS.ip6, (a.label,))
    assert b.label != a.label
    # both failed, the newest first: no path avoids both, so the one avoiding the newest (b) is answered
    assert core.route(NODES[0].ip6, RS.ip6, (b.label, a.label)).label == a.label
    assert core.route(NODES[0].ip6, RS.ip6, (a.label, b.label)).label == b.label


def test_server_routes_around_the_dead_link_even_where_the_failed_path_has_a_bridge():
    """Square RS-N1-N0 / RS-N2-N0 and a tail RS-RS2 (a bridge). N0's path to RS2 by N1 (or N2) failed because that
    first link died:
    avoiding the whole failed path is impossible (the bridge), avoiding the dead link is not."""
    svc = RouteServerService(RS.public_key)
    graph = {RS: [(NODES[1], 2, 0), (NODES[2], 3, 0), (RS2, 4, 0)], NODES[1]: [(RS, 0, 2), (NODES[0], 2, 0)],
             NODES[2]: [(RS, 0, 3), (NODES[0], 2, 3)], NODES[0]: [(NODES[1], 0, 2), (NODES[2], 3, 2)],
             RS2: [(RS, 0, 4)]}
    for ident, peers in graph.items():
        assert query(svc, M.Query("ann", b"a", ann=ann(ident, peers, T0)), ident).error is None
    core = svc.core
    first = core.route(NODES[0].ip6, RS2.ip6)           # by N1 or N2: the two are equally cheap
    hop, other = (NODES[1], NODES[2]) if first.nodes[1] == NODES[1].ip6 else (NODES[2], NODES[1])
    assert first.nodes[1] == hop.ip6
    dead = core.route(NODES[0].ip6, hop.ip6).label                  # to the far end of the dead link N0-hop
    assert core.route(NODES[0].ip6, RS2.ip6, (first.label,)).label == first.label    # nothing better known
    r = query(svc, M.Query("gr", b"g", src=NODES[0].ip6, tar=RS2.ip6, bad=(first.label,), dead=(dead,)), NODES[0])
    [found] = r.nodes
    assert core.path_of_label(NODES[0].ip6, found.label)[1] == other.ip6


def test_incremental_graph_matches_a_full_rebuild():
    import random
    from node.route_server.server import RouteServer
    rng = random.Random(7)
    idents = [Identity.from_seed(b"inc", i) for i in range(8)]
    core = RouteServer(RS.ip6)
    core.graph()                                                     # built empty, then kept up to date
    ts = T0
    for step in range(60):
        ts += 1000
        me = rng.randrange(8)
        peers = [j for j in range(8) if j != me and rng.random() < 0.4]
        extra = tuple(A.LinkQualityEntity(one_hop_label(j if j != 1 else 9), rng.randrange(1, 5000), 0,
                                          rng.randrange(1, 10_000)) for j in peers)
        raw = ann(idents[me], [(idents[j], j if j != 1 else 9, me if me != 1 else 9) for j in peers], ts,
                  reset=rng.random() < 0.5, extra=extra)
        core.handle_announce(raw, ts)
        full = core.graph(rebuild=True)
        inc = core.graph()
        assert set(inc.nodes) == set(full.nodes)
        assert {(a, b): d for a, b, d in inc.edges(data=True)} == \
            {(a, b): d for a, b, d in full.edges(data=True)}, step
    assert core.graph().number_of_edges() > 0


def test_service_and_client_survive_arbitrary_messages():
    from hypothesis import given, settings, strategies as st
    from node.route_server import bencode

    svc = RouteServerService(RS.public_key, federation=[FOREIGN.public_key], same_isp=[RS2.public_key])
    line(svc)
    c, _ = make_client()
    c._add_candidate(RS.public_key, 0x13, "static")
    fields = st.dictionaries(st.sampled_from([b"sq", b"txid", b"p", b"ann", b"src", b"tar", b"anns", b"frs", b"n",
                                              b"alt", b"recvTime", b"stateHash", b"error", b"acc"]),
                             st.sampled_from([b"ann", b"pn", b"gr", b"sub", b"fwd", b"", bytes(16), bytes(40),
                                              bytes(64), 0, -1, 2**70]) | st.lists(st.binary(max_size=41),
                                                                                   max_size=3))

    @settings(max_examples=300, deadline=None)
    @given(fields, st.sampled_from([NODES[0], FOREIGN, RS2]))
    def run(d, src):
        raw = bencode.encode(d)
        out = svc.handle(raw, src.public_key, T0, path=(0x13, ()))
        assert out is None or isinstance(out, bytes)
        c.on_reply(raw, RS.public_key)
        c.poll()

    run()


def test_client_bounds_its_lookup_queue_and_ignores_itself():
    from node.route_server.client import MAX_WANTED
    c, _ = make_client()
    assert c.lookup(NODES[0].ip6) is None and NODES[0].ip6 not in c.wanted
    for i in range(MAX_WANTED + 50):
        assert c.lookup(b"\xfc" + i.to_bytes(15, "big")) is None
    assert len(c.wanted) == MAX_WANTED and c.counters["lookup_queue_full"] == 50


def test_explain_lists_the_hops_of_the_answered_label():
    from node.cjdns.labels import label_text, splice_path
    svc = RouteServerService(RS.public_key)
    line(svc)
    e = svc.explain(RS.ip6, RS2.ip6)
    assert [h["node"] for h in e["hops"]] == [i.ip6_text for i in (RS, NODES[0], NODES[1], NODES[2])]
    assert e["hops"][-1]["next"] == RS2.ip6_text
    hop_labels = [int(h["hop_label"].replace(".", ""), 16) for h in e["hops"]]
    assert label_text(splice_path(hop_labels)) == e["label"]
    assert svc.explain(RS.ip6, FOREIGN.ip6) is None


def test_federation_recovers_when_either_side_restarts():
    a = RouteServerService(RS.public_key, federation=[FOREIGN.public_key])
    b = RouteServerService(FOREIGN.public_key, federation=[RS.public_key])
    line(a)
    a.peers[FOREIGN.ip6].heard_label = 0x15

    def exchange(src, dst, now):
        """Deliver src's outbox to dst and the replies back; returns the fwd batches delivered."""
        fwds = 0
        for key, _, payload, _ in src.take_outbox(now):
            fwds += M.parse_query(payload).sq == "fwd"
            reply = dst.handle(payload, src.public_key, now, path=(0x17, ()))
            if reply is not None:
                src.handle(reply, dst.public_key, now)
        return fwds

    exchange(a, b, T0)                                       # a subscribes to b (with catch-up)
    exchange(b, a, T0)                                       # b subscribes to a: a queues its five announcements
    exchange(a, b, T0)
    assert len(b.core.nodes) == 5
    # b restarts and forgets everything (a still thinks b is subscribed to it)
    b = RouteServerService(FOREIGN.public_key, federation=[RS.public_key])
    later = T0 + 61_000
    assert exchange(a, b, later) == 0                        # a renews its subscription: b learns a path to a
    assert b.peers[RS.ip6].heard_label == 0x17
    exchange(b, a, later)                                    # b's first sub asks for a catch-up ...
    assert exchange(a, b, later) >= 1                        # ... of the announcements a already held
    assert len(b.core.nodes) == 5 and b.core.counters["accepted_forwarded"] == 5


def test_a_reported_label_is_widened_for_the_interface_our_packets_reach_the_node_on():
    """RS reaches N0 on N0's interface 11 (a 7-bit director); N0 reports the foreign server behind its interface 0
    (4 bits). N0's switch refuses a 4-bit director for a packet that came in on a 7-bit interface, so the
    spliced label carries the director re-encoded to 7 bits."""
    a = RouteServerService(RS.public_key, same_isp=[FOREIGN.public_key])
    for ident, peers in ((RS, [(NODES[0], 0, 11)]), (NODES[0], [(RS, 11, 0)])):
        assert query(a, M.Query("ann", b"a", ann=ann(ident, peers, T0)), ident).error is None
    query(a, M.Query("pn", b"p", foreign=(M.Address(FOREIGN.public_key, 0x13),)), NODES[0])
    wide = convert_label(V358, 0x13, V358.get_form_num(one_hop_label(11)))
    assert a.peers[FOREIGN.ip6].heard_label == splice(wide, a.core.route(RS.ip6, NODES[0].ip6).label)


def test_a_report_too_long_to_splice_makes_the_reporting_node_a_waypoint():
    """Servers far apart in a big mesh: the node's label to the other server and ours to the node do not fit one
    label together, so the subscription goes with the node as a waypoint (waypoints.py)."""
    a = RouteServerService(RS.public_key, same_isp=[FOREIGN.public_key])
    line(a)
    far = (1 << 57) | 0x15                                      # 58 bits: nothing fits in front of it
    query(a, M.Query("pn", b"p", foreign=(M.Address(FOREIGN.public_key, far),)), NODES[0])
    to_node = a.core.route(RS.ip6, NODES[0].ip6)
    [(key, label, payload, via)] = a.take_outbox(T0)
    assert key == FOREIGN.public_key and M.parse_query(payload).sq == "sub"
    assert (label, via) == (to_node.label, to_node.via + (far,))


# -- leases --------------------------------------------------------------------------------------------------

HOLDER = bytes([0x42]) * 32


def lease_end(lease_id, link, own, holder=HOLDER, expires_s=A.NEVER):
    return A.LeaseEntity(lease_id, one_hop_label(link), one_hop_label(own), 1_000_000, expires_s, holder=holder)


def leased_line(svc, n0_end, n1_end, now=T0):
    """RS - N0 - N1 with a lease on N0-N1 (N0's interface 0 / N1's 2); each end's LEASE entity as given."""
    for ident, peers, extra in ((RS, [(NODES[0], 0, 2)], ()),
                                (NODES[0], [(RS, 2, 0), (NODES[1], 0, 2)], n0_end),
                                (NODES[1], [(NODES[0], 2, 0)], n1_end)):
        assert query(svc, M.Query("ann", b"a", ann=ann(ident, peers, now, extra=extra)), ident, now).error is None


def path_label(svc, src, dst, holders, now=T0):
    r = query(svc, M.Query("gr", b"g", src=src.ip6, tar=dst.ip6, holders=holders), src, now)
    return r.nodes[0].label


def test_a_gr_query_naming_the_holder_gets_the_label_through_the_lease():
    svc = RouteServerService(RS.public_key)
    leased_line(svc, (lease_end("L", 0, 200),), (lease_end("L", 2, 201),))
    free = one_hop_label(0)
    assert path_label(svc, NODES[0], NODES[1], ()) == free
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,)) == one_hop_label(200)
    assert svc.core.path_of_label(NODES[0].ip6, one_hop_label(200)) == [NODES[0].ip6, NODES[1].ip6]
    assert svc.counters["path_over_leases"] == 1
    hops = svc.explain(NODES[0].ip6, NODES[1].ip6, holders=(HOLDER,), now_ms=T0)["hops"]
    assert [h["lease"] for h in hops] == ["L"]
    # from the far end, through its own interface of the lease
    assert path_label(svc, NODES[1], NODES[0], (HOLDER,)) == one_hop_label(201)


def test_leases_announced_or_expiring_after_a_query_count_at_the_next_one():
    """The server keeps an index of lease holders between queries: a new announcement and the lease's end must
    show at once."""
    svc = RouteServerService(RS.public_key)
    leased_line(svc, (), ())
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,)) == one_hop_label(0)          # no lease yet
    ends = T0 // 1000 + 60
    leased_line(svc, (lease_end("L", 0, 200, expires_s=ends),), (lease_end("L", 2, 201, expires_s=ends),),
                now=T0 + 1000)
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,), now=T0 + 2000) == one_hop_label(200)
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,), now=ends * 1000) == one_hop_label(0)   # it ended


@pytest.mark.parametrize("n0_end, n1_end", [
    ((lease_end("L", 0, 200),), ()),                                          # one end only
    ((lease_end("L", 0, 200),), (lease_end("L", 2, 201, holder=bytes(range(32))),)),   # two holders
    ((lease_end("L", 0, 200),), (lease_end("M", 2, 201),)),                   # two ids
    ((lease_end("L", 0, 200),), (lease_end("L", 3, 201),)),                   # another link at the far end
    ((lease_end("L", 0, 200),), (A.LeaseEntity("L", one_hop_label(2), holder=HOLDER),)),   # no interface: an offer
    ((lease_end("L", 0, 200),), (lease_end("L", 2, 201, expires_s=T0 // 1000 - 1),)),     # expired
])
def test_a_lease_both_ends_do_not_announce_alike_is_not_used(n0_end, n1_end):
    svc = RouteServerService(RS.public_key)
    leased_line(svc, n0_end, n1_end)
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,)) == one_hop_label(0)


def test_a_lease_announced_no_more_is_not_used_and_forgotten_nodes_leave_the_lease_index():
    svc = RouteServerService(RS.public_key)
    leased_line(svc, (lease_end("L", 0, 200),), (lease_end("L", 2, 201),))
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,)) == one_hop_label(200)
    leased_line(svc, (), (), now=T0 + 1000)                    # both ends re-announce without it
    assert path_label(svc, NODES[0], NODES[1], (HOLDER,), now=T0 + 1000) == one_hop_label(0)
    leased_line(svc, (lease_end("L", 0, 200),), (lease_end("L", 2, 201),), now=T0 + 2000)
    later = T0 + 2000 + 21 * 60_000
    svc.core.expire(later)                                     # 20 minutes of silence: every node forgotten
    assert svc.core.nodes == {}
    for ident, peers in ((RS, [(NODES[0], 0, 2)]), (NODES[0], [(RS, 2, 0)])):     # two of them back, no lease
        assert query(svc, M.Query("ann", b"a", ann=ann(ident, peers, later)), ident, later).error is None
    assert path_label(svc, NODES[0], RS, (HOLDER,), now=later) == one_hop_label(2)
