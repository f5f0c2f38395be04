"""Conformance checks for the ``route_server.*`` vector kinds: pktlab's OFFER announcement entity
(announcement.py) and what a route server keeps of it (server.py). The vectors are tests/vectors/offers.json
(tests/vectors/README.md; written by tests/vectors/make_offers.py).
"""
from __future__ import annotations

from node.conformance import Mismatch, expect

from .announcement import Announcement, AnnouncementError, OfferEntity, parse_entities
from .server import Rejected, RouteServer

FIELDS = ("token", "lease", "link", "kbps", "start_s", "end_s", "price")


def _offer_dict(o: OfferEntity) -> dict:
    return dict({k: getattr(o, k) for k in FIELDS}, seller=o.seller.hex())


def check_offer_entity(v):
    """An offer's fields -> the whole entity (``entity``: length, type 82, body), and back; or ``error``: refused."""
    o = OfferEntity(*(v[k] for k in FIELDS), bytes.fromhex(v["seller"]))
    try:
        body = o.body()
    except AnnouncementError as e:
        if v.get("error"):
            return
        raise Mismatch(f"refused: {e}") from None
    if v.get("error"):
        raise Mismatch("the offer was encoded, want it refused")
    entity = bytes([len(body) + 2, o.type]) + body
    expect("entity", entity.hex(), v["entity"])
    expect("decoded", [_offer_dict(e) for e in parse_entities(entity)], [_offer_dict(o)])


def check_offer_announcement(v):
    """A signed announcement given to a route server it is addressed to at ``now_ms``: ``rejected`` (a reason), or
    the ``offers`` it lists and the offer entries it ``refused`` by reason."""
    raw = bytes.fromhex(v["hex"])
    try:
        snode = Announcement.parse(raw, verify=False).snode_ip
    except AnnouncementError:
        expect("rejected", "malformed", v.get("rejected"))
        return
    server = RouteServer(snode)
    try:
        server.handle_announce(raw, v["now_ms"])
    except Rejected as e:
        expect("rejected", e.reason, v.get("rejected"))
        return
    expect("rejected", None, v.get("rejected"))
    expect("offers", [_offer_dict(o) for _, o in server.offers(v["now_ms"])], v["offers"])
    expect("refused", {k[len("offer_refused_"):]: n for k, n in server.counters.items()
                       if k.startswith("offer_refused_")}, v["refused"])


CHECKS = {
    "route_server.offer_entity": check_offer_entity,
    "route_server.offer_announcement": check_offer_announcement,
}
