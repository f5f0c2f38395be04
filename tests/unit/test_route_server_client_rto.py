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
