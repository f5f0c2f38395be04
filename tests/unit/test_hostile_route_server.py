"""Hostile route-server traffic (issue 13 items 3 and 5).

Item 3: a reply with an extreme ``recvTime`` (or other extreme numbers) must not make the client's ``poll()``
raise: the clock-skew estimate is bounded, the bad value counted and ignored.
Item 5: a route server that has just restarted must not accept a replayed announcement that is still fresh
(less than 10 s old): the per-node high-water mark survives the restart (node/replay_state.py)."""
import pytest

from node.agent.agent import Agent
from node.agent.config import parse_config
from node.tun_switch.memory_links import ManualLoop
from node.replay_state import ReplayState
from node.route_server import announcement as A
from node.route_server import messages as M
from node.route_server.client import MAX_SKEW_MS, ClientConfig, RouteServerClient
from node.route_server.service import RouteServerService
from node.cjdns.keys import Identity
from node.cjdns.labels import V358, one_hop_label

T0 = 1_700_000_000_000
RS = Identity.from_seed(b"hostile-rs", 0)
RS2 = Identity.from_seed(b"hostile-rs", 1)
NODE = Identity.from_seed(b"hostile-rs-node", 0)
PEER = Identity.from_seed(b"hostile-rs-node", 1)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def client():
    clock = Clock()
    c = RouteServerClient(NODE, clock, ClientConfig(announce_interval_ms=1000, query_timeout_ms=1000),
                          route_servers=[(RS.public_key, 0x13)])
    return c, clock


def pending_announcement(c):
    [q] = [q for q in (M.parse_query(o.payload) for o in c.poll() if o.kind == "snode") if q.sq == "ann"]
    return q


def run(c, clock, seconds):
    for _ in range(seconds):
        clock.now += 1000
        for o in c.poll():
            if o.kind == "snode" and M.parse_query(o.payload).sq == "ann":
                A.Announcement.parse(M.parse_query(o.payload).ann)        # well-formed


# bencode carries integers of up to 40 characters (route_server/bencode.py)
EXTREME = [2**62, 2**63 - 1, -(2**62), 10**39, -(10**38), 0, T0 + MAX_SKEW_MS + 1, T0 - MAX_SKEW_MS - 1]


@pytest.mark.parametrize("recv_time", EXTREME, ids=[str(v)[:12] for v in EXTREME])
def test_extreme_recv_time_is_counted_and_ignored(recv_time):
    c, clock = client()
    q = pending_announcement(c)
    reply = M.pack_reply(M.Reply(q.txid, recv_time=recv_time, state_hash=bytes(64)))
    assert c.on_reply(reply, RS.public_key)
    run(c, clock, 5)                       # every later poll works and announcements stay well-formed
    assert c.counters["bad_recv_time"] == 1 and c.skew_ms == 0


def test_a_plausible_skew_is_still_adopted():
    c, clock = client()
    q = pending_announcement(c)
    c.on_reply(M.pack_reply(M.Reply(q.txid, recv_time=T0 + 60_000, state_hash=bytes(64))), RS.public_key)
    assert c.skew_ms == 60_000 and c.counters["bad_recv_time"] == 0
    clock.now += 1000
    q = pending_announcement(c)
    assert A.Announcement.parse(q.ann).timestamp_ms == clock.now + 60_000


def test_only_announcement_replies_move_the_clock_estimate():
    """As cjdns's ReachabilityAnnouncer: a look-up's reply carries the server's clock too, but taking it would hide
    a jump of our clock from the server until it rejected nothing (the clock-skew fault must bite)."""
    c, clock = client()
    c.lookup(PEER.ip6)
    queries = [M.parse_query(o.payload) for o in c.poll() if o.kind == "snode"]
    [gr] = [q for q in queries if q.sq == "gr"]
    [first] = [q for q in queries if q.sq == "ann"]
    c.on_reply(M.pack_reply(M.Reply(first.txid, recv_time=T0, state_hash=bytes(64))), RS.public_key)
    c.on_reply(M.pack_reply(M.Reply(gr.txid, recv_time=T0 + 60_000)), RS.public_key)
    assert c.skew_ms == 0
    clock.now += 1000
    q = pending_announcement(c)
    assert A.Announcement.parse(q.ann).timestamp_ms == clock.now


