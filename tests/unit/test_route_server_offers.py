"""Market offers in the route-server link state: the OFFER entity (announcement.py), the route server's store
(server.py: add, replace, withdraw, expire, refuse), the client and agent path (client.py, route_server_plane.py)
and the market's announcer (node/market/offer_announcer.py) over a real control socket."""
import asyncio
import struct
import threading
from collections import Counter

import pytest

from node.agent.control_api import CommandError, ControlServer
from node.agent.event_loop import EventLoop
from node.cjdns import keys
from node.cjdns.labels import V358
from node.market.offer_announcer import RETRY_S, OfferAnnouncer
from node.route_server import announcement as A
from node.route_server.client import PeerInfo, RouteServerClient
from node.route_server.server import MAX_OFFERS, RouteServer
from node.route_server.service import RouteServerService
from node.tun_switch.route_server_plane import offer_entities

from tests.unit.test_route_server_agent import step, up

T = 1_700_000_000_000
SERVER = keys.Identity.from_seed(b"offers", 0)
SELLER = keys.Identity.from_seed(b"offers", 1)
OTHER = keys.Identity.from_seed(b"offers", 2)
KEY = SELLER.signing_public_key


def offer(token="t1", end_s=T // 1000 + 600, seller=KEY, **kw):
    fields = dict(lease="up", link="m1--core1", kbps=1500, start_s=T // 1000, end_s=end_s, price=1 << 30)
    fields.update(kw)
    return A.OfferEntity(token, fields["lease"], fields["link"], fields["kbps"], fields["start_s"],
                         fields["end_s"], fields["price"], seller)


def announce(server, identity, ts, *entities, reset=False):
    base = (A.VersionEntity(22), A.EncodingSchemeEntity(V358))
    raw = A.Announcement.build(identity, server.snode_ip6, ts, base + entities, reset=reset).raw
    return server.handle_announce(raw, ts)


def listed(server, now):
    return [(keys.ip6_text(n.ip6), o.token) for n, o in server.offers(now)]


# -- the entity ---------------------------------------------------------------------------------------------

def test_an_offer_entity_round_trips_in_a_signed_announcement_with_the_layout_of_the_docstring():
    o = offer()
    body = o.body()
    assert body[:1] == b"\x01"
    assert struct.unpack(">QIIQ", body[1:25]) == (1500, T // 1000, T // 1000 + 600, 1 << 30)
    assert body[25:57] == KEY and body[57:] == b"\x02t1\x02up\x09m1--core1"
    ann = A.Announcement.build(SELLER, SERVER.ip6, T, (A.VersionEntity(22), o))
    assert A.Announcement.parse(ann.raw).offers == [o]
    longest = offer("t" * 64, lease="l" * 64, link="k" * 64, kbps=A.MAX_UINT, price=A.MAX_UINT)
    assert len(longest.body()) + 2 == 254           # the biggest fits one entity (255 bytes at most)
    assert A.Announcement.parse(A.Announcement.build(SELLER, SERVER.ip6, T, (longest,)).raw).offers == [longest]


@pytest.mark.parametrize("change, says", [
    (dict(token=""), "offer token"), (dict(token="a b"), "offer token"), (dict(link="x" * 65), "offer link"),
    (dict(kbps=0), "kbps 0"), (dict(price=1 << 63), "price"), (dict(end_s=T // 1000), "ends"),
    (dict(start_s=-1), "start_s"), (dict(seller=b"\x01" * 31), "32-byte")])
def test_an_offer_that_breaks_a_rule_is_not_encoded_and_the_error_names_the_field(change, says):
    token = change.pop("token", "t1")
    with pytest.raises(A.AnnouncementError, match=says):
        offer(token, **change).body()


@pytest.mark.parametrize("body, reason", [
    (b"", "malformed"), (b"\x02" + offer().body()[1:], "unknown_version"), (offer().body()[:40], "malformed"),
    (offer().body()[:-1], "malformed"), (offer().body() + b"x", "malformed"),
    (offer().body()[:57] + b"\x02t!\x02up\x09m1--core1", "malformed"),
    (offer().body()[:57] + b"\x00\x02up\x09m1--core1", "malformed"),
    (b"\x01" + struct.pack(">QIIQ", 0, 1, 2, 5) + KEY + b"\x01t\x01l\x01k", "bad_value"),
    (b"\x01" + struct.pack(">QIIQ", 5, 2, 2, 5) + KEY + b"\x01t\x01l\x01k", "bad_term")])
def test_a_bad_offer_entity_decodes_as_a_bad_offer_naming_why_not_as_a_malformed_announcement(body, reason):
    raw = A.Announcement.build(SELLER, SERVER.ip6, T, (A.VersionEntity(22), A.UnknownEntity(A.OFFER, body))).raw
    ann = A.Announcement.parse(raw)
    assert [type(e).__name__ for e in ann.offers] == ["BadOfferEntity"]
    assert ann.offers[0].reason == reason and ann.offers[0].detail and ann.protocol_version == 22


# -- the route server's store ---------------------------------------------------------------------------------

def test_the_server_keeps_a_nodes_offers_of_its_newest_announcement_until_their_term_ends():
    rs = RouteServer(SERVER.ip6)
    me = keys.ip6_text(SELLER.ip6)
    announce(rs, SELLER, T, offer("t1"), offer("t2", end_s=T // 1000 + 30), reset=True)
    assert listed(rs, T) == [(me, "t1"), (me, "t2")]
    announce(rs, SELLER, T + 1000, offer("t1", price=7), offer("t3"))            # replaced: t2 sold, t3 new
    assert listed(rs, T + 1000) == [(me, "t1"), (me, "t3")]
    assert rs.offers(T + 1000)[0][1].price == 7
    announce(rs, SELLER, T + 2000, offer("t1", end_s=T // 1000 + 30))
    assert listed(rs, T + 29_999) == [(me, "t1")] and listed(rs, T + 30_000) == []    # the term ended
    announce(rs, SELLER, T + 3000)                                               # none: withdrawn
    assert listed(rs, T + 3000) == []
    announce(rs, OTHER, T + 3000, offer("o1", seller=OTHER.signing_public_key), reset=True)
    assert listed(rs, T + 3000) == [(keys.ip6_text(OTHER.ip6), "o1")]
    rs.expire(T + 3000 + 20 * 60 * 1000 + 1)                                     # the node went silent
    assert listed(rs, T) == []


def test_bad_forged_duplicate_and_surplus_offers_are_refused_and_counted_the_rest_is_accepted():
    rs = RouteServer(SERVER.ip6)
    bad = A.UnknownEntity(A.OFFER, b"\x09")
    forged = offer("f1", seller=OTHER.signing_public_key)       # another market's offer in our announcement
    many = [offer(f"t{i}") for i in range(MAX_OFFERS + 2)]
    peer = A.PeerEntity(OTHER.ip6, 0x13, peer_num=0x13)
    node = announce(rs, SELLER, T, peer, bad, forged, many[0], many[0], *many[1:], reset=True)
    assert [o.token for o in node.offers] == [f"t{i}" for i in range(MAX_OFFERS)]
    assert list(node.links) == [0x13]                             # the routing state was not lost to them
    service = RouteServerService(SERVER.public_key)
    service.core = rs
    st = service.status(T)
    assert st["offers"] == MAX_OFFERS and st["rejected"] == {}
    assert st["offers_refused"] == {"unknown_version": 1, "forged": 1, "duplicate": 1, "too_many": 2}
    assert service.status(T + 601_000)["offers"] == 0
    assert [o["token"] for o in service.offers(T)] == [f"t{i}" for i in range(MAX_OFFERS)]
    assert service.offers(T)[0]["issuer"] == KEY.hex()


def test_an_offer_in_an_announcement_signed_by_someone_else_cannot_be_injected():
    rs = RouteServer(SERVER.ip6)
    raw = bytearray(A.Announcement.build(SELLER, SERVER.ip6, T, (A.VersionEntity(22), A.EncodingSchemeEntity(V358),
                                                                  offer())).raw)
    raw[-1] ^= 1                                                  # changed after signing
    with pytest.raises(Exception, match="bad_signature"):
        rs.handle_announce(bytes(raw), T)
    assert listed(rs, T) == [] and rs.counters["rejected_bad_signature"] == 1


# -- the client and the agent -----------------------------------------------------------------------------------

def test_the_client_announces_its_offers_soon_after_they_change_and_leaves_out_an_ended_term():
    now = [T]
    c = RouteServerClient(SELLER, lambda: now[0], route_servers=[(SERVER.public_key, 0x13)])
    c.set_peers([PeerInfo(SERVER.ip6, 0x13, 0x15, SERVER.public_key)])
    service = RouteServerService(SERVER.public_key)

    def next_announcement():
        """Run the client against a route server until it sends an announcement; the offers the server holds."""
        for _ in range(200):
            now[0] += 50
            for out in c.poll():
                if out.kind == "snode":
                    reply = service.handle(out.payload, SELLER.public_key, now[0])
                    c.on_reply(reply, SERVER.public_key)
                    if b"3:ann" in out.payload:
                        return [o["token"] for o in service.offers(now[0])]
        raise AssertionError("no announcement")
    assert next_announcement() == []
    sent_at = now[0]
    c.set_offers([offer("t1"), offer("t2", end_s=(T + 20_000) // 1000)])
    assert next_announcement() == ["t1", "t2"] and now[0] - sent_at <= 1000
    now[0] = T + 20_000
    c.set_offers(c.offers)
    assert next_announcement() == ["t1"]                       # t2's term is over: left out
    c.set_offers([])
    assert next_announcement() == [] and c.counters["ann_accepted"] == 4


def test_the_agent_command_checks_the_markets_offers_and_names_what_is_wrong():
    item = {"token": "t1", "lease": "up", "link": "a--b", "kbps": 10, "start": 1, "end": 2, "price": 3}
    assert offer_entities([item, dict(item, token="t2", issuer=KEY.hex())], KEY)[1].token == "t2"
    for bad, says in (([dict(item, issuer="00" * 32)], "not this node's market key"),
                      ([dict(item, kbps=0)], r"offers\[0\]: offer t1: kbps"), ([{"token": "t1"}], "an object"),
                      ([item] * (MAX_OFFERS + 1), "at most"), ("t1", "a list")):
        with pytest.raises(ValueError, match=says):
            offer_entities(bad, KEY)


def test_a_nodes_market_offers_reach_the_route_server_through_its_agent_and_go_when_withdrawn():
    wire, loop, nodes, glues = up()
    seller = nodes["00"]
    item = {"token": "t1", "lease": "up", "link": "a--b", "kbps": 10, "start": int(seller.wall_clock()),
            "end": int(seller.wall_clock()) + 60, "price": 3, "issuer": seller.identity.signing_public_key.hex()}
    assert glues["00"].commands()["market_offers"]({"offers": [item]}, None) == {"offers": 1}
    step(wire, loop, nodes, glues, 1)
    found = glues["11"].cmd_rs_offers({}, None)["offers"]
    assert [(o["node"], o["token"], o["issuer"]) for o in found] == [(seller.identity.ip6_text, "t1",
                                                                      item["issuer"])]
    assert glues["11"].cmd_rs_status({}, None)["offers"] == 1
    glues["00"].cmd_market_offers({"offers": []}, None)
    step(wire, loop, nodes, glues, 1)
    assert glues["11"].cmd_rs_offers({}, None)["offers"] == []
    with pytest.raises(ValueError, match="not a route server"):
        glues["00"].cmd_rs_offers({}, None)


# -- the market's announcer ----------------------------------------------------------------------------------

def test_the_market_sends_its_offers_to_the_agent_on_change_and_again_after_a_refusal(tmp_path):
    """The announcer against a real control socket (a server with just the command; the command itself is
    tested above on real nodes)."""
    loop, got, refuse = EventLoop(), [], [False]

    def market_offers(req, respond):
        if refuse[0]:
            raise CommandError('this node has no "route_server" section in its config')
        got.append([o["token"] for o in req["offers"]])
        return {"offers": len(req["offers"])}
    path = str(tmp_path / "agent.sock")
    srv = ControlServer(path, loop, {"market_offers": market_offers})
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        counters = Counter()
        a = OfferAnnouncer(path, counters)
        mine = [{"token": "t1", "end": 100}, {"token": "t2", "end": 50}]
        asyncio.run(a.tick(mine, 10))
        asyncio.run(a.tick(mine, 11))                   # unchanged: not sent again
        asyncio.run(a.tick(mine, 50))                   # t2's term is over
        assert got == [["t1", "t2"], ["t1"]]
        refuse[0] = True
        asyncio.run(a.tick(mine[:0], 60))
        asyncio.run(a.tick(mine[:0], 61))               # not again before the retry time
        assert counters == Counter(offers_announced=2, offers_announce_failed=1)
        refuse[0] = False
        asyncio.run(a.tick(mine[:0], 60 + RETRY_S))
        assert got[-1] == [] and counters["offers_announced"] == 3
    finally:
        loop.call_later(0, loop.stop)
        thread.join(5)
        srv.close()
        loop.close()
