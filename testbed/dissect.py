"""Scapy layers for the pktlab underlay and a pcap dissector (pkt-reference.md §2-§5).

What a peer link carries (node/tun_switch/peer_link.py): one UDP datagram per switch frame on the node's
``udp_port`` (the same port at both ends). By default the frame is sealed in the link's CryptoAuth session
(node/cjdns/link_session.py), so all a sniffer can read is that session::

    LinkHandshake (Hello / RepeatHello / Key / RepeatKey: sender's key, encrypted temporary key and frame)
    | LinkData (nonce, Poly1305 tag, encrypted frame)

On a link whose encryption is off (``link_crypto=False`` below; topology ``attrs: {link_crypto: false}``) the
datagram is the switch frame itself::

    CjdnsSwitch (12 B: label, congestion, S, version, label shift, traffic class)
      then, by the first u32 after it:
        0xffffffff  -> CjdnsControl (checksum, type) -> CjdnsError (cause = a truncated CjdnsSwitch frame)
                                                      | CjdnsPing | CjdnsKeyPing | CjdnsGetSnode | CjdnsRPath
                                                      | CjdnsLlAddr
        0xfffffffe/d -> CjdnsWaypoint (the next segment's label, or a waypoint's way back; then the same choice
                       again: pktlab's paths longer than a label, node/cjdns/waypoints.py)
        0..3        -> CryptoAuthHandshake (Hello / RepeatHello / Key / RepeatKey)
        otherwise   -> CjdnsSessionData (receiver's handle, CryptoAuth nonce, Poly1305 tag, ciphertext)

Route-server announcements (RouteAnnouncement, signed, §4.1) and PacketCrypt announcements (PacketCryptAnn,
1024 B, §5.2) are layers too; they are bound to a UDP port with :func:`bind_route_server_port` /
:func:`bind_packetcrypt_port`, and a UDP payload on another port is shown as a route announcement when its
Ed25519 signature verifies (so there are no false positives).

The scapy layers split fields; the meaning of every field (label text, PKT priority and customer bit, control
checksum, key text and fc address, announcement entities) comes from the node/ parsers in each layer's
``describe()``. :func:`dissect_pcap` returns one :class:`PacketSummary` per packet; :func:`format_summaries`
prints them. A malformed frame never raises: its summary carries an ``error`` note.
"""
from __future__ import annotations

import ipaddress
import re
import struct
import sys
from dataclasses import dataclass, field

from scapy.all import IPv6, UDP, Raw, PcapReader, bind_layers
from scapy.error import Scapy_Exception
from scapy.fields import (BitField, ByteEnumField, ByteField, IntEnumField, IntField, IP6Field, LEIntField,
                          LEThreeBytesField, ShortEnumField, ShortField, StrField, StrFixedLenField, XIntField,
                          XLEIntField, XLongField, XShortField)
from scapy.packet import Packet, Padding

from node.chain.packetcrypt import announcement as pc_ann
from node.route_server import announcement as rs_ann
from node.cjdns import control, cryptoauth, keys, labels, switch_header, waypoints
from testbed.topology.leases import LEASE_PORT_BASE

PEER_LINK_PORT = 7100          # the udp_port the agent harness and meshes use; more with bind_peer_port()
LEASE_PORTS = range(LEASE_PORT_BASE, LEASE_PORT_BASE + 2000)   # paid leases carry switch frames on ports of their own
PEER_PORTS = set()             # UDP ports bound to each layer (bind_*_port)
ROUTE_SERVER_PORTS = set()
PACKETCRYPT_PORTS = set()

CA_STATES = {cryptoauth.HELLO: "HELLO", cryptoauth.REPEAT_HELLO: "REPEAT_HELLO", cryptoauth.KEY: "KEY",
             cryptoauth.REPEAT_KEY: "REPEAT_KEY"}
