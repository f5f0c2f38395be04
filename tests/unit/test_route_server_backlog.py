"""A route server that is behind (its queue long, 1000 nodes on 2 shared cores): what waited in its queue is judged
by when it arrived (the kernel's receive stamp), the clients' clock-skew estimate leaves the wait out (``sendTime``,
as NTP), and announcements other servers pass on again are turned away before they cost a signature check."""
import socket
import time

import pytest

from node.agent.event_loop import EventLoop
from node.cjdns.keys import Identity
from node.cjdns.labels import V358
from node.route_server import announcement as A
from node.route_server import messages as M
from node.route_server import server as core
from node.route_server.client import ClientConfig, RouteServerClient
from node.route_server.server import MAX_CLOCKSKEW_MS, Rejected, RouteServer
from node.route_server.service import RouteServerService
from node.tun_switch.peer_link import PeerLink
from tests.unit.meshes import build_line

T0 = 1_700_000_000_000
RS, OTHER = Identity.from_seed(b"backlog", 0), Identity.from_seed(b"backlog", 1)
NODE = Identity.from_seed(b"backlog-node", 0)


def ann(ident, ts, snode=RS, reset=True):
    return A.Announcement.build(ident, snode.ip6, ts, (A.VersionEntity(22), A.EncodingSchemeEntity(V358)),
                                reset=reset).raw


def handle(svc, raw, now, arrived=None):
    return M.parse_reply(svc.handle(M.pack_query(M.Query("ann", b"a1", ann=raw)), NODE.public_key, now,
                                    arrived_ms=arrived))


def test_an_announcement_is_judged_by_when_it_arrived_not_when_the_server_got_to_it():
    late = T0 + MAX_CLOCKSKEW_MS + 5000                  # the server reads it 15 s after it came in
    r = handle(RouteServerService(RS.public_key), ann(NODE, T0), late, arrived=T0 + 40)
    assert r.error is None and (r.recv_time, r.send_time) == (T0 + 40, late)
    r = handle(RouteServerService(RS.public_key), ann(NODE, T0), late)               # no stamp: judged now
    assert r.error == "clock_skew" and r.recv_time == r.send_time == late
    r = handle(RouteServerService(RS.public_key), ann(NODE, T0), T0, arrived=T0 + 60_000)
    assert r.error is None and r.recv_time == T0                 # a stamp after now is taken as now


class Wall:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.mark.parametrize("send_time", [True, False])
def test_a_servers_queue_is_not_taken_for_clock_skew(send_time):
    """The server's clock is 3 s ahead of the node's; every announcement waits 15 s in its queue. With arrival
    stamps and sendTime the estimate stays within the transit time of the truth and nothing is rejected; judged
    when read, with cjdns's midpoint rule, the wait turns into rejections."""
    wall = Wall(T0)
    svc = RouteServerService(RS.public_key)
    client = RouteServerClient(NODE, wall, ClientConfig(announce_interval_ms=2000),
                               route_servers=[(RS.public_key, 0x13)])
    ahead, transit, queue = 3000, 20, 15_000
    for _ in range(6):
        outs = [o for o in client.poll() if o.kind == "snode"]      # the announcement (and a backup path query)
        arrived = wall.now + ahead + transit
        replies = [svc.handle(o.payload, NODE.public_key, arrived + queue, arrived_ms=arrived if send_time else None)
                   for o in outs]
        wall.now += transit + queue + transit
        for reply in replies:
            client.on_reply(reply, RS.public_key)
        wall.now += 2000
    if send_time:
        assert abs(client.skew_ms - ahead) <= transit and client.counters["ann_accepted"] == 6
        assert svc.core.counters.get("rejected_clock_skew", 0) == 0
    else:
        assert abs(client.skew_ms - ahead) >= queue // 2 - transit
        assert svc.core.counters["rejected_clock_skew"] >= 1


def test_the_midpoint_rule_stays_for_servers_without_send_time():
    """A cjdns server's reply has recvTime only: the estimate is recvTime minus the midpoint of our send and
    receive times, as before."""
    wall = Wall(T0)
    client = RouteServerClient(NODE, wall, ClientConfig(), route_servers=[(RS.public_key, 0x13)])
    [out] = [o for o in client.poll() if o.kind == "snode"]
    txid = M.parse_query(out.payload).txid
    wall.now += 1000
    assert client.on_reply(M.pack_reply(M.Reply(txid, recv_time=T0 + 7000)), RS.public_key)
    assert client.skew_ms == 6500


