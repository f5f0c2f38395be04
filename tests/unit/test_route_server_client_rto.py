"""The client's query timeout follows its server's round trips (TCP's RTO, RFC 6298; node/route_server/client.py):
a server that answers late because its queue is long is not failed over, and its queue gets no duplicates."""
from node.cjdns.keys import Identity
from node.route_server.client import MAX_TIMEOUT_MS, ClientConfig, RouteServerClient
from node.route_server.service import RouteServerService

T0 = 1_700_000_000_000


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def pair():
    clock = Clock()
    server_id, node_id = Identity.from_seed(b"rto", 0), Identity.from_seed(b"rto", 1)
    service = RouteServerService(server_id.public_key)
    client = RouteServerClient(node_id, clock, ClientConfig(query_timeout_ms=2000),
                               route_servers=[(server_id.public_key, 0x13)])
    return clock, service, client, server_id.public_key, node_id.public_key


def round_trip(clock, service, client, server, node, delay_ms):
    """Everything the client sends now is answered delay_ms later (the server's queue); the client polls meanwhile."""
    sent = [o for o in client.poll() if o.kind == "snode"]
    for _ in range(delay_ms // 500):
        clock.now += 500
        sent += [o for o in client.poll() if o.kind == "snode"]
    for o in sent:
        reply = service.handle(o.payload, node, clock.now)
        if reply is not None:
            client.on_reply(reply, server)
    return sent


def test_a_server_falling_behind_stretches_the_timeout_instead_of_failing():
    """Its queue grows (answers 1.5 s late, then up to 4 s, twice the configured timeout)."""
    clock, service, client, server, node = pair()
    assert client.timeout_ms() == 2000                          # nothing measured yet: the configured timeout
    for delay in (1500, 2500, 3000, 3500, 4000, 4000):
        assert round_trip(clock, service, client, server, node, delay)
        clock.now += client.config.announce_interval_ms
    assert 4000 < client.timeout_ms() <= MAX_TIMEOUT_MS
    assert client.counters["ann_accepted"] >= 6
    assert not any(k.startswith(("timeout_", "server_failed")) for k in client.counters)
    assert client.server == server


def test_before_any_round_trip_the_configured_timeout_holds():
    clock, _, client, _, _ = pair()
    assert [o.kind for o in client.poll()] == ["snode"]         # the first announcement, unanswered
    clock.now += 2000
    client.poll()
    assert client.counters["timeout_ann"] == 1 and client.counters["server_failed_silence"] == 1


def test_a_fast_server_keeps_the_configured_floor():
    clock, service, client, server, node = pair()
    for _ in range(4):
        round_trip(clock, service, client, server, node, 10)
        clock.now += client.config.announce_interval_ms
    assert client.timeout_ms() == 2000 and client.srtt_ms < 20


def test_every_server_behind_the_timeouts_back_off_until_one_answers():
    """Both servers answer 5 s late (configured: 2 s), as when a whole mesh comes up on a busy machine: the
    client fails over at the configured timeout while it has a server it has not tried; the first server's late
    answer is a round-trip sample all the same (its txid is its own), kept for the next server, which is then
    given SRTT + 4 RTTVAR, answers and stays."""
    clock = Clock()
    node_id = Identity.from_seed(b"rto", 1)
    servers = [RouteServerService(Identity.from_seed(b"rto", i).public_key) for i in (0, 2)]
    client = RouteServerClient(node_id, clock, ClientConfig(query_timeout_ms=2000, lone_retry_ms=0),
                               route_servers=[(s.public_key, 0x13 + 2 * i) for i, s in enumerate(servers)])
    in_flight = []                                  # (answer time, server, payload)
    for _ in range(40):
        out = [o for o in client.poll() if o.kind == "snode"]
        in_flight += [(clock.now + 5000, o.public_key, o.payload) for o in out]
        for item in [i for i in in_flight if i[0] <= clock.now]:
            in_flight.remove(item)
            svc = next(s for s in servers if s.public_key == item[1])
            client.on_reply(svc.handle(item[2], node_id.public_key, clock.now), item[1])
        clock.now += 500
    assert client.counters["ann_accepted"] >= 1
    assert client.counters["server_failed_silence"] == 1      # 2 s (the other is untried), then the sample's RTO
    assert client.counters["late_answers"] >= 1
    assert client.backoff == 1 and client.timeout_ms() >= 5000  # what is left is the measured round trip


def test_once_every_server_was_tried_the_timeouts_back_off_and_stay_backed_off():
    """Three servers that never answer: the client turns to each at the configured timeout, then each timeout
    doubles (a server whose failure hold ran out is not untried again until some server answered: at 1000 nodes
    the clients cycled through four silent servers at 1 s each, re-announcing every time)."""
    clock = Clock()
    node_id = Identity.from_seed(b"rto", 1)
    keys = [Identity.from_seed(b"rto", i).public_key for i in (0, 2, 3)]
    client = RouteServerClient(node_id, clock, ClientConfig(query_timeout_ms=2000, fail_hold_ms=5000),
                               route_servers=[(k, 0x13 + 2 * i) for i, k in enumerate(keys)])
    timeouts = []
    for _ in range(240):                            # 120 s
        before = client.counters["timeout_ann"]
        client.poll()
        if client.counters["timeout_ann"] > before:
            timeouts.append(clock.now)
        clock.now += 500
    gaps = [b - a for a, b in zip(timeouts, timeouts[1:])]
    assert gaps[0] == 2000 and gaps[1] >= 4000       # the third server untried, then backed off
    assert all(b >= a for a, b in zip(gaps[1:], gaps[2:]))
    assert len(timeouts) <= 8                       # 2 s timeouts all along would have been 60