AUTH_TYPES = {cryptoauth.AUTH_NONE: "none", cryptoauth.AUTH_PASSWORD: "password", cryptoauth.AUTH_LOGIN: "login"}
CONTROL_TYPES = {control.ERROR: "ERROR", control.PING: "PING", control.PONG: "PONG", control.KEYPING: "KEYPING",
                 control.KEYPONG: "KEYPONG", control.GETSNODE_QUERY: "GETSNODE_QUERY",
                 control.GETSNODE_REPLY: "GETSNODE_REPLY", control.RPATH_QUERY: "RPATH_QUERY",
                 control.RPATH_REPLY: "RPATH_REPLY", control.LLADDR_QUERY: "LLADDR_QUERY",
                 control.LLADDR_REPLY: "LLADDR_REPLY"}


# -- field types with cjdns text forms ---------------------------------------------------------------------

class LabelField(XLongField):
    """A u64 switch label shown as xxxx.xxxx.xxxx.xxxx."""

    def i2repr(self, pkt, x):
        return labels.label_text(x) if isinstance(x, int) else repr(x)


class PublicKeyField(StrFixedLenField):
    """A 32-byte Curve25519 key shown as its .k text and fc address."""

    def __init__(self, name, default=bytes(32)):
        super().__init__(name, default, 32)

    def i2repr(self, pkt, x):
        return key_text(x)


def key_text(key: bytes) -> str:
    if len(key) != 32:
        return f"<{len(key)}-byte key {key.hex()}>"
    ip6 = keys.address_for_key(key)
    note = "" if keys.is_valid_address(ip6) else " (not a valid cjdns address)"
    return f"{keys.pubkey_text(key)} {keys.ip6_text(ip6)}{note}"


def _original(layer: Packet) -> bytes:
    """The captured bytes from this layer to the end (not a rebuild: truncated fields stay truncated)."""
    raw = getattr(layer, "original", None)
    return bytes(raw) if raw else bytes(layer)


class _Described(Packet):
    """A layer that knows what its fields mean (``describe``) and summarises itself in one line."""

    def describe(self) -> dict:
        return {}

    def mysummary(self):
        d = self.describe()
        return f"{self.name} " + " ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, (dict, list)))


# -- switch header ------------------------------------------------------------------------------------------

class CjdnsSwitch(_Described):
    name = "cjdns switch"
    fields_desc = [
        LabelField("label", 0x13),
        BitField("congestion", 0, 7),
        BitField("suppress_errors", 0, 1),
        BitField("version", switch_header.CURRENT_VERSION, 2),
        BitField("label_shift", 0, 6),
        XShortField("traffic_class", switch_header.UNCLASSED),
    ]

    def describe(self):
        h = switch_header.SwitchHeader.unpack(_original(self)[:switch_header.SIZE].ljust(switch_header.SIZE, b"\0"))
        tc = h.traffic_class
        return {"label": labels.label_text(h.label), "congestion": h.congestion, "S": int(h.suppress_errors),
                "version": h.version, "label_shift": h.label_shift,
                "traffic_class": "unclassed" if tc == switch_header.UNCLASSED else f"{tc:#06x}",
                "priority": h.priority, "customer": h.customer}

    def guess_payload_class(self, payload):
        return _after_switch_header(payload)


def _after_switch_header(payload) -> type:
    """The layer of what follows a switch header (or a waypoint frame), by its first u32."""
    if len(payload) < 4:
        return Raw
    first = struct.unpack_from(">I", payload)[0]
    if first == control.HANDLE:
        return CjdnsControl
    if payload[:4] in (waypoints.WAYPOINT, waypoints.RETURN):
        return CjdnsWaypoint
    if first < cryptoauth.FIRST_DATA_NONCE:
        return CryptoAuthHandshake
    return CjdnsSessionData


