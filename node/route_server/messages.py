"""Subnode <-> route server messages (pkt-reference.md §4.2, cjdns ``subnode/MsgCore.c``), bencoded dicts.

Queries carry ``sq`` (the query name), ``txid`` and ``p`` (protocol version); cjdns also sends ``es``/``ei``
(encoding scheme, form index), which are accepted and ignored here::

    {"sq": "ann", "ann": <binary announcement>}            -> {"recvTime", "stateHash" 64 B, "error"?}
    {"sq": "pn"}                                            -> {"recvTime", "stateHash" (zeros if unknown)}
    {"sq": "gr", "src": ip6 16 B, "tar": ip6 16 B}          -> {"recvTime", "n": [Address], "np": [1, version]}

A reply has no ``sq``; it carries the query's ``txid`` and ``p``. An Address record is 40 bytes:
``public key 32 | label u64 BE`` (cjdns ``dht/Address.c`` Address_serialize); in a ``gr`` reply it is the
target's key and the label from ``src`` to it.

pktlab additions:

* ``dead`` in ``gr`` queries: labels (u64 BE) from the asking node to the far end of a link a switch reported
  dead (UNDELIVERABLE: the erring switch is where the error's cause says the label was, ``label_shift``): the
  server answers with a path around the last link of each, whatever the target.
* ``wp`` in ``gr`` replies, instead of ``n``, for a path that does not fit one label: [Address] of the node each
  segment ends at (the waypoints, then the target) with the segment's label from the node before it (the asking
  node, then each waypoint); see node/cjdns/waypoints.py. A client that does not know ``wp`` sees no path.
* ``bad`` in ``gr`` queries: labels (u64 BE, 8 bytes each) to that target that just failed for the asking node
  (a switch error or silence); if the cheapest path still has such a label, the server answers with a path
  that shares no link with it.
* ``hk`` in ``gr`` queries: public keys (32 bytes each, at most 8) whose bandwidth leases the asking node's traffic
  may use: its Cloud ISP's lease holder key. The server prefers links where one of them (or the asker's own
  key) holds a lease, and answers with a label through the lease's interfaces (server.py).
* ``alt`` in ``ann``/``pn`` replies: [Address] of other route servers of the same Cloud ISP, each with the
  label from the asking node to it (failover candidates).
* ``frs`` in ``ann``/``pn`` queries: [Address] of route servers the node heard about from its peers (GETSNODE
  replies) that it does not use itself, with the label from the node to them. This is how a route server
  learns a first path to the route servers of other Cloud ISPs.
* Federation between route servers: ``{"sq": "sub", "cu": 0|1, "hr": [<16-byte address>, ...]}`` (send me the
  link state you get; ``cu`` = 1: first send everything you hold, as after our start; ``hr``: the servers that
  forward to me themselves, so do not pass on what they sent you; renewed every minute and when ``hr`` changes) and
  ``{"sq": "fwd", "anns": [<binary announcement>, ...]}`` (announcements addressed to a federated route server);
  replies carry ``recvTime`` and, for ``fwd``, ``acc`` (how many were accepted).
* ``sendTime`` in replies: the server's clock when it answered, beside ``recvTime``, when the query arrived (the
  kernel's receive time of its frame). A server that is behind holds a query for a while between the two; with
  both the client estimates the clock skew as NTP does, ((recvTime - sent) + (sendTime - received)) / 2, which
  leaves that wait out (cjdns's midpoint rule takes half of it for skew). Without ``sendTime`` it is the
  midpoint rule.

Parsers raise only :class:`MessageError`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from . import bencode

PROTOCOL_VERSION = 22
ADDRESS_SIZE = 40
MAX_LIST = 256
MAX_HOLDERS = 8
QUERIES = ("ann", "pn", "gr", "sub", "fwd")


class MessageError(ValueError):
    """Not a well-formed route server message."""


@dataclass(frozen=True)
class Address:
    public_key: bytes
    label: int

    def pack(self) -> bytes:
        return bytes(self.public_key) + struct.pack(">Q", self.label)

    @classmethod
    def parse(cls, raw) -> "Address":
        if not isinstance(raw, bytes) or len(raw) != ADDRESS_SIZE:
            raise MessageError("an Address record is 40 bytes")
        return cls(raw[:32], struct.unpack(">Q", raw[32:])[0])


@dataclass(frozen=True)
class Query:
    sq: str
    txid: bytes
    version: int = PROTOCOL_VERSION
    ann: bytes = b""                       # ann
    src: bytes = b""                       # gr
    tar: bytes = b""                       # gr
    bad: tuple = ()                        # gr: labels that failed (ints)
    dead: tuple = ()                       # gr: labels to the far end of links reported dead (ints)
    holders: tuple = ()                    # gr: keys whose leases the asker may use (32-byte public keys)
    anns: tuple = ()                       # fwd
    foreign: tuple = ()                    # frs: route servers seen through peers (Address)
    catch_up: bool = False                 # sub: send everything held first
    hears: tuple = ()                      # sub: addresses (16 bytes) of servers that forward to the subscriber


@dataclass(frozen=True)
class Reply:
    txid: bytes
    version: int = PROTOCOL_VERSION
    recv_time: int | None = None
    send_time: int | None = None           # sendTime: when the server answered (pktlab, see above)
    state_hash: bytes | None = None
    error: str | None = None
    nodes: tuple = ()                      # n: Address records
    waypoints: tuple = ()                  # wp: Address records, one per segment
    alternatives: tuple = ()               # alt: Address records
    accepted: int | None = None            # fwd


def _check(cond, why: str):
    if not cond:
        raise MessageError(why)


def _get(d: dict, key: bytes, kind, size: int | None = None, required: bool = True):
    v = d.get(key)
    if v is None:
        _check(not required, f"missing {key.decode()}")
        return None
    _check(isinstance(v, kind) and not isinstance(v, bool), f"{key.decode()} has the wrong type")
    if size is not None:
        _check(len(v) == size, f"{key.decode()} must be {size} bytes")
    return v


def _addresses(d: dict, key: bytes) -> tuple:
    items = _get(d, key, list, required=False) or []
    _check(len(items) <= MAX_LIST, f"{key.decode()}: too many records")
    return tuple(Address.parse(x) for x in items)


def _decode(data) -> dict:
    try:
        msg = bencode.decode(data)
    except bencode.BencodeError as e:
        raise MessageError(f"bad bencode: {e}") from None
    _check(isinstance(msg, dict), "a message is a dictionary")
    return msg


# -- queries --------------------------------------------------------------------------------------------

def pack_query(q: Query) -> bytes:
    if q.sq not in QUERIES:
        raise MessageError(f"unknown query {q.sq!r}")
    d = {b"sq": q.sq, b"txid": q.txid, b"p": q.version}
    if q.sq == "ann":
        d[b"ann"] = q.ann
    elif q.sq == "gr":
        d[b"src"], d[b"tar"] = q.src, q.tar
        for key, values in ((b"bad", q.bad), (b"dead", q.dead)):
            if values:
                d[key] = [struct.pack(">Q", label) for label in values]
        if q.holders:
            d[b"hk"] = [bytes(k) for k in q.holders]
    elif q.sq == "fwd":
        d[b"anns"] = list(q.anns)
    elif q.sq == "sub":
        d[b"cu"] = int(q.catch_up)
        if q.hears:
            d[b"hr"] = list(q.hears)
    if q.foreign:
        d[b"frs"] = [a.pack() for a in q.foreign]
    return bencode.encode(d)


def parse_query(data) -> Query:
    d = _decode(data)
    sq = _get(d, b"sq", bytes)
    _check(sq.decode("latin-1") in QUERIES, f"unknown query {sq!r}")
    sq = sq.decode()
    txid = _get(d, b"txid", bytes)
    _check(len(txid) <= 64, "txid longer than 64 bytes")
    version = _get(d, b"p", int, required=False)
    version = PROTOCOL_VERSION if version is None else version
    kw = {}
    if sq == "ann":
        kw["ann"] = _get(d, b"ann", bytes)
    elif sq == "gr":
        kw["src"] = _get(d, b"src", bytes, 16)
        kw["tar"] = _get(d, b"tar", bytes, 16)
        for key in ("bad", "dead"):
            items = _get(d, key.encode(), list, required=False) or []
            _check(len(items) <= 16 and all(isinstance(b, bytes) and len(b) == 8 for b in items),
                   f"{key}: at most 16 8-byte labels")
            kw[key] = tuple(struct.unpack(">Q", b)[0] for b in items)
        holders = _get(d, b"hk", list, required=False) or []
        _check(len(holders) <= MAX_HOLDERS and all(isinstance(k, bytes) and len(k) == 32 for k in holders),
               f"hk: at most {MAX_HOLDERS} 32-byte keys")
        kw["holders"] = tuple(holders)
    elif sq == "fwd":
        anns = _get(d, b"anns", list)
        _check(len(anns) <= MAX_LIST and all(isinstance(a, bytes) for a in anns), "anns: a list of byte strings")
        kw["anns"] = tuple(anns)
    elif sq == "sub":
        kw["catch_up"] = bool(_get(d, b"cu", int, required=False))
        hears = _get(d, b"hr", list, required=False) or []
        _check(len(hears) <= MAX_LIST and all(isinstance(a, bytes) and len(a) == 16 for a in hears),
               f"hr: at most {MAX_LIST} 16-byte addresses")
        kw["hears"] = tuple(hears)
    return Query(sq, txid, version, foreign=_addresses(d, b"frs"), **kw)


def query_txid(data) -> bytes | None:
    """Best-effort txid of a message that failed to parse, so the error reply can still be matched."""
    try:
        d = bencode.decode(data)
        txid = d.get(b"txid") if isinstance(d, dict) else None
        return txid if isinstance(txid, bytes) and len(txid) <= 64 else None
    except bencode.BencodeError:
        return None


# -- replies --------------------------------------------------------------------------------------------

def pack_reply(r: Reply) -> bytes:
    d = {b"txid": r.txid, b"p": r.version}
    if r.recv_time is not None:
        d[b"recvTime"] = r.recv_time
    if r.send_time is not None:
        d[b"sendTime"] = r.send_time
    if r.state_hash is not None:
        d[b"stateHash"] = r.state_hash
    if r.error is not None:
        d[b"error"] = r.error
    if r.nodes:
        d[b"n"] = [a.pack() for a in r.nodes]
        d[b"np"] = [1, r.version]
    if r.waypoints:
        d[b"wp"] = [a.pack() for a in r.waypoints]
    if r.alternatives:
        d[b"alt"] = [a.pack() for a in r.alternatives]
    if r.accepted is not None:
        d[b"acc"] = r.accepted
    return bencode.encode(d)


def parse_reply(data) -> Reply:
    d = _decode(data)
    _check(b"sq" not in d, "a reply has no sq")
    txid = _get(d, b"txid", bytes)
    version = _get(d, b"p", int, required=False)
    error = _get(d, b"error", bytes, required=False)
    return Reply(txid, PROTOCOL_VERSION if version is None else version,
                 recv_time=_get(d, b"recvTime", int, required=False),
                 send_time=_get(d, b"sendTime", int, required=False),
                 state_hash=_get(d, b"stateHash", bytes, 64, required=False),
                 error=None if error is None else error.decode("utf-8", "replace"),
                 nodes=_addresses(d, b"n"), waypoints=_addresses(d, b"wp"), alternatives=_addresses(d, b"alt"),
                 accepted=_get(d, b"acc", int, required=False))


def is_query(data) -> bool:
    """True for a query (has sq), False for a reply; MessageError if it is neither."""
    return b"sq" in _decode(data)
