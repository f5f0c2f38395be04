"""The lease rules inside a running Node (node/tun_switch/lease_plane.py), without root: in-memory links, a fake clock."""
import json
import pytest


from node.agent.config import parse_config
from node.tun_switch.node import Node
from node.tun_switch.lease_plane import AGENT_PACE, LeasePlane
from node.tun_switch.link_emulation import LinkEmulator
from node.tun_switch.liveness import Liveness
from node.leases import requests as cr
from node.cjdns import control, keys, labels
from node.leases.config import parse_lease_config
from node.cjdns.switch_header import SIZE as HEADER_SIZE, SwitchHeader, is_customer, make_traffic_class, priority_of

HOLDER = keys.Identity.from_seed(b"lease-plane", 9)


class FakeLoop:
    def __init__(self):
        self.now = 100.0
        self.timers = []

    def clock(self):
        return self.now

    def add_reader(self, *a):
        pass

    def remove_reader(self, *a):
        pass

    def call_at(self, when, fn, *args):
        self.timers.append((when, fn, args))
        return None

    def call_later(self, delay, fn, *args):
        return None

    call_every = call_later

    def advance(self, to):
        """Run the timers due up to ``to`` in time order."""
        while True:
            due = sorted((t for t in self.timers if t[0] <= to), key=lambda t: t[0])
            if not due:
                break
            self.timers.remove(due[0])
            self.now = max(self.now, due[0][0])
            due[0][1](*due[0][2])
        self.now = to


class RecordingLink:
    def __init__(self, switch_index, ifname):
        self.switch_index, self.ifname = switch_index, ifname
        self.peer_name, self.peer_addr, self.peer_public_key = "x", "fd00::1", None
        self.local_addr = "fd00::2"
        self.emulator = LinkEmulator()
        self.rx_packets = self.rx_bytes = self.tx_packets = 0
        self.liveness = Liveness()
        self.rtt_ms = None
        self.was_up = False
        self.pings_sent = 0
        self.sent = []

    emulated = False
    session = None           # a plaintext link: what arrives is the frame

    def send(self, packet, on_fail=None):
        self.tx_packets += 1
        self.sent.append(packet)

    def open(self, packet):
        return packet