class CjdnsWaypoint(_Described):
    """A waypoint frame (pktlab extension): WAYPOINT, the label the waypoint sends what follows on by; RETURN, a
    waypoint's label back to where the packet came from."""
    name = "pktlab waypoint"
    fields_desc = [XIntField("marker", int.from_bytes(waypoints.WAYPOINT, "big")), LabelField("label", 0x13)]

    def describe(self):
        kind = "waypoint" if self.marker == int.from_bytes(waypoints.WAYPOINT, "big") else "return"
        return {"kind": kind, "label": labels.label_text(self.label)}

    def guess_payload_class(self, payload):
        return _after_switch_header(payload)


# -- switch control messages --------------------------------------------------------------------------------

class CjdnsControl(_Described):
    name = "cjdns control"
    fields_desc = [
        XIntField("handle", control.HANDLE),
        XShortField("checksum", None),
        ShortEnumField("type", control.PING, CONTROL_TYPES),
    ]

    def post_build(self, p, pay):
        if self.checksum is None:       # filled in like the switch does, over checksum|type|body
            body = p[4:] + pay
            p = p[:4] + struct.pack(">H", control.checksum(b"\0\0" + body[2:])) + p[6:]
        return p + pay

    def describe(self):
        raw = _original(self)
        out = {"type": CONTROL_TYPES.get(self.type, f"UNKNOWN({self.type})")}
        try:
            msg = control.unframe(raw)
            out["checksum"] = "ok"
        except control.ControlError as e:
            out["checksum"] = "ok" if len(raw) >= 8 and control.checksum(raw[4:]) == 0 else "BAD"
            out["error"] = str(e)
            return out
        out.update(_describe_control(msg))
        return out


def _describe_control(msg) -> dict:
    if isinstance(msg, control.Error):
        d = {"error_type": msg.name, "cause_bytes": len(msg.cause)}
        if len(msg.cause) >= switch_header.SIZE:
            d["cause_label"] = labels.label_text(switch_header.SwitchHeader.unpack(msg.cause).label)
        return d
    if isinstance(msg, control.Ping):
        return {"version": msg.version, "data_bytes": len(msg.data)}
    if isinstance(msg, control.KeyPing):
        return {"version": msg.version, "key": key_text(msg.key), "data_bytes": len(msg.data)}
    if isinstance(msg, control.GetSnode):
        return {"version": msg.version, "snode_version": msg.snode_version, "kbps": msg.kbps,
                "snode_key": key_text(msg.snode_key) if any(msg.snode_key) else "none",
                "path_to_snode": labels.label_text(msg.path_to_snode)}
    if isinstance(msg, control.RPath):
        return {"version": msg.version, "rpath": labels.label_text(msg.rpath)}
    if isinstance(msg, control.LlAddr):
        return {"version": msg.version, "host": msg.host.hex(), "port": msg.port}
    return {}


class _ControlBody(_Described):
    def describe(self):
        return {}       # the CjdnsControl layer above describes the whole message (it checks the checksum)

    def mysummary(self):
        return self.underlayer.mysummary() if isinstance(self.underlayer, CjdnsControl) else self.name


class CjdnsError(_ControlBody):
    name = "cjdns control ERROR"
    fields_desc = [IntEnumField("error_type", 0, control.ERROR_NAMES)]

    def guess_payload_class(self, payload):
        return CjdnsSwitch if len(payload) >= switch_header.SIZE else Raw


class CjdnsPing(_ControlBody):
    name = "cjdns control PING/PONG"
    fields_desc = [XIntField("magic", control.MAGIC[control.PING]), IntField("version", 0), StrField("data", b"")]


class CjdnsKeyPing(_ControlBody):
    name = "cjdns control KEYPING/KEYPONG"
    fields_desc = [XIntField("magic", control.MAGIC[control.KEYPING]), IntField("version", 0),
                   PublicKeyField("key"), StrField("data", b"")]


