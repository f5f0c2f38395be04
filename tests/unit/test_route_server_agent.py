"""Route servers inside real data-plane Nodes (no root): route server messages travel in CryptoAuth sessions
(content type 256) over in-memory links, GETSNODE/RPATH as switch control messages; the nodes' path provider is
the route-server client, and IPv6 packets between all nodes get through on the labels it learns."""
import struct

import pytest

from node.agent.config import parse_config
from node.tun_switch.node import Node
from node.tun_switch.memory_links import ManualLoop, MemoryLink, MemoryWire, TimerLoop
from node.tun_switch.route_server_plane import CJDHT, IDLE_TICK_S, RouteServerGlue, parse_settings
from node.cjdns import keys, labels

T0 = 1_700_000_000_000


def build(names, links, servers, loop=None):
    """Nodes with route-server glue joined by in-memory links; ``links``: (a, a's switch index, b, b's)."""
    wire, loop = MemoryWire(), loop or ManualLoop()
    idents = {name: keys.Identity.from_seed(b"rs-agent", i) for i, name in enumerate(names)}
    server_keys = [idents[s].pubkey_text for s in servers]
    nodes, glues = {}, {}
    for name in names:
        cfg = parse_config({"node": name, "private_key": idents[name].private_key.hex(), "control_socket": "/tmp/x",
                            "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})
        node = Node(cfg, loop, clock=loop.clock, wall_clock=lambda: T0 / 1000 + loop.now)
        node.delivered = []
        node.deliver = node.delivered.append
        nodes[name] = node
        settings = parse_settings({"serve": name in servers, "allowed": server_keys,
                                   "federation": [k for k in server_keys if k != idents[name].pubkey_text],
                                   "same_isp": [k for k in server_keys if k != idents[name].pubkey_text],
                                   "announce_interval_s": 1, "hunt_interval_s": 0.5, "query_timeout_s": 1})
        glue = RouteServerGlue(node, settings)         # on the node's wall clock
        glue.install(loop)
        glues[name] = glue
    for a, mine, b, theirs in links:
        wire.join(nodes[a], MemoryLink(wire, a, mine, f"to{b}", b, idents[b].public_key),
                  nodes[b], MemoryLink(wire, b, theirs, f"to{a}", a, idents[a].public_key))
    return wire, loop, nodes, glues


def build_grid(n=3, servers=("11",), cols=None, loop=None):
    """An n x n grid (n x cols), nodes named by row and column ("00", "01", ...); interfaces 0 east, 2 west,
    3 south, 4 north."""
    cols = n if cols is None else cols
    links = [(f"{r}{c}", mine, f"{r + dr}{c + dc}", theirs) for r in range(n) for c in range(cols)
             for (dr, dc, mine, theirs) in ((0, 1, 0, 2), (1, 0, 3, 4)) if r + dr < n and c + dc < cols]
    return build([f"{r}{c}" for r in range(n) for c in range(cols)], links, servers, loop)


def step(wire, loop, nodes, glues, seconds, dt=0.1):
    for _ in range(int(round(seconds / dt))):
        loop.now += dt
        for node in nodes.values():
            if int(loop.now * 10) % 10 == 0:
                node.housekeeping()             # link pings once a second
        wire.pump()
        for glue in glues.values():
            glue.tick()
        wire.pump()


def up(n=3, servers=("11",), seconds=6, cols=None):
    wire, loop, nodes, glues = build_grid(n, servers, cols=cols)
    for node in nodes.values():
        node.housekeeping()
    step(wire, loop, nodes, glues, seconds)
    return wire, loop, nodes, glues


def ip6_packet(src, dst, payload, next_header=17):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), next_header, 64, src.ip6, dst.ip6) + payload