def plane(lease_spec):
    """Node D: eth_in (index 0, a customer's link) and eth_out (index 2, a congested 800 kbit/s link);
    eth_in carries lease "cust" on interface 4, eth_out lease "up" on interface 5."""
    loop = FakeLoop()
    ident = keys.Identity.from_seed(b"lease-plane", 0)
    cfg = parse_config({"node": "d", "private_key": ident.private_key.hex(), "control_socket": "/tmp/x",
                        "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})
    node = Node(cfg, loop, clock=loop.clock)
    node.delivered = []
    node.deliver = node.delivered.append
    for index, name in ((0, "eth_in"), (2, "eth_out")):
        node.add_link(RecordingLink(index, name))
    lc = parse_lease_config(lease_spec, {"eth_in": 0, "eth_out": 2})
    lp = LeasePlane(node, lc, wall_clock=lambda: 1_700_000_000.0)
    lp.start(make_link=lambda index, name, peer, port: RecordingLink(index, name))
    return loop, node, lp


def spec(cust=None, up=None):
    base_cust = {"id": "cust", "interface": 4, "udp_port": 7001, "holder": HOLDER.pubkey_text}
    base_up = {"id": "up", "interface": 5, "udp_port": 7002, "holder": HOLDER.pubkey_text}
    base_cust.update(cust or {})
    base_up.update(up or {})
    return {"links": {"eth_in": {"leases": [base_cust]},
                      "eth_out": {"capacity_bps": 800_000, "leases": [base_up]}}}


def packet(to_index, priority, customer=True, size=1000):
    label = labels.one_hop_label(to_index)
    head = SwitchHeader(label=label, traffic_class=make_traffic_class(priority, customer)).pack()
    return head + bytes(size - len(head))


def test_lease_links_are_opened_with_their_own_interfaces():
    _, node, _ = plane(spec())
    assert sorted(node.links) == [0, 2, 4, 5]
    assert node.links[5].ifname == "eth_out:up"


def test_customer_bit_cleared_and_priority_capped_on_the_way_through():
    loop, node, lp = plane(spec(cust={"clear_customer_bit": True}, up={"deprioritize_non_customer": 3}))
    lp.forward(4, packet(5, 12))
    loop.advance(loop.now + 1)
    (out,) = node.links[5].sent
    tc = SwitchHeader.unpack(out).traffic_class
    assert priority_of(tc) == 3 and not is_customer(tc)


def test_customers_keep_their_priority():
    loop, node, lp = plane(spec(up={"deprioritize_non_customer": 3}))
    lp.forward(4, packet(5, 12))
    loop.advance(loop.now + 1)
    tc = SwitchHeader.unpack(node.links[5].sent[0]).traffic_class
    assert priority_of(tc) == 12 and is_customer(tc)


def test_egress_is_paced_at_agent_pace_of_the_link_capacity_and_drops_lowest_priority():
    loop, node, lp = plane(spec())
    start = loop.now
    # 1 s of 1000-byte packets at 1600 kbit/s into an 800 kbit/s link paced at AGENT_PACE of it: a bit less than
    # half must go, low priority first
    for i in range(200):
        loop.advance(start + i * 0.005)
        lp.forward(4, packet(5, 9 if i % 2 else 2))
    loop.advance(start + 1.0)
    sent = node.links[5].sent
    assert 95 * AGENT_PACE <= len(sent) <= 110 * AGENT_PACE          # ~100 packets = 800 kbit in 1 s, x pace
    prios = [priority_of(SwitchHeader.unpack(p).traffic_class) for p in sent]
    assert prios.count(9) >= 95 * AGENT_PACE                          # the priority-9 half got through
    assert node.drops.get("lease_queue_full", 0) + node.drops.get("lease_pushed_out", 0) > 0


def test_link_pings_are_not_queued_behind_a_congested_lease():
    # a flood of priority-9 traffic fills eth_out's queue; the node's link ping on the leased interface leaves at
    # once (queued at the back, or dropped as the lowest priority, it would take the lease down for everyone)
    loop, node, lp = plane(spec())
    start = loop.now
    for i in range(100):
        loop.advance(start + i * 0.002)
        lp.forward(4, packet(5, 9))
    before = len(node.links[5].sent)
    node.ping_link(node.links[5], loop.now)
    pings = [p for p in node.links[5].sent[before:] if p[12:16] == b"\xff\xff\xff\xff"]
    assert len(pings) == 1 and node.links[5].sent[-1] == pings[0]


def test_leases_command_describes_leases_meters_and_plans():
    loop, node, lp = plane(spec(cust={"max_priority_bandwidth": 500}))
    lp.forward(4, packet(5, 12))
    loop.advance(loop.now + 0.1)
    d = json.loads(json.dumps(lp.describe()))                          # JSON-serialisable for the control API
    assert d["interfaces"]["4"] == {"link": "eth_in", "lease": "cust"}
    assert d["ingress"]["eth_in/cust"]["packets"] == 1
    assert d["egress"]["eth_out"]["sent"]["packets"] == 1
    assert [c["lease"] for c in d["htb_plans"]["eth_out"]["classes"]] == [None, "free", "up"]


def test_signed_configuration_request_through_the_plane():
    loop, node, lp = plane(spec())
    req = cr.make_request(HOLDER.private_key, "cust", {"max_priority_bandwidth": 42}, 1_700_000_000.0)
    assert lp.configure(req.decode())["ok"]
    assert lp.table.find("cust").max_priority_bandwidth == 42
    assert lp.configure(req.decode())["error"] == cr.REPLAYED_NONCE
    other = keys.Identity.from_seed(b"lease-plane", 10)
    bad = cr.make_request(other.private_key, "cust", {"max_priority_bandwidth": 1}, 1_700_000_000.0)
    assert lp.configure(bad)["error"] == cr.WRONG_KEY


def test_a_granted_lease_takes_its_new_holders_requests_and_ends_at_the_unix_time_given():
    loop, node, lp = plane(spec())
    buyer = keys.Identity.from_seed(b"lease-plane", 11)
    wall = 1_700_000_000.0                                              # the plane's wall clock (see plane())
    got = lp.commands()["lease_grant"]({"lease": "up", "holder": buyer.pubkey_text, "expires_at": wall + 30}, None)
    assert got["lease"]["holder"] == buyer.pubkey_text and got["lease"]["expires_in_s"] == 30
    before = cr.make_request(HOLDER.private_key, "up", {"max_priority_bandwidth": 1}, wall)
    assert lp.configure(before)["error"] == cr.WRONG_KEY                 # the old holder has no say any more
    req = cr.make_request(buyer.private_key, "up", {"max_priority_bandwidth": 7}, wall)
    assert lp.configure(req)["ok"] and lp.table.find("up").max_priority_bandwidth == 7
    loop.advance(loop.now + 31)
    assert lp.table.lease("eth_out", "up", loop.now).is_free           # the term ended: the free tier


@pytest.mark.parametrize("req, needle", [
    ({"holder": "x.k"}, '"lease"'),
    ({"lease": "up", "holder": "nokey"}, "holder:"),
    ({"lease": "nope", "holder": HOLDER.pubkey_text}, "no paid lease 'nope'"),
    ({"lease": "up", "holder": HOLDER.pubkey_text, "expires_at": "soon"}, "expires_at"),
    ({"lease": "up", "holder": HOLDER.pubkey_text, "expires_at": float("nan")}, "expires_at"),
])
def test_a_bad_grant_is_refused_naming_what_is_wrong_and_changes_nothing(req, needle):
    loop, node, lp = plane(spec())
    with pytest.raises(ValueError, match=needle.replace("'", ".").replace('"', '.')):
        lp.commands()["lease_grant"](req, None)
    assert lp.table.find("up").holder == keys.parse_pubkey_text(HOLDER.pubkey_text)


def test_own_packets_get_the_origin_traffic_class():
    s = spec()
    s["origin"] = {"priority": 7, "customer": True}
    loop, node, lp = plane(s)
    head = SwitchHeader(label=labels.one_hop_label(5)).pack()          # unclassed, from our router
    lp.forward(1, head + bytes(500))
    loop.advance(loop.now + 1)
    tc = SwitchHeader.unpack(node.links[5].sent[0]).traffic_class
    assert priority_of(tc) == 7 and is_customer(tc)


def test_one_drain_timer_per_link_however_many_packets_wait():
    loop, node, lp = plane(spec())
    for _ in range(30):
        lp.forward(4, packet(5, 9))
    assert len(loop.timers) == 1
    loop.advance(loop.now + 1)
    assert len(node.links[5].sent) == 30 and loop.timers == []


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 4, 5, 7]), st.binary(max_size=64)), max_size=20))
def test_any_packet_from_any_interface_is_forwarded_dropped_or_counted_never_raises(packets):
    loop, node, lp = plane(spec(cust={"max_priority_bandwidth": 10, "clear_customer_bit": True},
                                up={"deprioritize_non_customer": 2}))
    for index, data in packets:
        lp.forward(index, data)
        loop.advance(loop.now + 0.01)
    json.dumps(lp.describe())