def test_forwarded_duplicates_are_turned_away_before_parsing(monkeypatch):
    server = RouteServer(RS.ip6, servers=[OTHER.ip6])
    raw = ann(NODE, T0)
    server.handle_announce(raw, T0)
    checks = []
    monkeypatch.setattr(core.keys, "verify", lambda *a: checks.append(a) or True)
    with pytest.raises(Rejected) as e:
        server.handle_announce(raw, T0 + 100, via=OTHER.ip6)       # passed on to us by the other server
    assert e.value.reason == "replay" and checks == []
    assert server.counters["forwarded_duplicate"] == 1 and not any(k.startswith("rejected") for k in server.counters)
    # one we did not accept lately goes through every check as before
    monkeypatch.setattr(core, "RECENT_ACCEPTED", 1)
    server.handle_announce(ann(NODE, T0 + 1000, reset=False), T0 + 1000)
    checks.clear()
    with pytest.raises(Rejected):
        server.handle_announce(raw, T0 + 1100, via=OTHER.ip6)
    assert len(checks) == 1 and server.counters["forwarded_duplicate"] == 2
    # a forged copy (other bytes) is not a duplicate: its signature is checked
    monkeypatch.undo()
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(Rejected) as e:
        server.handle_announce(forged, T0 + 1200, via=OTHER.ip6)
    assert e.value.reason == "bad_signature"


def test_a_link_with_arrival_stamps_tells_how_long_a_frame_waited():
    """A real UDP socket (a link connected to itself on ::1): the kernel's stamp lies between the send and the
    read, and the node reports the wait while it handles the frame."""
    loop = EventLoop()
    _, _, [node] = build_line(1, loop=loop)
    port = _free_udp6_port()
    link = PeerLink(0, "lo", "::1", "::1", port, loop=loop)
    node.add_link(link)
    node.stamp_arrivals()
    seen = []

    class Spy:
        def forward(self, index, packet):
            seen.append((packet, node.rx_wait(), link.arrived, time.time()))
            loop.stop()
    node.use_forwarder(Spy())
    sent = time.time()
    assert link.send_now(b"frame")
    loop.call_later(5, loop.stop)
    loop.run()
    link.close()
    [(packet, wait, arrived, handled)] = seen
    assert packet == b"frame" and sent <= arrived <= handled
    assert 0 <= wait <= handled - sent
    assert node.rx_wait() == 0.0                      # no frame being handled


def _free_udp6_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_a_wide_clock_sample_moves_the_estimate_only_when_it_excludes_it():
    """A sample is off by at most half its network time (NTP's bound): one whose query waited 6 s on the way (the
    midpoint 3 s off) leaves an estimate inside that bound; one whose bound excludes the estimate (a clock jump)
    and a precise one set it."""
    wall = Wall(T0)
    client = RouteServerClient(NODE, wall, ClientConfig(announce_interval_ms=2000),
                               route_servers=[(RS.public_key, 0x13)])

    def sample(query_leg, reply_leg, ahead):
        queries = [M.parse_query(o.payload) for o in client.poll() if o.kind == "snode"]   # ann (and a backup)
        assert [q.sq for q in queries][:1] == ["ann"]
        sent = wall.now
        wall.now += query_leg + reply_leg
        arrived = sent + query_leg + ahead
        for q in queries:
            assert client.on_reply(M.pack_reply(M.Reply(q.txid, recv_time=arrived, send_time=arrived)), RS.public_key)
        wall.now += 2000                                               # the next announcement is due

    sample(10, 10, 0)
    assert client.skew_ms == 0
    sample(6000, 10, 0)
    assert client.skew_ms == 0 and client.counters["skew_kept"] == 1   # the midpoint would say +2995 ms
    sample(6000, 10, 60_000)                                           # our clock jumped a minute back
    assert client.skew_ms == 62_995
    sample(10, 10, 60_000)
    assert client.skew_ms == 60_000