def test_all_pairs_reach_each_other_on_route_server_paths():
    wire, loop, nodes, glues = up()
    server = glues["11"].service
    assert server.status()["nodes"] == 9 and server.status()["edges"] == 24
    names = sorted(nodes)
    # one packet each way between every pair, all at once: each waits for its path (the look-up) and for its
    # session (no data in handshakes; crossing Hellos from both ends), and every one arrives, once
    for a in names:
        for b in names:
            if a != b:
                nodes[a].send_ip6(ip6_packet(nodes[a].identity, nodes[b].identity, f"{a}>{b}".encode()))
    step(wire, loop, nodes, glues, 2)
    for b in names:
        got = sorted(p[40:].decode() for p in nodes[b].delivered)
        assert got == sorted(f"{a}>{b}" for a in names if a != b), b
    assert all(not n.drops.get("no_path") and not n.drops.get("held_expired") for n in nodes.values())
    # held: all but the packets between a node and the route server "11" (their sessions were up already)
    assert sum(n.held.counters["held"] for n in nodes.values()) == (len(names) - 1) * (len(names) - 2)
    for name, glue in glues.items():
        c = glue.client
        assert c.server == nodes["11"].identity.public_key, name
        assert c.counters["ann_accepted"] >= 1
        if name != "11":
            assert glue.counters["messages_in"] >= 1               # replies came back inside sessions
    assert glues["11"].counters["getsnode_answered"] >= 4
    assert all(len(g.their_labels) == len(nodes[n].links) for n, g in glues.items())


def test_bad_route_server_content_is_counted_not_fatal():
    wire, loop, nodes, glues = build_grid()
    step(wire, loop, nodes, glues, 4)
    rs = nodes["11"].identity.public_key
    label = glues["00"].client.candidates[rs].label
    nodes["00"].send_content_to(rs, label, CJDHT, b"\x00not bencode")
    step(wire, loop, nodes, glues, 0.5)
    assert glues["11"].counters["bad_messages"] >= 1
    assert glues["11"].service.counters["bad_message"] == 0        # rejected before the service
    # still serving
    before = glues["11"].service.counters["query_ann"]
    step(wire, loop, nodes, glues, 2)
    assert glues["11"].service.counters["query_ann"] > before


def test_flow_moves_to_a_new_path_when_a_link_on_it_dies_silently():
    wire, loop, nodes, glues = up(seconds=5)
    src, dst = nodes["00"], nodes["22"]
    got = []
    dst.deliver = got.append

    def send(seconds):
        for _ in range(int(seconds * 10)):
            src.send_ip6(ip6_packet(src.identity, dst.identity, b"%.1f" % loop.now))
            step(wire, loop, nodes, glues, 0.1)
    send(2)
    assert got, "no traffic before the cut"
    label = src.dests[dst.ip6].label
    # find the first link of the path and cut it both ways (packets vanish, no switch error)
    first = labels.decompress(label, labels.bits_for_label(label))
    assert first in src.links
    peer = src.links[first].peer_name
    wire.cut |= {("00", src.links[first].ifname), (peer, "to00")}
    cut_at = loop.now
    before = len(got)
    send(10)
    assert len(got) > before, "the flow never recovered"
    first_after = float(got[before][40:])
    print(f"outage after a silent link cut: {first_after - cut_at:.1f} s (simulated)")
    assert src.dests[dst.ip6].label != label
    assert first_after - cut_at < 4.0
    c = glues["00"].counters  # silence, or the other end's move to a new return path, made it re-query
    assert c["silent_paths_reported"] + c["return_path_moves"] >= 1


def test_a_two_way_flow_on_a_healthy_mesh_settles_on_one_path_without_false_failures():
    # each end re-asks when the other moves; the server gives both the same path, so nobody reports a failure
    wire, loop, nodes, glues = up(seconds=5)
    a, b = nodes["00"], nodes["22"]
    for _ in range(60):
        a.send_ip6(ip6_packet(a.identity, b.identity, b"ping"))
        b.send_ip6(ip6_packet(b.identity, a.identity, b"pong"))
        step(wire, loop, nodes, glues, 0.1)
    for x, y in ((a, b), (b, a)):
        d = x.dests[y.ip6]
        assert d.label == labels.bit_reverse64(d.learned_label), "both ends on the same path"
        assert glues[x.name].client.counters["failures_reported"] == 0
    assert glues["00"].counters["return_path_moves"] + glues["22"].counters["return_path_moves"] <= 2


