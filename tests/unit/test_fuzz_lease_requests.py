"""Fuzz: signed lease configuration requests (node/leases/requests.py) against a device's lease table.

Requests are built from a valid one: fields replaced by arbitrary JSON values, signed by the holder (so they get
past the signature) or not, at any clock, then the raw text mutated. Must hold: every request gets an answer
(a dict: ok, or one of the documented error codes with a detail), never an exception; a rejected request changes
no lease and no virtual router; the handler's counters count each request once."""
import json

from hypothesis import strategies as st

from node.leases import requests as cr
from node.cjdns import keys
from node.leases.table import Lease, LeaseTable, VirtualRouter

from fuzzing import harness
from test_fuzz_cryptoauth import mutate, mutation

HOLDER_SK = bytes(range(1, 33))
HOLDER = keys.public_key_for(HOLDER_SK)
OTHER_SK = bytes(range(101, 133))
T0 = 1_700_000_000.0
CODES = {cr.MALFORMED, cr.UNKNOWN_LEASE, cr.LEASE_EXPIRED, cr.WRONG_KEY, cr.BAD_SIGNATURE, cr.STALE,
         cr.REPLAYED_NONCE, cr.BAD_VALUE}

json_value = st.recursive(st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.integers(-20, 20)
                          | st.floats() | st.text(max_size=12),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                          max_leaves=8)
number = st.one_of(st.none(), st.integers(-10, 10**6), st.integers(-10**400, 10**400), st.floats())
set_value = st.fixed_dictionaries({}, optional={
    "max_priority_bandwidth": number, "clear_customer_bit": st.booleans() | json_value,
    "deprioritize_non_customer": st.none() | st.integers(-3, 20) | json_value,
    "virtual_router": st.sampled_from(["vrA", "vrB", "free", None, "nope"]) | json_value})
# a valid request with one thing changed (a field, the clock, the signer, the bytes)
request = st.tuples(
    st.sampled_from(["L1", "L2", "gone", "free"]),
    set_value,
    st.one_of(st.just(("ok",)),
              st.tuples(st.just("field"), st.sampled_from(["v", "lease", "set", "nonce", "timestamp", "signer",
                                                           "signature", "extra"]), json_value),
              st.tuples(st.just("clock"), st.floats(-100, 100) | st.integers(-10**400, 10**400)),
              st.tuples(st.just("signer"), st.sampled_from(["other", "none"])),
              st.tuples(st.just("bytes"), st.lists(mutation, min_size=1, max_size=2))),
)


def device():
    t = LeaseTable()
    t.add_link("eth1", 10000)
    t.add_lease(Lease("L1", "eth1", guarantee_bps=1_000_000, holder=HOLDER, virtual_router=None))
    t.add_lease(Lease("L2", "eth1", guarantee_bps=500_000, holder=HOLDER, expires=50.0))
    t.add_virtual_router(VirtualRouter("vrA", holder=HOLDER))
    t.add_virtual_router(VirtualRouter("vrB", holder=keys.public_key_for(OTHER_SK)))
    return t, cr.ConfigRequestHandler(t)


def table_state(t, now):
    return ({lid: lease.describe(now) for lid, lease in sorted((l.id, l) for link in t.links.values()
                                                                for l in link.leases.values())},
            {v: (vr.holder, vr.expires) for v, vr in t.virtual_routers.items()})


def build(spec) -> bytes:
    lease, changes, twist = spec
    body = {"v": 1, "lease": lease, "set": changes, "nonce": bytes(16).hex(), "timestamp": T0,
            "signer": keys.signing_public_key(HOLDER_SK).hex()}
    if twist[0] == "field":
        body[twist[1]] = twist[2]
    elif twist[0] == "clock":
        body["timestamp"] = T0 + twist[1] if isinstance(twist[1], float) else twist[1]
    body.pop("signature", None)
    if twist[0] == "signer" and twist[1] == "other":      # a well-signed request by someone else
        body["signer"] = keys.signing_public_key(OTHER_SK).hex()
        body["signature"] = keys.sign(OTHER_SK, cr.signed_bytes(body)).hex()
    elif twist[0] == "signer" and twist[1] == "none":
        body["signature"] = "00" * 64
    else:
        try:
            signed = cr.signed_bytes(body)
        except ValueError:                 # not JSON (a float Python writes as NaN is, a 400-digit int too)
            signed = b""
        body["signature"] = keys.sign(HOLDER_SK, signed).hex()
    if twist[0] == "field" and twist[1] == "signature":
        body["signature"] = twist[2]
    data = json.dumps(body).encode()
    return mutate(data, twist[1]) if twist[0] == "bytes" else data


@harness(st.tuples(request, st.floats(0, 100)), ci=400)
def test_fuzz_lease_config_requests(case):
    spec, now = case
    t, h = device()
    data = build(spec)
    before = table_state(t, now)
    answer = h.handle(data, now, T0)
    assert isinstance(answer, dict) and isinstance(answer["ok"], bool)
    if answer["ok"]:
        assert h.counters == {"applied": 1}
        # the same request again is a replay, and changes nothing
        after = table_state(t, now)
        again = h.handle(data, now, T0)                 # (at once: a second later it may be stale instead)
        assert again["error"] == cr.REPLAYED_NONCE and table_state(t, now) == after
    else:
        assert answer["error"] in CODES and isinstance(answer["detail"], str)
        assert table_state(t, now) == before
        assert h.counters == {"applied": 0, answer["error"]: 1}