class CjdnsGetSnode(_ControlBody):
    name = "cjdns control GETSNODE"
    fields_desc = [XIntField("magic", control.MAGIC[control.GETSNODE_QUERY]), IntField("version", 0),
                   IntField("snode_version", 0), IntField("kbps", 0), PublicKeyField("snode_key"),
                   LabelField("path_to_snode", 0)]


class CjdnsRPath(_ControlBody):
    name = "cjdns control RPATH"
    fields_desc = [XIntField("magic", control.MAGIC[control.RPATH_QUERY]), IntField("version", 0),
                   LabelField("rpath", 0)]


class CjdnsLlAddr(_ControlBody):
    name = "cjdns control LLADDR"
    fields_desc = [XIntField("magic", control.MAGIC[control.LLADDR_QUERY]), IntField("version", 0),
                   ByteField("addr_type", 0), ByteField("addr_len", 4), ShortField("port", 0),
                   StrField("address", b"")]


# -- CryptoAuth ------------------------------------------------------------------------------------------------

class CryptoAuthHandshake(_Described):
    name = "CryptoAuth handshake"
    fields_desc = [
        IntEnumField("nonce", cryptoauth.HELLO, CA_STATES),
        ByteEnumField("auth_type", cryptoauth.AUTH_NONE, AUTH_TYPES),
        StrFixedLenField("auth_lookup", bytes(7), 7),
        ShortField("auth_derivations", 0),
        ShortField("auth_additional", 0),
        StrFixedLenField("random_nonce", bytes(24), 24),
        PublicKeyField("public_key"),
        StrFixedLenField("tag", bytes(16), 16),
        StrFixedLenField("encrypted_temp_key", bytes(32), 32),
        StrField("encrypted_content", b""),
    ]

    def describe(self):
        raw = _original(self)
        out = {"state": CA_STATES.get(self.nonce, str(self.nonce)),
               "auth": AUTH_TYPES.get(self.auth_type, str(self.auth_type))}
        if len(raw) < cryptoauth.HANDSHAKE_SIZE:
            out["error"] = f"runt handshake: {len(raw)} of {cryptoauth.HANDSHAKE_SIZE} bytes"
        out["challenge"] = raw[4:16].hex()
        if self.auth_type != cryptoauth.AUTH_NONE:
            out["auth_lookup"] = bytes(self.auth_lookup).hex()
        out.update({"random_nonce": bytes(self.random_nonce).hex(), "key": key_text(bytes(self.public_key)),
                    "tag": bytes(self.tag).hex(), "content_bytes": len(self.encrypted_content)})
        return out


class LinkHandshake(CryptoAuthHandshake):
    """A handshake of a peer link's own session: its encrypted content is the whole switch frame."""
    name = "link handshake"


class LinkData(_Described):
    """A data packet of a peer link's session (no handle: the link names the session)."""
    name = "link data"
    fields_desc = [
        IntField("nonce", cryptoauth.FIRST_DATA_NONCE),
        StrFixedLenField("tag", bytes(16), 16),
        StrField("ciphertext", b""),
    ]

    def describe(self):
        out = {"nonce": self.nonce, "tag": bytes(self.tag).hex(), "ciphertext_bytes": len(self.ciphertext)}
        if len(_original(self)) < cryptoauth.DATA_OVERHEAD:
            out["error"] = f"runt link packet: {len(_original(self))} bytes"
        return out


def _link_layer(data: bytes):
    """The link-session layer of a peer-link datagram, by its first u32 (the CryptoAuth nonce)."""
    return LinkHandshake if len(data) >= 4 and struct.unpack_from(">I", data)[0] < cryptoauth.FIRST_DATA_NONCE \
        else LinkData