def test_route_server_config_section_is_validated():
    import pytest
    from node.agent.config import ConfigError
    ident = keys.Identity.from_seed(b"rs-agent", 0)
    base = {"node": "n", "private_key": ident.private_key.hex(), "control_socket": "/tmp/x", "log_file": "/tmp/x.log",
            "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []}
    assert parse_config(base).route_server is None
    cfg = parse_config(dict(base, route_server={"serve": True, "allowed": [ident.pubkey_text], "cache_ttl_s": 5}))
    assert cfg.route_server.serve and cfg.route_server.allowed == (ident.public_key,)
    assert cfg.route_server.client_config().cache_ttl_ms == 5000
    for bad, where in (({"serve": "yes"}, "route_server.serve"), ({"allowed": ["nope"]}, "route_server.allowed[0]"),
                       ({"hunt_interval_s": 0}, "route_server.hunt_interval_s"), ({"x": 1}, "route_server.x"),
                       ([], "route_server")):
        with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            parse_config(dict(base, route_server=bad))


def test_clock_skew_is_rejected_then_the_client_follows_the_server_clock():
    wire, loop, nodes, glues = up()
    server, client = glues["11"].service, glues["00"].client
    accepted = client.counters["ann_accepted"]
    nodes["00"].clock_offset_s = 60.0                          # the clock-skew fault
    step(wire, loop, nodes, glues, 4)
    assert server.core.counters["rejected_clock_skew"] >= 1 and client.counters["ann_rejected_clock_skew"] >= 1
    assert abs(client.skew_ms + 60_000) < 1000                 # estimated from the server's recvTime
    assert client.counters["ann_accepted"] > accepted          # stamped in the server's time again
    nodes["00"].clock_offset_s = 0.0                           # healed: one more rejection, then accepted
    accepted = client.counters["ann_accepted"]
    step(wire, loop, nodes, glues, 4)
    assert abs(client.skew_ms) < 1000 and client.counters["ann_accepted"] > accepted


def test_a_path_reply_after_a_clock_jump_does_not_hide_the_jump_from_the_server():
    """Only announcement replies move the skew estimate (cjdns): a path query answered first must not correct the
    stamp, so the next announcement is the one rejected for clock skew (what the clock-skew fault checks)."""
    wire, loop, nodes, glues = up()
    client = glues["00"].client
    rejected = client.counters["ann_rejected_clock_skew"]
    client.next_announce = client.clock() + 60_000           # no announcement before the path reply
    nodes["00"].clock_offset_s = 60.0
    client.flush_cache()
    target = nodes["22"].identity.ip6
    client.lookup(target)
    for _ in range(20):
        step(wire, loop, nodes, glues, 0.1)
        if client.lookup(target) is not None:
            break
    assert client.lookup(target) is not None and abs(client.skew_ms) < 1000
    client.next_announce = client.clock()
    step(wire, loop, nodes, glues, 4)
    assert client.counters["ann_rejected_clock_skew"] > rejected and abs(client.skew_ms + 60_000) < 1000


def test_a_lost_route_server_its_nodes_fail_over_and_a_fresh_one_rebuilds_by_federation():
    wire, loop, nodes, glues = up(servers=("11", "22"))
    lost = keys.address_for_key(nodes["11"].identity.public_key)
    users = [n for n, g in glues.items() if g.client.server == nodes["11"].identity.public_key and n != "11"]
    assert users
    glues["11"].stop_service()                                 # the route-server-loss fault
    step(wire, loop, nodes, glues, 6)
    second = nodes["22"].identity.public_key
    assert all(glues[n].client.server == second for n in users + ["11"])
    assert glues["11"].counters["queries_unserved"] >= 1
    assert glues["11"].client.describe()["route_server"] != keys.ip6_text(lost)
    glues["11"].start_service()                                # healed: empty state, filled again
    step(wire, loop, nodes, glues, 8)
    st = glues["11"].service.status()
    assert glues["11"].client.server == nodes["11"].identity.public_key
    assert st["nodes"] == 9 and st["announcements_forwarded_in"] > 0


def test_route_servers_too_far_apart_for_one_label_federate_through_a_waypoint_both_ways():
    """A line of 18 nodes with a route server at each end: 17 hops do not fit a label, so each server's messages
    to the other go through a waypoint, and the answer (the subscription's reply, the forwarded batches) must go
    back over every segment the message came by, not only the last one to the waypoint."""
    wire, loop, nodes, glues = up(1, servers=("00", "017"), cols=18, seconds=20)
    a, b = glues["00"].service, glues["017"].service
    to_b, to_a = nodes["00"].dests_by_key[b.public_key], nodes["017"].dests_by_key[a.public_key]
    assert to_b.learned_via and to_a.learned_via, "the servers' messages came through a waypoint"
    assert a.peers[b.ip6].subscribed and b.peers[a.ip6].subscribed
    # each server holds the other's own announcement, which only federation brings
    assert b.ip6 in a.core.nodes and a.ip6 in b.core.nodes
    assert a.counters["forwarded"] >= 1 and b.counters["forwarded"] >= 1
    assert not any(n.drops.get("session_unknown_handle") for n in nodes.values()), \
        "no reply ended at a waypoint that has no session for it"


def test_a_node_behind_a_wide_interface_of_its_peer_reaches_the_route_server_the_peer_names():
    """server - hub - leaf, the leaf on the hub's interface 11 (a 7-bit director), the server on its interface 0
    (4 bits): the hub's GETSNODE answer is widened for the leaf (cjdns NumberCompress_getLabelFor), else every
    announcement of the leaf is refused by the hub's switch (MALFORMED_ADDRESS) and times out."""
    wire, loop, nodes, glues = build(["s", "hub", "leaf"], [("hub", 0, "s", 2), ("hub", 11, "leaf", 0)], ["s"])
    for node in nodes.values():
        node.housekeeping()
    step(wire, loop, nodes, glues, 6)
    leaf = glues["leaf"].client
    assert leaf.server == nodes["s"].identity.public_key and leaf.counters["ann_accepted"] >= 1
    assert not leaf.counters["timeout_ann"] and not nodes["leaf"].drops
    assert glues["s"].service.status()["nodes"] == 3


def test_bad_announcements_injected_by_a_node_are_rejected_and_counted():
    wire, loop, nodes, glues = up()
    core, glue = glues["11"].service.core, glues["00"]
    for kind in ("forged", "replayed", "skewed"):
        assert glue.send_bad_announcements(kind, 2)["sent"] == 2
    step(wire, loop, nodes, glues, 1)
    assert core.counters["rejected_bad_signature"] == 2 and core.counters["rejected_replay"] == 2
    assert core.counters["rejected_clock_skew"] == 2
    accepted = glue.client.counters["ann_accepted"]
    step(wire, loop, nodes, glues, 3)                          # the node's own announcements still go through
    assert glue.client.counters["ann_accepted"] > accepted
    with pytest.raises(ValueError):
        glue.send_bad_announcements("bogus")
    with pytest.raises(ValueError):
        glues["11"].send_bad_announcements("forged")         # a route server has no other server to lie to


def test_a_nodes_leases_become_its_lease_entities():
    from node.leases.table import FREE, Lease, LeaseTable
    from node.route_server import announcement as A
    from node.tun_switch.route_server_plane import lease_entities
    holder = keys.Identity.from_seed(b"rs-agent-holder", 0).public_key
    t = LeaseTable()
    t.add_link("eth0")
    t.add_interface(2, "eth0", FREE)
    t.add_lease(Lease("L1", "eth0", guarantee_bps=500_000, holder=holder, expires=100.0))
    t.add_interface(256, "eth0", "L1")
    t.add_lease(Lease("L2", "eth0", holder=holder))
    t.add_interface(255, "eth0", "L2")
    assert t.lease_interfaces() == {255, 256}
    # data path clock 40 s at Unix time 1_700_000_000: L1 ends in 60 s
    l1, l2 = lease_entities(t, 40.0, 1_700_000_000.0)
    assert l1 == A.LeaseEntity("L1", labels.one_hop_label(2) & 0xFFFF, labels.one_hop_label(256) & 0xFFFF, 500_000,
                               1_700_000_060, holder=holder)
    assert (l2.lease_id, l2.lease_num, l2.expires_s) == ("L2", labels.one_hop_label(255), A.NEVER)
    assert [e.lease_id for e in lease_entities(t, 100.0, 1_700_000_060.0)] == ["L2"]      # L1 ended
    A.encode_entities([l1, l2])                                                             # they are valid


def test_lease_holders_in_the_route_server_settings():
    holder = keys.Identity.from_seed(b"rs-agent-holder", 0)
    s = parse_settings({"lease_holders": [holder.pubkey_text]})
    assert s.client_config().lease_holders == (holder.public_key,)
    with pytest.raises(ValueError, match="lease_holders"):
        parse_settings({"lease_holders": [holder.pubkey_text] * 9})
    with pytest.raises(ValueError, match=r"lease_holders\[0\]"):
        parse_settings({"lease_holders": ["nope"]})


def test_the_peer_list_goes_to_the_client_when_it_changes_and_its_rtts_once_a_second():
    """An idle tick does not rebuild the peer list (most of an idle node's CPU); a link that goes down leaves the
    client's list at the next tick."""
    wire, loop, nodes, glues = up()
    glue, node = glues["00"], nodes["00"]
    given = []
    set_peers = glue.client.set_peers
    glue.client.set_peers = lambda peers: (given.append([p.our_label for p in peers]), set_peers(peers))
    step(wire, loop, nodes, glues, 2.0)                  # 20 ticks
    assert 1 <= len(given) <= 3 and all(len(g) == 2 for g in given)
    link = node.links[0]
    link.liveness.up = False                             # its verdict: down
    glue.tick()
    assert given[-1] == [node.switch.label_for(i) for i in node.links if i != 0]
    assert node.switch.label_for(0) not in glue.client.peers


def test_on_its_own_timers_the_glue_builds_the_mesh_and_an_idle_node_ticks_about_once_a_second():
    """No hand-driven ticks: the glue runs on the deadlines it arms (the client's and the service's next_due) and
    on wakes (a look-up, a link change), as in the agent. The mesh forms and every pair's first packet arrives;
    then, idle, a node ticks at its announcements and its idle tick, not every TICK_S."""
    loop = TimerLoop()
    wire, loop, nodes, glues = build_grid(loop=loop)
    for node in nodes.values():
        node.housekeeping()
        loop.call_every(1.0, node.housekeeping)             # as Node.start arms it
    loop.run_until(loop.now + 8, wire.pump)
    names = sorted(nodes)
    for a in names:
        for b in names:
            if a != b:
                nodes[a].send_ip6(ip6_packet(nodes[a].identity, nodes[b].identity, f"{a}>{b}".encode()))
    loop.run_until(loop.now + 2, wire.pump)
    for b in names:
        assert sorted(p[40:].decode() for p in nodes[b].delivered) == sorted(f"{a}>{b}" for a in names if a != b)
    before = {n: g.counters["ticks"] for n, g in glues.items()}
    loop.run_until(loop.now + 20, wire.pump)
    rates = {n: (g.counters["ticks"] - before[n]) / 20 for n, g in glues.items()}
    # announce_interval_s is 1 here (build()): an announcement every 0.5-1 s (its reply, a tick too) and the idle
    # tick a second; before: 10 ticks a second
    assert all(1 / IDLE_TICK_S <= r <= 4.5 for r in rates.values()), rates
    assert all(g.client.counters["ann_accepted"] >= 20 for g in glues.values())
    assert not any(g.client.counters.get("failovers") for g in glues.values())


def test_a_route_server_does_not_re_ask_its_path_to_a_client_whose_queries_come_by_a_new_path():
    """A route server answers each query back the way it came: a client moving to another path to it (its label
    changes many times while a big mesh comes up) must not make the server's node query a path to the client.
    At 1000 nodes these re-asks were most of a server's path queries."""
    wire, loop, nodes, glues = build_grid(3, servers=("11",))
    step(wire, loop, nodes, glues, 10)
    server, client = glues["11"], glues["00"].client
    cand = client.candidates[nodes["11"].identity.public_key]
    other = server.service.core.route(nodes["00"].ip6, nodes["11"].ip6, bad_labels=(cand.label,)).label
    assert other != cand.label
    own, moves = server.service.counters["query_gr_own"], server.counters["return_path_moves"]
    accepted = client.counters["ann_accepted"]
    for label in (other, cand.label):        # the client's announcements arrive by one path, then the other:
        cand.label = label                   # one of them is not the server's own path to the client
        step(wire, loop, nodes, glues, 3)
    assert client.counters["ann_accepted"] >= accepted + 4
    assert server.counters["return_path_moves"] == moves
    assert server.service.counters["query_gr_own"] == own


def test_a_route_server_does_not_look_up_a_client_its_answers_cannot_reach():
    """The way back from the server to client 00 breaks (its neighbours refuse to send to it; its queries still
    arrive): the switch errors on the server's answers are counted, and its node asks no path to the client (at
    1000 nodes such look-ups, each re-asked while the failed path held, were most of a server's queries)."""
    wire, loop, nodes, glues = build_grid(3, servers=("11",))
    step(wire, loop, nodes, glues, 10)
    server = glues["11"]
    own = server.service.counters["query_gr_own"]
    for name in ("01", "10"):
        link = next(l for l in nodes[name].links.values() if l.peer_name == "00")
        link.send = lambda packet, on_fail=None: False          # ECONNREFUSED toward 00 only
    step(wire, loop, nodes, glues, 5)
    assert server.service.counters["query_gr_own"] == own
    assert nodes["11"].counters["switch_errors_on_answers"] > 0


def test_a_route_servers_backlog_is_bounded_drops_what_waited_too_long_and_serves_the_rest(monkeypatch):
    import node.tun_switch.route_server_plane as plane
    from node.route_server import messages as M
    wire, loop, nodes, glues = up()
    server, glue = nodes["11"], glues["11"]
    d = server.dests[nodes["00"].identity.ip6]
    glue.tick()                                  # what the mesh queued so far is served: the backlog is ours
    assert not glue.backlog
    monkeypatch.setattr(plane, "MAX_BACKLOG", 3)
    served = glue.service.counters["query_pn"]
    for i in range(5):                           # five pings of the route server, queued (the loop is set)
        glue.on_content(d, M.pack_query(M.Query("pn", b"t%d" % i)))
    assert len(glue.backlog) == 3 and glue.counters["backlog_full"] == 2 and glue.counters["backlog_max"] >= 3
    loop.now += 1
    glue.on_content(d, M.pack_query(M.Query("pn", b"late")))      # the oldest goes, this one waits
    assert glue.counters["backlog_full"] == 3
    loop.now += plane.MAX_BACKLOG_WAIT_S
    glue.tick()                                  # the two queued a second earlier waited too long
    assert glue.counters["backlog_stale"] == 2 and not glue.backlog
    assert glue.service.counters["query_pn"] == served + 1


def test_a_late_backlog_is_served_newest_first(monkeypatch):
    """In order while the oldest message is fresh; once it waited NEWEST_FIRST_AFTER_S, the newest first (its asker
    still waits), the old ones after, until they are stale."""
    import node.tun_switch.route_server_plane as plane
    from node.route_server import messages as M
    wire, loop, nodes, glues = up()
    glue = glues["11"]
    d = nodes["11"].dests[nodes["00"].identity.ip6]
    glue.tick()                                  # what the mesh queued so far is served: the backlog is ours
    assert not glue.backlog
    served = []
    monkeypatch.setattr(glue, "_serve", lambda payload, *rest: served.append(M.parse_query(payload).txid))
    for txid in (b"a", b"b"):
        glue.on_content(d, M.pack_query(M.Query("pn", txid)))
    glue.tick()
    assert served == [b"a", b"b"] and glue.counters["backlog_newest_first"] == 0
    for txid in (b"c", b"d"):
        glue.on_content(d, M.pack_query(M.Query("pn", txid)))
    loop.now += plane.NEWEST_FIRST_AFTER_S + 0.1
    glue.on_content(d, M.pack_query(M.Query("pn", b"e")))
    glue.tick()
    assert served[2:] == [b"e", b"d", b"c"] and glue.counters["backlog_newest_first"] == 3
