"""Signed lease configuration requests (PKT paper §8: token holders "send signed configuration requests").

Wire format (JSON, UTF-8, one object; the same text travels over the control API or any transport)::

    {
      "v": 1,
      "lease": "<lease id>",                       # a paid lease of the device (the free lease has no holder)
      "set": {                                     # one or more of:
        "max_priority_bandwidth": 1000 | null,     #   priority x kB/s, null = unlimited
        "clear_customer_bit": true | false,
        "deprioritize_non_customer": 0..15 | null, #   P, null = off
        "virtual_router": "<vr id>" | null         #   join a virtual router of the same holder, null = leave
      },
      "nonce": "<32 hex digits>",                  # 16 random bytes, never reused
      "timestamp": 1732212345.25,                  # sender's clock, seconds since the Unix epoch
      "signer": "<64 hex digits>",                 # Ed25519 signing key (keys.signing_public_key)
      "signature": "<128 hex digits>"              # keys.sign over the signed bytes below
    }

Signed bytes: ``b"pktlab-lease-config-v1\\n"`` followed by the canonical JSON of the object without
``"signature"`` (keys sorted, separators ``,`` and ``:``, ASCII only, no whitespace).

The device checks, in this order, and answers the first failure as ``{"ok": false, "error": CODE, "detail": ...}``:

    malformed          not JSON / missing or extra fields / wrong types
    unknown_lease      no paid lease with that id
    lease_expired      the lease expired (its traffic is on the free tier)
    wrong_key          the signer's key is not the lease holder's key
    bad_signature      the signature does not verify
    stale              timestamp more than FRESHNESS_S away from the device clock, or FRESHNESS_S or more older
                       than the newest request accepted from the same signer
    replayed_nonce     the signer already used the nonce (nonces are kept while their request is within
                       FRESHNESS_S of the signer's newest)
    bad_value          a "set" value is out of range, or the virtual router cannot be joined

On success it applies every "set" field at once and answers ``{"ok": true, "lease": <lease description>}``.

Replay protection does not lean on the device clock alone: per signer the newest accepted timestamp (a
high-water mark) and the nonces within FRESHNESS_S of it are kept in a node/replay_state.py store (the agent's
state directory), so neither a clock that steps back nor a restart makes an old request acceptable again.
Requests of one signer may still arrive out of order within the window (two made at once, sent to two leases).
The holder key of a lease is the holder's cjdns Curve25519 public key; the signer key must be its Ed25519
counterpart (keys.curve25519_from_signing_key), as for cjdns announcements.
"""
from __future__ import annotations

import json
import os
import re

from node.cjdns import keys
from node.replay_state import ReplayState
from .table import LeaseError, LeaseTable, check_max_priority_bandwidth, check_priority_cap

VERSION = 1
DOMAIN = b"pktlab-lease-config-v1\n"
FRESHNESS_S = 30.0
MAX_TIMESTAMP_S = 1e12          # beyond any plausible clock, and well inside a float
REPLAY_SCOPE = "lease_config.signer"
SETTABLE = ("max_priority_bandwidth", "clear_customer_bit", "deprioritize_non_customer", "virtual_router")
_FIELDS = {"v", "lease", "set", "nonce", "timestamp", "signer", "signature"}
_HEX = re.compile(r"\A[0-9a-f]*\Z")

MALFORMED = "malformed"
UNKNOWN_LEASE = "unknown_lease"
LEASE_EXPIRED = "lease_expired"
WRONG_KEY = "wrong_key"
BAD_SIGNATURE = "bad_signature"
STALE = "stale"
REPLAYED_NONCE = "replayed_nonce"
BAD_VALUE = "bad_value"


class RequestError(ValueError):
    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def signed_bytes(body: dict) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return DOMAIN + json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def make_request(private_key: bytes, lease_id: str, changes: dict, timestamp: float,
                 nonce: bytes | None = None) -> bytes:
    """A signed request from the holder of ``private_key`` (the cjdns private key) to change ``lease_id``."""
    body = {"v": VERSION, "lease": lease_id, "set": dict(changes),
            "nonce": (nonce if nonce is not None else os.urandom(16)).hex(), "timestamp": timestamp,
            "signer": keys.signing_public_key(private_key).hex()}
    body["signature"] = keys.sign(private_key, signed_bytes(body)).hex()
    return json.dumps(body, sort_keys=True).encode()


def _hex_field(body: dict, name: str, nbytes: int) -> bytes:
    value = body[name]
    if not isinstance(value, str) or len(value) != 2 * nbytes or not _HEX.match(value):
        raise RequestError(MALFORMED, f"{name} must be {2 * nbytes} lowercase hex digits")
    return bytes.fromhex(value)