class CjdnsSessionData(_Described):
    name = "CryptoAuth data"
    fields_desc = [
        XIntField("handle", 4),
        IntField("nonce", cryptoauth.FIRST_DATA_NONCE),
        StrFixedLenField("tag", bytes(16), 16),
        StrField("ciphertext", b""),
    ]

    def describe(self):
        raw = _original(self)
        out = {"handle": f"{self.handle:#010x}", "nonce": self.nonce, "tag": bytes(self.tag).hex(),
               "ciphertext_bytes": len(self.ciphertext)}
        if len(raw) < 4 + cryptoauth.DATA_OVERHEAD:
            out["error"] = f"runt data packet: {len(raw)} bytes"
        elif self.nonce < cryptoauth.FIRST_DATA_NONCE:
            out["error"] = f"data nonce {self.nonce} is a handshake nonce"
        return out


# -- announcements ---------------------------------------------------------------------------------------------

class RouteAnnouncement(_Described):
    """A signed subnode announcement to a route server (§4.1)."""
    name = "route announcement"
    fields_desc = [
        StrFixedLenField("signature", bytes(64), 64),
        StrFixedLenField("signing_key", bytes(32), 32),
        IP6Field("snode_ip", "::"),
        XLongField("timestamp_flags", 1),
        StrField("entities", b""),
    ]

    def describe(self):
        try:
            ann = rs_ann.Announcement.parse(_original(self), verify=True)
        except rs_ann.AnnouncementError as e:
            return {"error": str(e)}
        out = {"signature": "ok", "node": ann.ip6_text, "key": ann.pubkey_text,
               "snode": keys.ip6_text(ann.snode_ip), "timestamp_ms": ann.timestamp_ms, "reset": ann.reset,
               "header_version": ann.header_version, "entities": [_entity(e) for e in ann.entities]}
        return out


def _entity(e) -> str:
    if isinstance(e, rs_ann.PeerEntity):
        verb = "withdraw" if e.label == 0 else "peer"
        return (f"{verb} {keys.ip6_text(e.ip6)} label {labels.label_text(e.label)} peerNum {e.peer_num:#06x} "
                f"mtu {e.mtu8 * 8} form {e.encoding_form}")
    if isinstance(e, rs_ann.VersionEntity):
        return f"version {e.version}"
    if isinstance(e, rs_ann.EncodingSchemeEntity):
        name = next((n for n, s in labels.SCHEMES.items() if s == e.scheme), None)
        return f"encoding scheme {name or e.scheme.serialize().hex()}"
    if isinstance(e, rs_ann.LinkStateEntity):
        return f"link state node {e.node_id} start slot {e.start_slot} {len(e.slots)} slots"
    return f"entity type {e.type} ({len(e.raw)} bytes)"


class PacketCryptAnn(_Described):
    """A 1024-byte PacketCrypt announcement (§5.2; all fields little-endian)."""
    name = "PacketCrypt announcement"
    fields_desc = [
        ByteField("version", 1),
        LEThreeBytesField("soft_nonce", 0),
        LEIntField("hard_nonce", 0),
        XLEIntField("work_bits", 0),
        LEIntField("parent_block_height", 0),
        LEIntField("content_type", 0),
        LEIntField("content_length", 0),
        StrFixedLenField("content_hash", bytes(32), 32),
        StrFixedLenField("signing_key", bytes(32), 32),
        StrFixedLenField("merkle_branch", bytes(pc_ann.MERKLE_DEPTH * 64), pc_ann.MERKLE_DEPTH * 64),
        StrFixedLenField("merkle_root", bytes(64), 64),
        StrFixedLenField("item4_prefix", bytes(pc_ann.PREFIX_SIZE), pc_ann.PREFIX_SIZE),
    ]

    def describe(self):
        raw = _original(self)
        try:
            ann = pc_ann.Announcement.parse(raw[:pc_ann.ANN_SIZE])
        except pc_ann.AnnValidationError as e:
            return {"error": str(e)}
        out = {"version": ann.version, "fast": ann.is_fast, "soft_nonce": ann.soft_nonce,
               "hard_nonce": ann.hard_nonce, "work_bits": f"{ann.work_bits:#010x}",
               "parent_block_height": ann.parent_block_height, "content_type": ann.content_type,
               "content_length": ann.content_length, "content_hash": ann.content_hash.hex(),
               "signing_key": ann.signing_key.hex() if ann.has_signing_key else "none",
               "merkle_root": ann.merkle_root.hex()[:32] + "...", "hash": ann.hash().hex()}
        if len(raw) > pc_ann.ANN_SIZE:
            out["trailing_bytes"] = len(raw) - pc_ann.ANN_SIZE
        return out


