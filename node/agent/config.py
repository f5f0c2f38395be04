"""The node agent's configuration file (JSON, written by the orchestrator): load and validate.

Every problem raises ConfigError naming the file and the field, so the agent can exit with a clear message.

``state_dir`` (optional): an existing directory where the node keeps what must outlive its process (the replay
high-water marks of node/replay_state.py, in ``replay.sqlite``). Without it that state lives in memory only.
"""

import ipaddress
import json
import os
import time
from dataclasses import dataclass, field

from node.cjdns import keys, labels
from node.cjdns.paths import parse_path_table
from node.leases.config import parse_lease_config
from node.leases.table import LeaseError
from node.tun_switch.fair_share_plane import parse_settings as parse_fair_share
from node.tun_switch.link_emulation import LinkParams
from node.tun_switch.route_server_plane import parse_settings

DEFAULT_TUN_MTU = 65000      # fits a 65535 veth MTU with our 100 bytes of handshake overhead + UDP/IPv6
MIN_TUN_MTU = 1280
MAX_TUN_MTU = 65535
MAX_SWITCH_INDEX = (1 << labels.MAX_HUB_BITS) - 1   # V358 numbers 0..256; a hub's wider scheme up to this

TOP_KEYS = {"node", "private_key", "control_socket", "control_socket_owner", "log_file", "tun", "udp_port", "peers",
            "paths", "link_emulation", "leases", "route_server", "state_dir", "fair_share"}
REQUIRED = {"node", "private_key", "control_socket", "log_file", "tun", "udp_port", "peers"}
PEER_KEYS = {"switch_index", "ifname", "local_addr", "peer_addr", "peer_public_key", "peer_name", "link_crypto"}
OPTIONAL_PEER_KEYS = {"peer_name", "link_crypto"}


class ConfigError(ValueError):
    pass


@dataclass
class PeerConfig:
    switch_index: int
    ifname: str
    local_addr: str
    peer_addr: str
    peer_public_key: bytes
    peer_name: str = ""
    link_crypto: bool = True     # frames on this link ride in a CryptoAuth session with the peer (cjdns)


@dataclass
class AgentConfig:
    node: str
    identity: keys.Identity
    control_socket: str
    log_file: str
    tun_ifname: str
    tun_mtu: int
    udp_port: int
    peers: list
    paths: dict = field(default_factory=dict)            # raw table (validated)
    link_emulation: dict = field(default_factory=dict)   # ifname -> LinkParams
    raw: dict = field(default_factory=dict)
    leases: object = None       # tun_switch.lease_config.LeaseConfig when the config has "leases"
    route_server: object = None  # tun_switch.route_server_plane.RouteServerSettings when it has "route_server"
    state_dir: str | None = None  # where state that must outlive the process is kept (None: in memory)
    fair_share: dict = field(default_factory=dict)  # ifname -> (rate_bps, buffer_s): links shared per flow
    control_socket_owner: int | None = None  # uid the socket is handed to (the SSH user reaching it from afar)


