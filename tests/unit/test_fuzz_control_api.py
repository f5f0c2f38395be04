"""Fuzz: the agent's control socket, one request line at a time, into a real agent's command handlers (a node
with a real peer link on ::1, a route server, a lease plane with a paid lease).

Must hold: every line gets an answer (or, for ping and shutdown, a later one), an answer JSON can carry; a
refusal is a clear error, never "internal error"; nothing is caught at the node's handler edges."""
import json
import socket
import tempfile

from hypothesis import strategies as st

from node.agent.agent import Agent
from node.agent.config import parse_config
from node.agent.control_api import ControlServer
from node.tun_switch.lease_plane import LeasePlane
from node.tun_switch.memory_links import ManualLoop
from node.tun_switch.peer_link import PeerLink
from node.leases import requests as cr
from node.cjdns import keys

from fuzzing import harness

ME = keys.Identity.from_seed(b"fuzz-control", 0)
PEER = keys.Identity.from_seed(b"fuzz-control", 1)
HOLDER = keys.Identity.from_seed(b"fuzz-control", 2)
T0 = 1_700_000_000.0


def free_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


TMP = tempfile.TemporaryDirectory(prefix="pktlab-fuzz-control-")     # removed at exit


def agent():
    tmp = TMP.name
    cfg = parse_config({
        "node": "f", "private_key": ME.private_key.hex(), "control_socket": f"{tmp}/agent.sock",
        "log_file": f"{tmp}/agent.log", "tun": {"ifname": "tun0"}, "udp_port": free_port(),
        "peers": [{"switch_index": 2, "ifname": "veth0", "local_addr": "::1", "peer_addr": "::1",
                   "peer_public_key": PEER.pubkey_text}],
        "route_server": {"serve": True},
        "leases": {"links": {"veth0": {"capacity_bps": 1_000_000, "leases": [
            {"id": "L", "interface": 5, "udp_port": free_port(), "holder": HOLDER.pubkey_text}]}}}})
    loop = ManualLoop()
    a = Agent(cfg, loop)
    p = cfg.peers[0]
    a.node.add_link(PeerLink(p.switch_index, p.ifname, p.local_addr, p.peer_addr, free_port(), loop=loop))
    a.lease_plane = LeasePlane(a.node, cfg.leases, wall_clock=lambda: T0)
    a.lease_plane.start(make_link=lambda index, name, peer, port: PeerLink(index, name, "::1", "::1", free_port(),
                                                                          loop=loop))
    server = ControlServer(cfg.control_socket, loop, a.handlers(), a.node.errors)
    return a, server


AGENT, SERVER = agent()
COMMANDS = sorted(AGENT.handlers())
json_value = st.recursive(st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.integers(-5, 70000)
                          | st.floats() | st.text(max_size=20),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                          max_leaves=10)
number = st.one_of(st.integers(-10**400, 10**400), st.sampled_from([10**400, -10**400, 2**64, 10**20]),
                   st.integers(-5, 70000), st.floats(), st.booleans())
link_params = st.dictionaries(st.sampled_from(["delay_s", "jitter_s", "loss", "duplicate", "reorder", "corrupt",
                                               "rate_bps", "reset", "bogus"]), number | json_value, max_size=3)
arg_values = {
    "ifname": st.one_of(st.just("veth0"), st.just("veth0"), st.just("veth0:L"), st.just("nope"), json_value),
    "params": link_params | json_value,
    "paths": st.dictionaries(st.sampled_from([PEER.ip6_text, "fc00::1", "x"]),
                             st.fixed_dictionaries({"public_key": st.sampled_from([PEER.pubkey_text, "k"]),
                                                    "label": st.sampled_from(["0000.0000.0000.0013", "zz"])})
                             | json_value, max_size=2) | json_value,
    "dest": st.sampled_from([PEER.ip6_text, "fc00::1", "::1", "x"]) | json_value,
    "timeout_s": number, "size": number, "offset_s": number, "run": json_value, "count": number,
    "kind": st.sampled_from(["forged", "replayed", "skewed"]) | json_value,
    "src": st.sampled_from([ME.ip6_text, PEER.ip6_text]) | json_value,
    "dst": st.sampled_from([ME.ip6_text, PEER.ip6_text]) | json_value,
    "request": st.sampled_from([cr.make_request(HOLDER.private_key, "L", {"max_priority_bandwidth": 10 ** 400},
                                                T0).decode(),
                                cr.make_request(HOLDER.private_key, "L", {"deprioritize_non_customer": 3},
                                                T0).decode()]) | json_value,
    "delay_s": number, "loss": number, "rate_bps": number, "reset": json_value,
}
ARGS = {"set_link": ("params", "delay_s", "loss", "rate_bps", "reset"), "set_paths": ("paths",),
        "ping": ("dest", "timeout_s", "size"), "lease_config": ("request",), "set_clock": ("offset_s",),
        "rs_service": ("run",), "rs_inject": ("kind", "count"), "rs_route": ("src", "dst")}
request = st.one_of([st.fixed_dictionaries({"cmd": st.just(c)} | ({"ifname": arg_values["ifname"]}
                                                                   if c == "set_link" else {}),
                                           optional={k: arg_values[k] for k in ARGS.get(c, ())})
                     for c in COMMANDS])
line = st.one_of(
    request.map(lambda r: json.dumps(r).encode()),
    request.map(lambda r: json.dumps(r).encode()),                   # (twice: most lines are commands)
    st.fixed_dictionaries({"cmd": json_value}, optional=arg_values).map(lambda r: json.dumps(r).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    st.tuples(st.sampled_from([b"[", b"{\"a\":"]), st.integers(0, 50_000)).map(lambda t: t[0] * t[1]),
)


@harness(line, ci=500)
def test_fuzz_control_api(data):
    later = []
    errors = dict(AGENT.node.errors.counts)
    answer = SERVER.answer(data, later.append)
    for body in ([answer] if answer is not None else []) + later:
        json.dumps(body)                                  # it can be sent
        if body.get("ok") is False:
            assert isinstance(body["error"], str) and "internal error" not in body["error"], body
    assert AGENT.node.errors.counts == errors