bind_layers(CjdnsControl, CjdnsError, type=control.ERROR)
for _t in (control.PING, control.PONG):
    bind_layers(CjdnsControl, CjdnsPing, type=_t)
for _t in (control.KEYPING, control.KEYPONG):
    bind_layers(CjdnsControl, CjdnsKeyPing, type=_t)
for _t in (control.GETSNODE_QUERY, control.GETSNODE_REPLY):
    bind_layers(CjdnsControl, CjdnsGetSnode, type=_t)
for _t in (control.RPATH_QUERY, control.RPATH_REPLY):
    bind_layers(CjdnsControl, CjdnsRPath, type=_t)
for _t in (control.LLADDR_QUERY, control.LLADDR_REPLY):
    bind_layers(CjdnsControl, CjdnsLlAddr, type=_t)


# -- port bindings -------------------------------------------------------------------------------------------

def _bind_udp(layer, port, registry):
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"UDP port must be 1..65535, got {port!r}")
    if port not in registry:
        bind_layers(UDP, layer, sport=port)
        bind_layers(UDP, layer, dport=port)
        registry.add(port)


def bind_peer_port(port: int) -> None:
    """Dissect UDP on ``port`` as peer-link switch frames (the agents' ``udp_port``)."""
    _bind_udp(CjdnsSwitch, port, PEER_PORTS)


def bind_route_server_port(port: int) -> None:
    _bind_udp(RouteAnnouncement, port, ROUTE_SERVER_PORTS)


def bind_packetcrypt_port(port: int) -> None:
    _bind_udp(PacketCryptAnn, port, PACKETCRYPT_PORTS)


bind_peer_port(PEER_LINK_PORT)


# -- dissection --------------------------------------------------------------------------------------------

@dataclass
class PacketSummary:
    index: int                      # 1-based, like tcpdump/wireshark frame numbers
    time: float
    length: int
    src: str = ""
    dst: str = ""
    layers: list = field(default_factory=list)      # [(layer name, {field: value})], outermost first
    notes: list = field(default_factory=list)       # dissection problems (malformed frames), never raised

    def layer(self, name: str) -> dict | None:
        """Fields of the first layer called ``name`` (None if absent)."""
        return next((d for n, d in self.layers if n == name), None)

    def all(self, name: str) -> list[dict]:
        return [d for n, d in self.layers if n == name]

    def to_dict(self) -> dict:
        return {"index": self.index, "time": self.time, "length": self.length, "src": self.src,
                "dst": self.dst, "layers": [{"layer": n, **d} for n, d in self.layers], "notes": self.notes}

    def text(self, t0: float | None = None) -> str:
        """Printed as `pktlab dissect` shows it; with t0, times are seconds since t0 (the first packet)."""
        when = f"{self.time:.6f}" if t0 is None else f"+{self.time - t0:.6f}"
        head = f"#{self.index} {when} {self.src} -> {self.dst} len {self.length}"
        lines = [head]
        depth = 1
        for name, d in self.layers:
            lines.append("    " * depth + name + ": " + _fields_text(d, "    " * (depth + 1)))
            if name == "cjdns control" and d.get("type") == "ERROR":
                depth += 1       # the cause of an error is shown indented under it
        for n in self.notes:
            lines.append(f"    !! {n}")
        return "\n".join(lines)


