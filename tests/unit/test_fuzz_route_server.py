"""Fuzz: bencode, route-server messages and announcements, and the code behind them: the route server
(service + core) answering queries, and the client taking replies to its own pending queries and polling on.

Must hold: bencode raises only BencodeError and what it accepts is canonical (encodes back to the same bytes);
message parsers raise only MessageError, announcement parsing only AnnouncementError; the service answers
every message with None or a well-formed reply to its txid; a rejected announcement changes none of the
server's state and every announcement is counted once (accepted or rejected by reason); the client takes any
reply to its queries without raising, and every message it sends after it is well-formed."""
from hypothesis import strategies as st

from node.route_server import announcement as A
from node.route_server import bencode
from node.route_server import messages as M
from node.route_server.client import ClientConfig, RouteServerClient
from node.route_server.service import RouteServerService
from node.cjdns.keys import Identity
from node.cjdns.labels import V358, one_hop_label

from fuzzing import harness
from test_fuzz_cryptoauth import mutate, mutation

T0 = 1_700_000_000_000
RS = Identity.from_seed(b"fuzz-rs", 0)
FED = Identity.from_seed(b"fuzz-rs", 1)
NODES = [Identity.from_seed(b"fuzz-rs-node", i) for i in range(3)]
STRANGER = Identity.from_seed(b"fuzz-rs-node", 9)

# -- bencode ---------------------------------------------------------------------------------------------

bvalue = st.recursive(st.integers(-10**39 + 1, 10**39) | st.binary(max_size=20),
                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.binary(max_size=6), c, max_size=4),
                      max_leaves=12)
btext = st.lists(st.sampled_from([b"i", b"e", b"l", b"d", b"0", b"1", b"9", b"-", b":", b"3:abc", b"i-0e",
                                  b"i01e", b"le", b"de", b"x"]), max_size=20).map(b"".join)


@harness(st.one_of(st.binary(max_size=100), btext, bvalue.map(bencode.encode)), ci=2000)
def test_fuzz_bencode(data):
    try:
        value = bencode.decode(data)
    except bencode.BencodeError:
        return
    assert bencode.encode(value) == data


# -- messages ----------------------------------------------------------------------------------------------

FIELDS = [b"sq", b"txid", b"p", b"ann", b"src", b"tar", b"bad", b"dead", b"anns", b"frs", b"cu", b"n", b"np",
          b"alt", b"recvTime", b"stateHash", b"error", b"acc", b"es", b"ei"]
field_value = st.one_of(st.sampled_from([b"ann", b"pn", b"gr", b"sub", b"fwd", b"", bytes(16), bytes(40),
                                         bytes(64)]),
                        st.integers(-10**39 + 1, 10**39), st.binary(max_size=70),
                        st.lists(st.binary(max_size=41) | st.integers(-5, 5), max_size=4))
message = st.dictionaries(st.sampled_from(FIELDS), field_value, max_size=8)


@harness(message, ci=2000)
def test_fuzz_route_server_messages(d):
    raw = bencode.encode(d)
    for parse, pack in ((M.parse_query, M.pack_query), (M.parse_reply, M.pack_reply)):
        try:
            parsed = parse(raw)
        except M.MessageError:
            continue
        assert parse(pack(parsed)) == parsed
    try:
        M.is_query(raw)
    except M.MessageError:
        pass


# -- announcements and the route server ---------------------------------------------------------------------

def announcement(ident, ts, extra=(), reset=True, peers=((1, 0, 2),)):
    ents = [A.VersionEntity(22), A.EncodingSchemeEntity(V358)]
    for i, ours, theirs in peers:
        ents.append(A.PeerEntity(NODES[i].ip6, one_hop_label(theirs), peer_num=one_hop_label(ours)))
    return A.Announcement.build(ident, RS.ip6, ts, tuple(ents) + tuple(extra), reset=reset).raw


EXTRA = [A.LinkQualityEntity(one_hop_label(0), 800, 10, 1000), A.LeaseEntity("L7", one_hop_label(0), one_hop_label(200), 100_000, 2**31, 5, bytes([7]) * 32),
         A.LinkStateEntity(one_hop_label(0), 3, ((1, 0, 10), (2, 1, 20))), A.UnknownEntity(99, b"xyz")]
REAL_ANNS = [announcement(NODES[0], T0 + 1000, EXTRA), announcement(NODES[1], T0 + 1000, reset=False),
             announcement(NODES[2], T0 + 1000, peers=((1, 2, 0), (0, 3, 4)))]


@harness(st.tuples(st.sampled_from(REAL_ANNS), st.lists(mutation, max_size=3)), ci=1000)
def test_fuzz_announcement_parser(case):
    raw, change = case
    data = mutate(raw, change)
    try:
        ann = A.Announcement.parse(data, verify=False)
    except A.AnnouncementError:
        return
    # every view works on what parsed
    ann.peers, ann.link_states, ann.link_qualities, ann.leases, ann.encoding_scheme, ann.protocol_version


