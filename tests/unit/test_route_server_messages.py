"""Bencode (strict, bounded) and the subnode <-> route server messages (§4.2), PKT announcement entities."""
import pytest
from hypothesis import given, settings, strategies as st

from node.route_server import announcement as A
from node.route_server import bencode, messages as M
from node.cjdns.keys import Identity
from node.cjdns.labels import V358

values = st.recursive(
    st.integers(min_value=-2**64, max_value=2**64) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(values)
def test_bencode_round_trip(v):
    assert bencode.decode(bencode.encode(v)) == v


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_bencode_decoder_raises_only_its_error(data):
    try:
        v = bencode.decode(data)
    except bencode.BencodeError:
        return
    assert bencode.encode(v) == data          # whatever is accepted is canonical


@given(values, st.data())
def test_bencode_mutations_raise_only_its_error(v, data):
    raw = bytearray(bencode.encode(v))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        bencode.decode(bytes(raw))
    except bencode.BencodeError:
        pass


@pytest.mark.parametrize("raw", [b"i03e", b"i-0e", b"ie", b"i1", b"01:a", b"2:a", b"d1:bi1e1:ai2ee",
                                 b"d1:ai1e1:ai2ee", b"di1ei2ee", b"i1ei2e", b"l", b"x", b"", b"d1:a",
                                 b"i" + b"9" * 50 + b"e"])
def test_bencode_rejects_non_canonical_and_broken(raw):
    with pytest.raises(bencode.BencodeError):
        bencode.decode(raw)


def test_bencode_bounds():
    deep = b"l" * 40 + b"e" * 40
    with pytest.raises(bencode.BencodeError, match="deep"):
        bencode.decode(deep)
    with pytest.raises(bencode.BencodeError, match="limit"):
        bencode.decode(b"0:" * 40000)
    many = b"l" + b"i1e" * 5000 + b"e"
    with pytest.raises(bencode.BencodeError, match="too many"):
        bencode.decode(many)
    assert bencode.encode({"b": 1, b"a": [b"x", "y"]}) == b"d1:ali1xe1:ye1:bi1ee".replace(b"li1xe1:ye", b"l1:x1:ye")


def test_bencode_encoder_refuses_other_types():
    for bad in (1.5, None, True, object(), {1: 2}):
        with pytest.raises(bencode.BencodeError):
            bencode.encode(bad)


# -- messages ---------------------------------------------------------------------------------------------

def test_query_round_trips():
    src, tar = bytes(range(16)), bytes(range(16, 32))
    addr = M.Address(bytes(32), 0x13)
    for q in (M.Query("ann", b"tx1", ann=b"\x00" * 130), M.Query("pn", b"tx2"),
              M.Query("gr", b"tx3", src=src, tar=tar), M.Query("gr", b"tx4", src=src, tar=tar, bad=(5, 7), dead=(0x13,)),
              M.Query("sub", b"s"), M.Query("sub", b"s", catch_up=True), M.Query("sub", b"s", hears=(src, tar)),
              M.Query("fwd", b"f", anns=(b"a", b"b")), M.Query("ann", b"x", ann=b"y", foreign=(addr,))):
        assert M.parse_query(M.pack_query(q)) == q
        assert M.is_query(M.pack_query(q))


def test_reply_round_trip_and_wire_names():
    r = M.Reply(b"tx", recv_time=123, state_hash=bytes(64), nodes=(M.Address(b"k" * 32, 0x1234),),
                alternatives=(M.Address(b"j" * 32, 0x15),), error="not_found", accepted=3)
    raw = M.pack_reply(r)
    assert M.parse_reply(raw) == r
    d = bencode.decode(raw)
    assert d[b"recvTime"] == 123 and d[b"np"] == [1, 22]
    assert d[b"n"] == [b"k" * 32 + bytes.fromhex("0000000000001234")]
    assert not M.is_query(raw)


@pytest.mark.parametrize("d", [
    {b"sq": b"nope", b"txid": b"x"},
    {b"sq": b"gr", b"txid": b"x", b"src": b"short", b"tar": bytes(16)},
    {b"sq": b"ann", b"txid": b"x"},
    {b"sq": b"ann", b"txid": 5, b"ann": b""},
    {b"sq": b"fwd", b"txid": b"x", b"anns": [1]},
    {b"sq": b"pn", b"txid": b"x" * 65},
    {b"sq": b"pn", b"txid": b"x", b"frs": [b"short"]},
    {b"sq": b"sub", b"txid": b"x", b"hr": [b"short"]},
    {b"sq": b"sub", b"txid": b"x", b"hr": b"not a list"},
])
def test_bad_queries_raise_message_error(d):
    with pytest.raises(M.MessageError):
        M.parse_query(bencode.encode(d))


@given(st.binary(max_size=300))
def test_message_parsers_raise_only_message_error(data):
    for parse in (M.parse_query, M.parse_reply):
        try:
            parse(data)
        except M.MessageError:
            pass


# -- PKT entities -----------------------------------------------------------------------------------------

def test_link_quality_and_lease_entities_round_trip_signed():
    ident = Identity.from_seed(b"ent", 0)
    q = A.LinkQualityEntity(0x13, rtt_us=2500, loss_ppm=10_000, capacity_kbps=50_000)
    lease = A.LeaseEntity("shop_in.2:x-y", peer_num=0x15, lease_num=0x1ff, guarantee_bps=2**40 + 5,
                          expires_s=1_900_000_000, price=7, holder=bytes(range(32)))
    ann = A.Announcement.build(ident, bytes(16), 1000, (A.VersionEntity(22), A.EncodingSchemeEntity(V358), q, lease))
    back = A.Announcement.parse(ann.raw)
    assert back.link_qualities == [q] and back.leases == [lease]
    assert q.value == pytest.approx(50_000 / (2.5 * 2))           # 1 % loss halves the value
    raw = bytearray(A.encode_entities([q]))
    assert raw[0] == A.LINK_QUALITY_SIZE and raw[1] == A.LINK_QUALITY == 80
    with pytest.raises(A.AnnouncementError):
        A.parse_entities(bytes([A.LEASE_V1_SIZE - 1, A.LEASE]) + bytes(A.LEASE_V1_SIZE - 3))
    with pytest.raises(A.AnnouncementError):
        A.LinkQualityEntity(1 << 16).body()


def test_lease_entity_bytes_follow_the_documented_layout():
    holder = bytes(range(1, 33))
    e = A.LeaseEntity("a_in", peer_num=0x0013, lease_num=0x01FF, guarantee_bps=500_000, expires_s=1_900_000_000,
                      price=7, holder=holder)
    body = bytes.fromhex("0013" "01ff" "000000000007a120" "713fb300" "0000000000000007") + holder + b"a_in"
    assert A.encode_entities([e]) == bytes([2 + len(body), 81]) + body
    assert A.parse_entities(bytes([2 + len(body), 81]) + body) == [e]
    never = A.LeaseEntity("x", 1)                   # no interface, never ends, no price, nobody holds it
    raw = A.encode_entities([never])
    assert raw[4:6] == b"\xff\xff" and raw[14:18] == b"\xff\xff\xff\xff" and raw[26:58] == bytes(32)
    assert A.parse_entities(raw) == [never] and not never.expired(2**62)


def test_the_first_lease_layout_still_decodes():
    body = bytes.fromhex("0000000000000009" "0015" "0000" "000001f4" "713fb300" "0000000000000003")
    [e] = A.parse_entities(bytes([A.LEASE_V1_SIZE, A.LEASE]) + body)
    assert e == A.LeaseEntity("9", peer_num=0x15, lease_num=A.UNKNOWN_PEER_NUM, guarantee_bps=500_000,
                              expires_s=1_900_000_000, price=3, holder=None)
    assert e.expired(1_900_000_000_000) and not e.expired(1_899_999_999_999)


@pytest.mark.parametrize("bad", [dict(lease_id=""), dict(lease_id="x" * 65), dict(lease_id="a b"),
                                 dict(lease_id="é"), dict(lease_id=7), dict(holder=bytes(32)), dict(holder=b"short"),
                                 dict(peer_num=1 << 16), dict(guarantee_bps=-1), dict(expires_s=1 << 32)])
def test_bad_lease_entities_are_refused_by_name(bad):
    e = A.LeaseEntity(**{**dict(lease_id="L", peer_num=1, holder=bytes([1]) * 32), **bad})
    with pytest.raises(A.AnnouncementError, match="lease"):
        e.body()


@pytest.mark.parametrize("tail", [b"", b"a b", b"x" * 65, b"\xff"])
def test_bad_lease_bytes_are_malformed(tail):
    body = bytes(A.LEASE_FIXED.size) + tail
    with pytest.raises(A.AnnouncementError, match="lease"):
        A.parse_entities(bytes([2 + len(body), A.LEASE]) + body)


def test_path_queries_carry_lease_holder_keys():
    keys_ = (bytes([1]) * 32, bytes([2]) * 32)
    q = M.Query("gr", b"t", src=bytes(16), tar=bytes([0xfc]) * 16, holders=keys_)
    assert M.parse_query(M.pack_query(q)).holders == keys_
    assert M.parse_query(M.pack_query(M.Query("gr", b"t", src=bytes(16), tar=bytes(16)))).holders == ()
    for bad in ([bytes(32)] * (M.MAX_HOLDERS + 1), [bytes(31)], [5]):
        raw = bencode.encode({b"sq": b"gr", b"txid": b"t", b"src": bytes(16), b"tar": bytes(16), b"hk": bad})
        with pytest.raises(M.MessageError, match="hk"):
            M.parse_query(raw)