def _fields_text(d: dict, indent: str) -> str:
    simple = " ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, list))
    lists = "".join(f"\n{indent}{k}: {item}" for k, v in d.items() if isinstance(v, list) for item in v)
    return simple + lists


_DESCRIBED = (CjdnsSwitch, CjdnsControl, CjdnsWaypoint, CryptoAuthHandshake, CjdnsSessionData, LinkData,
              RouteAnnouncement, PacketCryptAnn)


def describe_layers(pkt: Packet) -> tuple[list, list]:
    """([(name, fields)], notes) for the pktlab layers inside a scapy packet."""
    layers, notes = [], []
    layer = pkt
    while layer is not None and not isinstance(layer, (Padding,)) and layer.name != "NoPayload":
        if isinstance(layer, _DESCRIBED):
            try:
                d = layer.describe()
            except Exception as e:      # a parser we did not foresee failing must not stop a dissection
                d = {"error": f"{type(e).__name__}: {e}"}
            layers.append((layer.name, d))
            if "error" in d:
                notes.append(f"{layer.name}: {d['error']}")
        elif isinstance(layer, Raw) and layers:
            layers.append(("raw", {"bytes": len(layer.load)}))
        layer = layer.payload if layer.payload else None
    return layers, notes


MIN_SIZE = {CjdnsSwitch: switch_header.SIZE, RouteAnnouncement: rs_ann.HEADER_SIZE, PacketCryptAnn: 1,
            LinkHandshake: cryptoauth.HANDSHAKE_SIZE, LinkData: cryptoauth.DATA_OVERHEAD}


def _dissect(layer_cls, data: bytes) -> tuple[list, list]:
    """Layers and notes of ``data`` read as ``layer_cls``; a runt is a note (scapy raises on it at the top)."""
    if len(data) < MIN_SIZE[layer_cls]:
        return [], [f"runt {layer_cls.name}: {len(data)} bytes, at least {MIN_SIZE[layer_cls]} needed"]
    try:
        pkt = layer_cls(data)
    except Exception as e:          # scapy's own field errors: report, never stop a dissection
        return [], [f"{layer_cls.name}: {type(e).__name__}: {e}"]
    return describe_layers(pkt)


def dissect_frame(frame: bytes) -> tuple[list, list]:
    """Layers and notes of one switch frame (a peer-link UDP payload)."""
    return _dissect(CjdnsSwitch, bytes(frame))


def _classify_udp(udp, ports, link_crypto=True):
    """The pktlab layer class for a UDP payload: by port, else a route announcement if its signature verifies."""
    payload = _original(udp.payload) if udp.payload else b""
    if udp.sport in ports or udp.dport in ports:
        return _link_layer(payload) if link_crypto else CjdnsSwitch
    if udp.sport in ROUTE_SERVER_PORTS or udp.dport in ROUTE_SERVER_PORTS:
        return RouteAnnouncement
    if udp.sport in PACKETCRYPT_PORTS or udp.dport in PACKETCRYPT_PORTS:
        return PacketCryptAnn
    if udp.sport == udp.dport and udp.sport in LEASE_PORTS:      # a lease's socket: same port at both ends
        return _link_layer(payload) if link_crypto else CjdnsSwitch
    if len(payload) >= rs_ann.HEADER_SIZE and _is_signed_announcement(payload):
        return RouteAnnouncement
    return None


def _is_signed_announcement(data: bytes) -> bool:
    try:
        rs_ann.Announcement.parse(data, verify=True)
        return True
    except (rs_ann.AnnouncementError, ValueError):
        return False