@pytest.mark.parametrize("big", [10**39, -(10**38)])
def test_extreme_numbers_in_other_reply_fields(big):
    """Version, acc and labels at the edges of what bencode carries (40 digits) are no reason to fail."""
    from node.route_server import bencode
    c, clock = client()
    q = pending_announcement(c)
    d = {b"txid": q.txid, b"p": big, b"recvTime": T0, b"acc": big, b"stateHash": bytes(64),
         b"n": [RS2.public_key + b"\xff" * 8], b"alt": [RS2.public_key + b"\xff" * 8]}
    assert c.on_reply(bencode.encode(d), RS.public_key)
    run(c, clock, 3)


# -- item 5: replay across a restart -----------------------------------------------------------------------

def ann(ts, ident=NODE, reset=True):
    ents = (A.VersionEntity(22), A.EncodingSchemeEntity(V358),
            A.PeerEntity(PEER.ip6, one_hop_label(2), peer_num=one_hop_label(0)))
    return A.Announcement.build(ident, RS.ip6, ts, ents, reset=reset).raw


def send(svc, raw, now, txid=b"t"):
    return M.parse_reply(svc.handle(M.pack_query(M.Query("ann", txid, ann=raw)), NODE.public_key, now))


def test_a_restarted_route_server_rejects_a_fresh_replay(tmp_path):
    path = str(tmp_path / "replay.sqlite")
    svc = RouteServerService(RS.public_key, replay_state=ReplayState(path))
    raw = ann(T0)
    assert send(svc, raw, T0).error is None
    # the process restarts: its memory is gone, the database file is not; 5 s later the old one comes again
    svc = RouteServerService(RS.public_key, replay_state=ReplayState(path))
    assert send(svc, raw, T0 + 5000).error == "replay"
    assert svc.core.nodes == {}
    assert send(svc, ann(T0 + 5000), T0 + 5000).error is None        # the node's next announcement is fine


def test_the_route_server_fault_restart_keeps_the_replay_state():
    """rs_service run=false then run=true (the route-server-loss fault) starts a fresh service in the agent."""
    loop = ManualLoop()
    cfg = parse_config({"node": "r", "private_key": RS.private_key.hex(), "control_socket": "/tmp/x",
                        "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": [],
                        "route_server": {"serve": True}})
    agent = Agent(cfg, loop)
    glue = agent.route_server
    raw = ann(T0)
    assert send(glue.service, raw, T0).error is None
    agent.route_server.cmd_rs_service({"run": False}, None)
    agent.route_server.cmd_rs_service({"run": True}, None)
    assert send(glue.service, raw, T0 + 3000).error == "replay"


def test_agent_restart_with_a_state_dir_keeps_the_replay_state(tmp_path):
    def agent():
        cfg = parse_config({"node": "r", "private_key": RS.private_key.hex(),
                            "control_socket": str(tmp_path / "agent.sock"), "log_file": str(tmp_path / "agent.log"),
                            "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": [], "state_dir": str(tmp_path),
                            "route_server": {"serve": True}})
        return Agent(cfg, ManualLoop())
    first = agent()
    raw = ann(T0)
    assert send(first.route_server.service, raw, T0).error is None
    first.close()
    second = agent()
    assert send(second.route_server.service, raw, T0 + 9000).error == "replay"
    second.close()


def test_federation_catch_up_after_a_restart_is_not_taken_for_a_replay(tmp_path):
    """Announcements forwarded by a federated route server come from a trusted peer and may be older than what
    we held: after a restart they rebuild the state, as before."""
    path = str(tmp_path / "replay.sqlite")
    a = RouteServerService(RS.public_key, federation=[RS2.public_key], replay_state=ReplayState(path))
    raw = ann(T0)
    assert send(a, raw, T0).error is None
    a = RouteServerService(RS.public_key, federation=[RS2.public_key], replay_state=ReplayState(path))
    fwd = M.pack_query(M.Query("fwd", b"f", anns=(raw,)))
    reply = M.parse_reply(a.handle(fwd, RS2.public_key, T0 + 2000))
    assert reply.accepted == 1 and NODE.ip6 in a.core.nodes
    # and a direct replay still is one
    assert send(a, raw, T0 + 3000).error == "replay"
