"""The lease hooks in the agent: config section, packet path through the LeasePlane, control commands."""
import pytest

from node.agent.agent import Agent
from node.agent.config import ConfigError, parse_config
from node.agent.control_api import CommandError
from node.leases import requests as cr
from node.cjdns import keys, labels
from node.cjdns.switch_header import SwitchHeader, is_customer, make_traffic_class, priority_of

from test_leases_plane import FakeLoop, RecordingLink   # noqa: E402  (tests/unit is on sys.path)

ME = keys.Identity.from_seed(b"lease-agent", 0)
PEER = keys.Identity.from_seed(b"lease-agent", 1)
HOLDER = keys.Identity.from_seed(b"lease-agent", 2)


def config(leases=None):
    data = {"node": "d", "private_key": ME.private_key.hex(), "control_socket": "/tmp/x", "log_file": "/tmp/x.log",
            "tun": {"ifname": "tun0"}, "udp_port": 7000,
            "peers": [{"switch_index": 0, "ifname": "eth0", "local_addr": "fd00::1", "peer_addr": "fd00::2",
                       "peer_public_key": PEER.pubkey_text}]}
    if leases is not None:
        data["leases"] = leases
    return parse_config(data)


LEASES = {"links": {"eth0": {"capacity_bps": 800_000, "leases": [
    {"id": "L", "interface": 5, "udp_port": 7001, "holder": HOLDER.pubkey_text, "clear_customer_bit": True,
     "deprioritize_non_customer": 2}]}}}


def test_config_section_is_parsed_and_checked():
    assert config().leases is None
    cfg = config(LEASES)
    assert cfg.leases.table.find("L").deprioritize_non_customer == 2
    assert cfg.leases.table.resolve(0, 0).is_free
    bad = {"links": {"eth0": {"leases": [dict(LEASES["links"]["eth0"]["leases"][0], udp_port=7000)]}}}
    with pytest.raises(ConfigError, match="udp_port"):
        config(bad)
    with pytest.raises(ConfigError, match="eth9"):
        config({"links": {"eth9": {}}})


def agent_with_leases():
    loop = FakeLoop()
    agent = Agent(config(LEASES), loop)
    node = agent.node
    node.clock = loop.clock
    node.delivered = []
    node.deliver = node.delivered.append
    node.add_link(RecordingLink(0, "eth0"))
    from node.tun_switch.lease_plane import LeasePlane
    agent.lease_plane = LeasePlane(node, node.config.leases, wall_clock=lambda: 1_700_000_000.0)
    agent.lease_plane.start(make_link=lambda index, name, peer, port: RecordingLink(index, name))
    node.add_link(RecordingLink(3, "eth_other"))
    return loop, agent, node


def test_packets_from_links_go_through_the_lease_rules():
    loop, agent, node = agent_with_leases()
    head = SwitchHeader(label=labels.one_hop_label(5), traffic_class=make_traffic_class(12, True)).pack()
    node.receive_from_link(node.links[0], head + bytes(200))
    loop.advance(loop.now + 1)
    (out,) = node.links[5].sent
    tc = SwitchHeader.unpack(out).traffic_class
    # in on eth0's free lease (customer bit kept), out on lease L: a customer keeps priority 12
    assert priority_of(tc) == 12 and is_customer(tc)
    to3 = SwitchHeader(label=labels.one_hop_label(3), traffic_class=make_traffic_class(12, True)).pack()
    node.receive_from_link(node.links[5], to3 + bytes(200))
    (out,) = node.links[3].sent
    tc = SwitchHeader.unpack(out).traffic_class
    # in on lease L (clear-customer-bit), out on a link without leases: priority kept, customer bit cleared
    assert priority_of(tc) == 12 and not is_customer(tc)


def test_control_commands():
    loop, agent, node = agent_with_leases()
    handlers = agent.handlers()
    d = handlers["leases"]({"cmd": "leases"}, None)
    assert d["interfaces"]["5"] == {"link": "eth0", "lease": "L"}
    req = cr.make_request(HOLDER.private_key, "L", {"deprioritize_non_customer": 5}, 1_700_000_000.0).decode()
    assert handlers["lease_config"]({"cmd": "lease_config", "request": req}, None)["ok"]
    assert node.config.leases.table.find("L").deprioritize_non_customer == 5
    assert handlers["lease_config"]({"cmd": "lease_config", "request": req}, None)["error"] == cr.REPLAYED_NONCE
    with pytest.raises(ValueError):      # a plane's refusal: the control API answers {"ok": false, "error"}
        handlers["lease_config"]({"cmd": "lease_config"}, None)
    plain = Agent(config(), FakeLoop())
    with pytest.raises(CommandError):
        plain.handlers()["leases"]({"cmd": "leases"}, None)
