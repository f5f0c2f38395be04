"""Conformance checks for the ``cjdns.*`` vector kinds (tests/vectors/README.md).

Each check recomputes the expected fields with the protocol code and raises ``Mismatch`` on a difference.
"""
from __future__ import annotations

from node.conformance import Mismatch, expect

from . import keys, labels
from .cryptoauth import hash_password
from .labels import CANONICAL, SCHEMES, LabelError, LabelTooLong
from .switch import Switch
from .switch_header import SwitchHeader


def _int(v) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _hex(n: int) -> str:
    return hex(n)


def _scheme(name: str):
    if name not in SCHEMES:
        raise Mismatch(f"unknown scheme {name!r}")
    return SCHEMES[name]


def check_address(v):
    if v.get("private_key"):
        ident = keys.Identity.from_private_key(v["private_key"])
        if "public_key" in v:
            expect("public_key", ident.pubkey_text, v["public_key"])
        pk = ident.public_key
    elif "public_key" in v:
        pk = keys.parse_pubkey_text(v["public_key"])
    else:
        pk = bytes.fromhex(v["public_key_hex"])
    if "public_key_hex" in v:
        expect("public_key_hex", pk.hex(), v["public_key_hex"])
    ip6 = keys.address_for_key(pk)
    expect("valid", keys.is_valid_address(ip6), v.get("valid", True))
    if "ip6" in v:
        expect("ip6", keys.ip6_text(ip6), v["ip6"])


def check_base32(v):
    data = bytes.fromhex(v["hex"])
    expect("text", keys.base32_encode(data), v["text"])
    expect("decode", keys.base32_decode(v["text"]).hex(), v["hex"])


def _label_or(fn, too_long: str = "too_long") -> str:
    """The label as hex, or the vector's words for a label that is too long / cannot be built."""
    try:
        return _hex(fn())
    except LabelTooLong:
        return too_long
    except LabelError:
        return "invalid"


def check_splice(v):
    got = _label_or(lambda: labels.splice(_int(v["go_here"]), _int(v["via_here"])))
    expect("result", got, v["result"])


def check_splice_path(v):
    got = _label_or(lambda: labels.splice_path([_int(h) for h in v["hops"]]))
    expect("result", got, v["result"])


def check_unsplice(v):
    expect("result", _hex(labels.unsplice(_int(v["full"]), _int(v["mid"]))), v["result"])


def check_routes_through(v):
    expect("result", labels.routes_through(_int(v["dest"]), _int(v["mid"])), v["result"])


def check_is_one_hop(v):
    expect("result", labels.is_one_hop(_scheme(v["scheme"]), _int(v["label"])), v["result"])


def check_convert_label(v):
    to = v["to_form"]
    to = CANONICAL if to == "canonical" else int(to)
    # cjdns EncodingScheme_convertLabel answers INVALID for every failure, too long included
    got = _label_or(lambda: labels.convert_label(_scheme(v["scheme"]), _int(v["label"]), to), "invalid")
    expect("result", got, v["result"])


def check_build_label(v):
    hops = [tuple(None if x is None else _int(x) for x in hop) for hop in v["hops"]]
    label, path = labels.build_label(hops)
    expect("path", [_hex(p) for p in path], [_hex(_int(p)) for p in v["path"]])
    expect("label", _hex(label), _hex(_int(v["label"])))


def check_scheme_serialize(v):
    scheme = labels.EncodingScheme(tuple(tuple(f) for f in v["forms"]))
    expect("hex", scheme.serialize().hex(), v["hex"])
    expect("parse", labels.EncodingScheme.parse(bytes.fromhex(v["hex"])), scheme)


def check_number_compress(v):
    _scheme(v.get("scheme", "V358"))
    expect("label", _hex(labels.one_hop_label(int(v["interface"]))), _hex(_int(v["label"])))