def load_config(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    return parse_config(data, str(path))


def parse_config(data, source="config"):
    def fail(where, msg):
        raise ConfigError(f"{source}: {where}: {msg}")

    if not isinstance(data, dict):
        fail("top level", "expected a JSON object")
    unknown = set(data) - TOP_KEYS
    if unknown:
        fail(", ".join(sorted(unknown)), f"unknown field (known: {', '.join(sorted(TOP_KEYS))})")
    missing = REQUIRED - set(data)
    if missing:
        fail(", ".join(sorted(missing)), "missing required field")

    node = _string(data, "node", fail)
    try:
        identity = keys.Identity.from_private_key(data["private_key"]) \
            if isinstance(data["private_key"], str) and len(data["private_key"]) == 64 else None
    except ValueError:
        identity = None
    if identity is None:
        fail("private_key", "expected 64 hex characters")
    if not identity.valid:
        fail("private_key", f"its address {identity.ip6_text} is not in fc00::/8 (generate keys until it is)")

    control_socket = _string(data, "control_socket", fail)
    if len(control_socket.encode()) > 107:
        fail("control_socket", "a Unix socket path must be shorter than 108 bytes")
    if not os.path.isdir(os.path.dirname(os.path.abspath(control_socket))):
        fail("control_socket", f"directory {os.path.dirname(os.path.abspath(control_socket))} does not exist")
    owner = data.get("control_socket_owner")
    if owner is not None and (not _is_int(owner) or not 0 <= owner < 1 << 32):
        fail("control_socket_owner", f"expected a user id (integer), got {owner!r}")
    log_file = _string(data, "log_file", fail)
    if not os.path.isdir(os.path.dirname(os.path.abspath(log_file))):
        fail("log_file", f"directory {os.path.dirname(os.path.abspath(log_file))} does not exist")

    tun = data["tun"]
    if not isinstance(tun, dict) or not set(tun) <= {"ifname", "mtu"} or "ifname" not in tun:
        fail("tun", 'expected {"ifname": str, "mtu": int}')
    tun_ifname = _string(tun, "ifname", fail, "tun.ifname")
    _check_ifname(tun_ifname, "tun.ifname", fail)
    tun_mtu = tun.get("mtu", DEFAULT_TUN_MTU)
    if not _is_int(tun_mtu) or not MIN_TUN_MTU <= tun_mtu <= MAX_TUN_MTU:
        fail("tun.mtu", f"expected an integer in {MIN_TUN_MTU}..{MAX_TUN_MTU}, got {tun_mtu!r}")

    udp_port = data["udp_port"]
    if not _is_int(udp_port) or not 1 <= udp_port <= 65535:
        fail("udp_port", f"expected an integer in 1..65535, got {udp_port!r}")

    if not isinstance(data["peers"], list):
        fail("peers", "expected a list")
    peers = []
    seen_index, seen_ifname = set(), set()
    for i, p in enumerate(data["peers"]):
        where = f"peers[{i}]"
        if not isinstance(p, dict):
            fail(where, "expected an object")
        unknown = set(p) - PEER_KEYS
        missing = PEER_KEYS - OPTIONAL_PEER_KEYS - set(p)
        if unknown:
            fail(where, f"unknown field(s) {', '.join(sorted(unknown))}")
        if missing:
            fail(where, f"missing field(s) {', '.join(sorted(missing))}")
        index = p["switch_index"]
        if not _is_int(index) or index == 1 or not 0 <= index <= MAX_SWITCH_INDEX:
            fail(f"{where}.switch_index", f"expected an integer in 0..{MAX_SWITCH_INDEX} other than 1 "
                                          f"(1 is the router), got {index!r}")
        if index in seen_index:
            fail(f"{where}.switch_index", f"{index} is used by another peer")
        seen_index.add(index)
        ifname = _string(p, "ifname", fail, f"{where}.ifname")
        _check_ifname(ifname, f"{where}.ifname", fail)
        if ifname in seen_ifname:
            fail(f"{where}.ifname", f"{ifname} is used by another peer")
        seen_ifname.add(ifname)
        addrs = []
        for k in ("local_addr", "peer_addr"):
            try:
                addrs.append(str(ipaddress.IPv6Address(p[k])))
            except (ValueError, TypeError):
                fail(f"{where}.{k}", f"expected an IPv6 address, got {p[k]!r}")
        try:
            pk = keys.parse_pubkey_text(p["peer_public_key"])
        except ValueError as e:
            fail(f"{where}.peer_public_key", str(e))
        name = p.get("peer_name", "")
        if not isinstance(name, str):
            fail(f"{where}.peer_name", "expected a string")
        crypto = p.get("link_crypto", True)
        if not isinstance(crypto, bool):
            fail(f"{where}.link_crypto", f"expected true or false, got {crypto!r}")
        peers.append(PeerConfig(index, ifname, addrs[0], addrs[1], pk, name, crypto))

    paths = data.get("paths", {})
    try:
        parse_path_table(paths)
    except ValueError as e:
        fail("paths", str(e))

    emulation = {}
    le = data.get("link_emulation", {})
    if not isinstance(le, dict):
        fail("link_emulation", "expected an object mapping ifname -> parameters")
    for ifname, params in le.items():
        if ifname not in seen_ifname:
            fail(f"link_emulation.{ifname}", "no peer link uses this ifname")
        try:
            emulation[ifname] = LinkParams.from_dict(params, f"link_emulation.{ifname}")
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None

    route_server = None
    if "route_server" in data:
        try:
            route_server = parse_settings(data["route_server"])
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None

    state_dir = None
    if "state_dir" in data:
        state_dir = _string(data, "state_dir", fail)
        if not os.path.isdir(state_dir):
            fail("state_dir", f"directory {state_dir} does not exist")

    leases = _leases(data, peers, udp_port, source)
    fair_share = {}
    if "fair_share" in data:
        try:
            fair_share = parse_fair_share(data["fair_share"], seen_ifname)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
        paced = {name for name, link in leases.table.links.items() if link.capacity_bps} if leases else set()
        for ifname in sorted(paced & set(fair_share)):
            fail(f"fair_share.links.{ifname}", "the lease plane paces this link: it cannot also share it fairly")

    return AgentConfig(node, identity, control_socket, log_file, tun_ifname, tun_mtu, udp_port, peers,
                       paths, emulation, data, leases, route_server, state_dir, fair_share, owner)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _string(obj, key, fail, where=None):
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        fail(where or key, f"expected a non-empty string, got {v!r}")
    return v


def _check_ifname(name, where, fail):
    if len(name.encode()) > 15 or "/" in name or " " in name:
        fail(where, f"{name!r} is not a valid interface name (at most 15 characters, no '/' or spaces)")


def _leases(data, peers, udp_port, source):
    """The "leases" section (tun_switch/lease_config.py) or None; its Unix expiry times become monotonic."""
    if "leases" not in data:
        return None
    offset = time.monotonic() - time.time()
    try:
        return parse_lease_config(data["leases"], {p.ifname: p.switch_index for p in peers},
                                  wall_to_clock=lambda t: t + offset, reserved_ports={udp_port})
    except LeaseError as e:
        raise ConfigError(f"{source}: {e}") from None