def summarize(pkt: Packet, index: int = 1, peer_ports=None, link_crypto=True) -> PacketSummary:
    """``link_crypto``: the peer links carry link sessions (the default); False: plaintext switch frames."""
    ports = set(peer_ports) if peer_ports is not None else PEER_PORTS
    s = PacketSummary(index, float(getattr(pkt, "time", 0.0)), len(pkt))
    ip = pkt.getlayer(IPv6)
    if ip is None and pkt.haslayer("IP"):
        ip = pkt.getlayer("IP")
    if ip is not None:
        s.src, s.dst = ip.src, ip.dst
    udp = pkt.getlayer(UDP)
    if udp is None:
        s.notes.append("not UDP: " + pkt.summary())
        return s
    s.src, s.dst = f"[{s.src}]:{udp.sport}", f"[{s.dst}]:{udp.dport}"
    layer_cls = _classify_udp(udp, ports, link_crypto)
    if layer_cls is None:
        s.notes.append(f"UDP payload of {len(udp.payload)} bytes on no pktlab port")
        return s
    s.layers, s.notes = _dissect(layer_cls, _original(udp.payload) if udp.payload else b"")
    return s


class NotACapture(ValueError):
    """The input is not a pcap or pcapng capture."""


def dissect_pcap(path, peer_ports=None, limit=None, link_crypto=True) -> list[PacketSummary]:
    """One PacketSummary per packet of a pcap/pcapng file, or a binary file object such as stdin (the first
    ``limit`` packets if given). ``peer_ports`` overrides the bound peer ports; ``link_crypto=False`` reads them as
    plaintext links."""
    out = []
    try:
        reader = PcapReader(path if hasattr(path, "read") else str(path))
    except Scapy_Exception as e:
        raise NotACapture(f"{getattr(path, 'name', path)}: not a pcap or pcapng capture ({e})") from None
    with reader:
        for i, pkt in enumerate(reader, 1):
            if limit is not None and i > limit:
                break
            out.append(summarize(pkt, i, peer_ports, link_crypto))
    return out


def format_summaries(summaries, relative: bool = False, names: dict[str, str] | None = None) -> str:
    """The summaries as text; relative: times since the first packet; names: {address: node name}, shown after
    each address they name (underlay link ends, fc00::/8 node addresses)."""
    t0 = summaries[0].time if relative and summaries else None
    text = "\n".join(s.text(t0) for s in summaries)
    if names:
        known = {ipaddress.ip_address(a).compressed: n for a, n in names.items()}
        def endpoint(m):         # n1 [fd..::1]:7100
            name = _name(m.group(1), known)
            return f"{name} {m.group(0)}" if name else m.group(0)

        def address(m):          # fc12::1 (n3)
            name = _name(m.group(0), known)
            return f"{m.group(0)} ({name})" if name else m.group(0)
        text = _ADDRESS.sub(address, _ENDPOINT.sub(endpoint, text))
    return text


_ENDPOINT = re.compile(r"\[([0-9a-fA-F:]+)\]:\d+")                    # [address]:port, as packets' ends print
_ADDRESS = re.compile(r"(?<![\[0-9a-fA-F:])[0-9a-fA-F:]*:[0-9a-fA-F:]*:[0-9a-fA-F:]*(?![\]0-9a-fA-F:])")


def _name(addr: str, known: dict[str, str]) -> str | None:
    try:
        return known.get(ipaddress.ip_address(addr).compressed)
    except ValueError:       # a time, a label: something that only looks like an address
        return None


def print_pcap(path, out=None, peer_ports=None, limit=None, relative: bool = True, names=None,
               link_crypto=True) -> int:
    """Print a dissected pcap (what ``pktlab dissect`` shows); returns the number of packets."""
    summaries = dissect_pcap(path, peer_ports, limit, link_crypto)
    print(format_summaries(summaries, relative, names), file=out or sys.stdout)
    return len(summaries)


if __name__ == "__main__":       # python -m testbed.dissect file.pcap [--plain-links]
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--plain-links"]):
        sys.exit("usage: python -m testbed.dissect FILE.pcap [--plain-links]")
    print_pcap(sys.argv[1], link_crypto=sys.argv[2:] != ["--plain-links"])