def check_switch_header(v):
    raw = bytes.fromhex(v["hex"])
    h = SwitchHeader.unpack(raw)
    expect("label", _hex(h.label), _hex(_int(v["label"])))
    for name in ("congestion", "suppress_errors", "version", "label_shift", "traffic_class"):
        if name in v:
            want = v[name]
            got = getattr(h, name)
            expect(name, got, _int(want) if isinstance(want, str) else want)
    expect("pack", h.pack().hex(), v["hex"])


def check_switch_forward(v):
    _scheme(v.get("scheme", "V358"))
    sw = Switch()
    for i in range(257):
        if i != 1:
            sw.add_interface(i)
    src = int(v["source_interface"])
    out = sw.receive(src, SwitchHeader(_int(v["label"])).pack() + b"\x00" * 8)
    if "error" in v:
        if len(out) != 1 or out[0][0] != src or not SwitchHeader.unpack(out[0][1]).suppress_errors:
            raise Mismatch(f"error: expected {v['error']} back to {src}, got {out!r}")
        from . import control
        err = control.unframe(out[0][1][12:])
        expect("error", err.name, v["error"])
        return
    if len(out) != 1:
        raise Mismatch(f"expected one forwarded packet, got {len(out)}")
    dest, pkt = out[0]
    h = SwitchHeader.unpack(pkt)
    if h.suppress_errors and dest == src and pkt[12:16] == b"\xff" * 4:
        from . import control
        raise Mismatch(f"switch answered with error {control.unframe(pkt[12:]).name}")
    expect("dest_interface", dest, int(v["dest_interface"]))
    expect("out_label", _hex(h.label), _hex(_int(v["out_label"])))


def check_announcement(v):
    from node.route_server.announcement import Announcement, AnnouncementError
    try:
        ann = Announcement.parse(bytes.fromhex(v["hex"]))
    except AnnouncementError:
        expect("valid", False, v["valid"])
        return
    except ValueError as e:
        raise Mismatch(f"not valid hex: {e}")
    expect("valid", True, v["valid"])
    if not v["valid"]:
        return
    expect("public_key", ann.pubkey_text, v["public_key"])
    expect("ip6", ann.ip6_text, v["ip6"])
    expect("snode_ip6", keys.ip6_text(ann.snode_ip), v["snode_ip6"])
    expect("timestamp_ms", ann.timestamp_ms, v["timestamp_ms"])
    expect("reset", ann.reset, v["reset"])
    if "version" in v:
        expect("version", ann.protocol_version, v["version"])
    if "peers" in v:
        got = [{"ip6": keys.ip6_text(p.ip6), "label": _hex(p.label), "peer_num": p.peer_num, "mtu8": p.mtu8,
                "encoding_form": p.encoding_form} for p in ann.peers]
        want = [dict(p, label=_hex(_int(p["label"]))) for p in v["peers"]]
        want = [{k: p[k] for k in ("ip6", "label", "peer_num", "mtu8", "encoding_form") if k in p} for p in want]
        got = [{k: g[k] for k in w} for g, w in zip(got, want)] if len(got) == len(want) else got
        expect("peers", got, want)


def check_auth_lookup(v):
    login = v.get("login")
    _, lookup = hash_password(v["password"].encode(), int(v["auth_type"]),
                              login.encode() if login is not None else None)
    expect("lookup", lookup.hex(), v["lookup"])


CHECKS = {
    "cjdns.address": check_address,
    "cjdns.base32": check_base32,
    "cjdns.splice": check_splice,
    "cjdns.splice_path": check_splice_path,
    "cjdns.unsplice": check_unsplice,
    "cjdns.routes_through": check_routes_through,
    "cjdns.is_one_hop": check_is_one_hop,
    "cjdns.convert_label": check_convert_label,
    "cjdns.build_label": check_build_label,
    "cjdns.scheme_serialize": check_scheme_serialize,
    "cjdns.number_compress": check_number_compress,
    "cjdns.switch_header": check_switch_header,
    "cjdns.switch_forward": check_switch_forward,
    "cjdns.announcement": check_announcement,
    "cjdns.auth_lookup": check_auth_lookup,
}
