"""Fair share in the agent (node/tun_switch/fair_share_plane.py): config section, the egress queues in the Forwarder's
path, the control command. In-memory links, a fake clock."""
import struct

import pytest

from node.agent.agent import Agent
from node.agent.config import ConfigError, parse_config
from node.cjdns import keys, labels
from node.cjdns.switch_header import SwitchHeader

from test_leases_plane import FakeLoop, RecordingLink   # noqa: E402  (tests/unit is on sys.path)

ME = keys.Identity.from_seed(b"fair-share", 0)
PEER = keys.Identity.from_seed(b"fair-share", 1)
RATE = 800_000          # bit/s: 100 packets of 1000 bytes a second


def config(fair_share=None, leases=None):
    data = {"node": "d", "private_key": ME.private_key.hex(), "control_socket": "/tmp/x", "log_file": "/tmp/x.log",
            "tun": {"ifname": "tun0"}, "udp_port": 7000,
            "peers": [{"switch_index": i, "ifname": name, "local_addr": "fd00::1", "peer_addr": "fd00::2",
                       "peer_public_key": PEER.pubkey_text} for i, name in ((0, "eth_in"), (2, "eth_out"))]}
    if fair_share is not None:
        data["fair_share"] = fair_share
    if leases is not None:
        data["leases"] = leases
    return parse_config(data)


def agent(fair_share={"links": {"eth_out": {"rate_bps": RATE}}}):
    loop = FakeLoop()
    a = Agent(config(fair_share), loop)
    a.node.clock = loop.clock
    for index, name in ((0, "eth_in"), (2, "eth_out")):
        a.node.add_link(RecordingLink(index, name))
    a.fair_share.start()
    return loop, a, a.node


def packet(handle, size=1000):
    """A session data packet towards eth_out; ``handle`` (the receiver's session) tells the flows apart."""
    return SwitchHeader(label=labels.one_hop_label(2)).pack() + struct.pack(">I", handle) + bytes(size - 16)


def offer(loop, node, rates, seconds, start):
    """Flows (handle -> packets per second) arriving on eth_in for ``seconds``; {handle: packets sent on}."""
    t, step, credit = start, 0.001, {h: 0.0 for h in rates}
    before = len(node.links[2].sent)
    while t < start + seconds:
        loop.advance(t)
        for h, pps in rates.items():
            credit[h] += pps * step
            while credit[h] >= 1:
                credit[h] -= 1
                node.receive_from_link(node.links[0], packet(h))
        t += step
    loop.advance(t)
    sent = node.links[2].sent[before:]
    return {h: sum(1 for p in sent if p[12:16] == struct.pack(">I", h)) for h in rates}


def test_two_flows_share_the_link_equally_whatever_they_offer():
    loop, a, node = agent()
    offer(loop, node, {7: 300, 9: 100}, 2.0, loop.now)                 # 4x the capacity between them
    sent = offer(loop, node, {7: 300, 9: 100}, 4.0, loop.now)
    assert sum(sent.values()) == pytest.approx(400, rel=0.05)           # the link's pace: 100 packets/s
    assert sent[7] == pytest.approx(sent[9], rel=0.1), sent
    assert node.drops["fair_share_queue_full"] > 500
    d = a.fair_share.describe()["links"]["eth_out"]
    assert d["active_flows"] == 2 and d["fair_share_bps"] == RATE // 2
    assert all(f["share_bps"] == pytest.approx(RATE / 2, rel=0.01) for f in d["flows"])


def test_a_flow_under_its_share_gets_all_it_sends():
    loop, a, node = agent()
    offer(loop, node, {1: 20, 2: 300}, 1.0, loop.now)                  # past the first burst (64 KiB)
    sent = offer(loop, node, {1: 20, 2: 300}, 4.0, loop.now)
    assert sent[1] == pytest.approx(80, abs=2) and sent[2] == pytest.approx(320, rel=0.05)


def test_own_link_pings_skip_the_queue():
    loop, a, node = agent()
    offer(loop, node, {1: 500}, 0.5, loop.now)                         # a long backlog
    before = len(node.links[2].sent)
    node.ping_link(node.links[2])
    assert len(node.links[2].sent) == before + 1 and node.links[2].sent[-1][12:16] == b"\xff" * 4


def test_the_control_command_switches_it_on_and_off():
    loop, a, node = agent(fair_share=None)
    handler = a.handlers()["fair_share"]
    assert handler({"cmd": "fair_share"}, None) == {"links": {}}
    on = handler({"cmd": "fair_share", "ifname": "eth_out", "rate_bps": RATE, "buffer_s": 1.0}, None)
    assert on["links"]["eth_out"]["rate_bps"] == RATE and on["links"]["eth_out"]["buffer_s"] == 1.0
    for i in range(100):
        node.receive_from_link(node.links[0], packet(i % 3))
    assert len(node.links[2].sent) < 100                                # past the burst, the rest waits its turn
    handler({"cmd": "fair_share", "ifname": "eth_out", "rate_bps": None}, None)
    assert len(node.links[2].sent) == 100                               # switched off: the queue leaves at once
    assert a.fair_share.describe() == {"links": {}}
    node.receive_from_link(node.links[0], packet(1))
    assert len(node.links[2].sent) == 101                               # and nothing waits any more


@pytest.mark.parametrize("req, message", [
    ({"ifname": "eth9", "rate_bps": RATE}, "no peer link 'eth9'"),
    ({"ifname": 3, "rate_bps": RATE}, '"ifname" must be a string'),
    ({"ifname": "eth_out"}, 'needs "rate_bps"'),
    ({"ifname": "eth_out", "rate_bps": -1}, "rate_bps"),
    ({"ifname": "eth_out", "rate_bps": RATE, "buffer_s": 99}, "buffer_s"),
])
def test_bad_commands_are_refused_by_name(req, message):
    loop, a, node = agent(fair_share=None)
    with pytest.raises(ValueError, match=message):
        a.handlers()["fair_share"](dict(req, cmd="fair_share"), None)
    assert a.fair_share.describe() == {"links": {}} and not node.forwarder.egress    # nothing half switched on


@pytest.mark.parametrize("section, field", [
    ({"links": {"eth9": {"rate_bps": RATE}}}, "fair_share.links.eth9"),
    ({"links": {"eth_out": {"rate_bps": 1.5}}}, "fair_share.links.eth_out.rate_bps"),
    ({"links": {"eth_out": {"rate": RATE}}}, "fair_share.links.eth_out"),
    ({"eth_out": {}}, "fair_share"),
])
def test_bad_config_sections_are_named(section, field):
    with pytest.raises(ConfigError, match=field):
        config(section)


def test_a_link_the_leases_pace_cannot_also_be_shared():
    leases = {"links": {"eth_out": {"capacity_bps": 800_000, "leases": []}}}
    with pytest.raises(ConfigError, match="fair_share.links.eth_out: the lease plane paces this link"):
        config({"links": {"eth_out": {"rate_bps": RATE}}}, leases)
    assert config({"links": {"eth_in": {"rate_bps": RATE}}}, leases).fair_share == {"eth_in": (RATE, 0.2)}