def test_the_plane_is_the_nodes_forwarder_until_closed():
    loop, node, lp = plane(spec(cust={"clear_customer_bit": True}, up={"deprioritize_non_customer": 3}))
    node.receive_from_link(node.links[4], packet(5, 12))             # the data plane's own entry point
    loop.advance(loop.now + 1)
    tc = SwitchHeader.unpack(node.links[5].sent[0]).traffic_class
    assert priority_of(tc) == 3 and not is_customer(tc)
    lp.close()
    node.receive_from_link(node.links[4], packet(5, 12))
    tc = SwitchHeader.unpack(node.links[5].sent[1]).traffic_class      # plain cjdns switch again: unchanged
    assert priority_of(tc) == 12 and is_customer(tc)


def test_a_dead_next_hop_answers_undeliverable_on_both_lease_paths():
    loop, node, lp = plane(spec())
    # forwarded at once (eth_in has no capacity, so no scheduler): the send fails, the source hears at once
    node.links[4].send = lambda packet, on_fail=None: False
    lp.forward(5, packet(4, 7))
    [err] = node.links[5].sent
    assert isinstance(control.unframe(err[HEADER_SIZE:]), control.Error)
    # paced (eth_out has a scheduler): a link known down is not queued behind, the source hears at once
    node.down_links.add(5)
    lp.forward(4, packet(5, 7))
    loop.advance(loop.now + 1)
    assert not [p for p in node.links[5].sent if not control.is_control(p[HEADER_SIZE:])]
    assert node.drops["next_hop_down"] == 2