def parse(data: bytes) -> dict:
    """Decode and type-check a request (signature not checked); raises RequestError(MALFORMED)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RequestError(MALFORMED, f"not JSON: {e}") from None
    if not isinstance(body, dict) or set(body) != _FIELDS:
        raise RequestError(MALFORMED, f"expected exactly the fields {sorted(_FIELDS)}")
    if body["v"] != VERSION or isinstance(body["v"], bool):
        raise RequestError(MALFORMED, f"unsupported version {body['v']!r}")
    if not isinstance(body["lease"], str) or not body["lease"]:
        raise RequestError(MALFORMED, "lease must be a non-empty string")
    changes = body["set"]
    if not isinstance(changes, dict) or not changes or not set(changes) <= set(SETTABLE):
        raise RequestError(MALFORMED, f"set must be a non-empty object with keys among {list(SETTABLE)}")
    ts = body["timestamp"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= MAX_TIMESTAMP_S:
        raise RequestError(MALFORMED, f"timestamp must be seconds since the Unix epoch (0..{MAX_TIMESTAMP_S:g})")
    _hex_field(body, "nonce", 16)
    _hex_field(body, "signer", 32)
    _hex_field(body, "signature", 64)
    return body


class ConfigRequestHandler:
    """Checks and applies requests against a device's LeaseTable; ``replay_state`` keeps each signer's high-water
    mark and recent nonces (default: in memory)."""

    def __init__(self, table: LeaseTable, freshness_s: float = FRESHNESS_S, replay_state: ReplayState | None = None):
        self.table = table
        self.freshness_s = freshness_s
        self.replay_state = replay_state if replay_state is not None else ReplayState()
        self.counters = {"applied": 0}

    def handle(self, data: bytes, now: float, wall_time: float) -> dict:
        """Answer one request. ``now``: the lease clock (expiry); ``wall_time``: Unix time (freshness)."""
        try:
            lease = self._apply(data, now, wall_time)
        except RequestError as e:
            self.counters[e.code] = self.counters.get(e.code, 0) + 1
            return {"ok": False, "error": e.code, "detail": e.detail}
        self.counters["applied"] += 1
        return {"ok": True, "lease": lease.describe(now)}

    def _apply(self, data: bytes, now: float, wall_time: float):
        body = parse(data)
        lease = self.table.find(body["lease"])
        if lease is None:
            raise RequestError(UNKNOWN_LEASE, f"no lease {body['lease']!r} on this device")
        if lease.expired(now):
            raise RequestError(LEASE_EXPIRED, f"lease {lease.id} expired; its traffic is on the free tier")
        signer = bytes.fromhex(body["signer"])
        try:
            signer_curve = keys.curve25519_from_signing_key(signer)
        except keys.KeyFormatError:
            raise RequestError(WRONG_KEY, "signer is not a valid key") from None
        if lease.holder is None or signer_curve != lease.holder:
            raise RequestError(WRONG_KEY, f"the signer does not hold lease {lease.id}")
        if not keys.verify(signer, signed_bytes(body), bytes.fromhex(body["signature"])):
            raise RequestError(BAD_SIGNATURE, "signature does not verify")
        ts = float(body["timestamp"])
        if abs(ts - wall_time) > self.freshness_s:
            raise RequestError(STALE, f"timestamp is {ts - wall_time:+.1f} s from the device clock"
                                      f" (allowed +/-{self.freshness_s:g} s)")
        state, nonce = self.replay_state, bytes.fromhex(body["nonce"])
        newest = state.high_water(REPLAY_SCOPE, signer)
        if newest is not None and ts <= newest - self.freshness_s:
            raise RequestError(STALE, f"timestamp is {newest - ts:.1f} s older than this signer's newest accepted "
                                      f"request (allowed {self.freshness_s:g} s)")
        if state.seen(REPLAY_SCOPE, signer, nonce):
            raise RequestError(REPLAYED_NONCE, "nonce already used")
        updates = self._validate(lease, body["set"], now)
        state.remember(REPLAY_SCOPE, signer, nonce, ts)
        state.raise_high_water(REPLAY_SCOPE, signer, ts)
        # a nonce further back than the window cannot come again: the high-water check refuses its request
        state.forget_tokens(REPLAY_SCOPE, signer, max(ts, newest or ts) - self.freshness_s)
        for name, value in updates.items():
            if name == "virtual_router":
                self.table.join(lease, value)
            else:
                setattr(lease, name, value)
        return lease

    def _validate(self, lease, changes: dict, now: float) -> dict:
        out = {}
        try:
            for name, value in changes.items():
                if name == "max_priority_bandwidth":
                    out[name] = check_max_priority_bandwidth(value)
                elif name == "deprioritize_non_customer":
                    out[name] = check_priority_cap(value)
                elif name == "clear_customer_bit":
                    if not isinstance(value, bool):
                        raise LeaseError("clear_customer_bit must be true or false")
                    out[name] = value
                else:
                    if value is not None:
                        if not isinstance(value, str):
                            raise LeaseError("virtual_router must be a string or null")
                        self.table.check_join(lease, value)
                        vr = self.table.virtual_routers[value]
                        if vr.expired(now):
                            raise LeaseError(f"virtual router {value} expired")
                    out[name] = value
        except LeaseError as e:
            raise RequestError(BAD_VALUE, str(e)) from None
        return out