def service():
    svc = RouteServerService(RS.public_key, federation=[FED.public_key], same_isp=[FED.public_key])
    chain = [(NODES[0], ((1, 0, 2),)), (NODES[1], ((0, 2, 0), (2, 0, 2))), (NODES[2], ((1, 2, 0),))]
    for ident, peers in chain:
        q = M.Query("ann", b"setup", ann=announcement(ident, T0, peers=peers))
        assert M.parse_reply(svc.handle(M.pack_query(q), ident.public_key, T0)).error is None
    return svc


def state(svc):
    core = svc.core
    return ({ip6: (n.state_hash, sorted(n.links), sorted(n.leases)) for ip6, n in core.nodes.items()},
            sorted(core.graph().edges(data="weight")))


labels_ = st.lists(st.integers(0, 2**64 - 1), max_size=17)
query = st.one_of(
    st.tuples(st.just("ann"), st.sampled_from(REAL_ANNS), st.lists(mutation, max_size=3)),
    st.tuples(st.just("signed"), st.sampled_from(NODES + [STRANGER]), st.integers(-20_000, 20_000),
              st.booleans(), st.sampled_from([(), tuple(EXTRA), (A.PeerEntity(NODES[0].ip6, 0, 0x13),)])),
    st.tuples(st.just("gr"), st.sampled_from([n.ip6 for n in NODES] + [bytes(16), STRANGER.ip6]),
              st.sampled_from([n.ip6 for n in NODES] + [RS.ip6, bytes(16)]), labels_, labels_),
    st.tuples(st.just("fwd"), st.lists(st.sampled_from(REAL_ANNS) | st.binary(max_size=130), max_size=4)),
    st.tuples(st.just("other"), message),
)


def build_query(spec) -> bytes:
    kind = spec[0]
    if kind == "ann":
        return M.pack_query(M.Query("ann", b"q", ann=mutate(spec[1], spec[2])))
    if kind == "signed":
        _, ident, dt, reset, extra = spec
        return M.pack_query(M.Query("ann", b"q", ann=announcement(ident, T0 + dt, extra, reset=reset)))
    if kind == "gr":
        _, src, tar, bad, dead = spec
        d = {b"sq": b"gr", b"txid": b"q", b"src": src, b"tar": tar}
        if bad:
            d[b"bad"] = [b.to_bytes(8, "big") for b in bad]
        if dead:
            d[b"dead"] = [b.to_bytes(8, "big") for b in dead]
        return bencode.encode(d)
    if kind == "fwd":
        return bencode.encode({b"sq": b"fwd", b"txid": b"q", b"anns": list(spec[1])})
    return bencode.encode(spec[1])


@harness(st.tuples(query, st.sampled_from(NODES + [FED, STRANGER]), st.integers(-5000, 5000)), ci=300)
def test_fuzz_route_server_service(case):
    spec, src, dt = case
    svc = service()
    raw = build_query(spec)
    before = state(svc)
    counted = sum(v for k, v in svc.core.counters.items() if k == "accepted" or k.startswith("rejected_"))
    out = svc.handle(raw, src.public_key, T0 + dt, path=(0x13, ()))
    if out is None:
        return
    reply = M.parse_reply(out)
    try:
        q = M.parse_query(raw)
    except M.MessageError:
        assert reply.error.startswith("bad message")
        return
    assert reply.txid == q.txid
    if q.sq == "ann":
        after = sum(v for k, v in svc.core.counters.items() if k == "accepted" or k.startswith("rejected_"))
        assert after == counted + 1
        if reply.error is not None:
            assert state(svc) == before


# -- the client ----------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


address = st.tuples(st.sampled_from([RS.public_key, FED.public_key, NODES[1].public_key, bytes(32)]),
                    st.integers(0, 2**64 - 1)).map(lambda a: a[0] + a[1].to_bytes(8, "big"))
reply_fields = st.fixed_dictionaries({}, optional={
    b"p": st.integers(-10**39 + 1, 10**39), b"recvTime": st.integers(-10**39 + 1, 10**39) | st.integers(0, 2 * T0),
    b"stateHash": st.binary(min_size=64, max_size=64) | st.binary(max_size=70), b"error": st.binary(max_size=20),
    b"n": st.lists(address | st.binary(max_size=41), max_size=3), b"alt": st.lists(address, max_size=3),
    b"acc": st.integers(-10**39 + 1, 10**39), b"sq": st.just(b"gr")})


@harness(st.tuples(st.integers(0, 2), reply_fields, st.sampled_from([RS.public_key, FED.public_key])), ci=300)
def test_fuzz_route_server_client(case):
    which, fields, src = case
    clock = Clock()
    c = RouteServerClient(NODES[0], clock, ClientConfig(announce_interval_ms=1000, query_timeout_ms=1000),
                          route_servers=[(RS.public_key, 0x13)])
    c.lookup(NODES[2].ip6)
    out = [M.parse_query(o.payload) for o in c.poll() if o.kind == "snode"]
    txids = [q.txid for q in out]
    d = dict(fields)
    d[b"txid"] = txids[which % len(txids)]
    c.on_reply(bencode.encode(d), src)
    for _ in range(4):
        clock.now += 600
        c.lookup(NODES[1].ip6)
        for o in c.poll():
            if o.kind == "snode":
                q = M.parse_query(o.payload)
                if q.sq == "ann":
                    assert abs(A.Announcement.parse(q.ann).timestamp_ms - clock.now) <= 86_400_000
    c.describe()
