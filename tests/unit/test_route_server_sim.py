"""Route servers and clients in a simulated mesh (no sockets): real switches, real labels, simulated time.

Every node has a cjdns Switch, a RouteServerClient and, for route servers, a RouteServerService. Packets are
switch header + body and travel hop by hop through the switches (2 ms per hop), so every label a route server
hands out is checked by actually forwarding along it. Bodies are the real control frames (GETSNODE, switch
errors) or, for route server traffic, a stand-in for a CryptoAuth session: b"RSMG" + sender key + receiver key +
bencoded message (the agent puts the message inside a real session). A lease is a wire of its own between two
more switch interfaces (as the agent's per-lease peer link), announced by both ends as a LEASE entity.
"""
import heapq

import pytest

from node.route_server import messages as M
from node.route_server import announcement as A
from node.route_server.client import ClientConfig, PeerInfo, RouteServerClient
from node.route_server.service import RouteServerService
from node.cjdns import control, keys
from node.cjdns.keys import Identity
from node.cjdns.labels import bit_reverse64, one_hop_label
from node.cjdns.switch import Switch
from node.cjdns.switch_header import SwitchHeader

HOP_MS = 2
TICK_MS = 100
T0 = 1_700_000_000_000
MAGIC = b"RSMG"


class SimNode:
    def __init__(self, name, identity, isp):
        self.name, self.identity, self.isp = name, identity, isp
        self.switch = Switch()
        self.client = None
        self.service = None
        self.service_alive = True


class SimNet:
    def __init__(self, now=T0):
        self.now = now
        self.nodes = {}
        self.by_key = {}
        self.wires = {}
        self.lease_wires = set()
        self.leases = {}                  # name -> [LeaseEntity] (its end of each lease)
        self.queue = []
        self.seq = 0
        self.delivered = 0

    def clock(self):
        return self.now

    def add(self, name, isp, seed=b"sim"):
        node = SimNode(name, Identity.from_seed(seed, len(self.nodes)), isp)
        self.nodes[name] = node
        self.by_key[node.identity.public_key] = node
        return node

    def link(self, a, ia, b, ib):
        self.nodes[a].switch.add_interface(ia)
        self.nodes[b].switch.add_interface(ib)
        self.wires[(a, ia)] = (b, ib)
        self.wires[(b, ib)] = (a, ia)

    def lease(self, a, ia, b, ib, lease_id, holder, link=(0, 0), expires_s=A.NEVER):
        """A lease between a and b on the link whose interfaces are ``link`` (a's, b's); its own interfaces
        ia and ib."""
        self.link(a, ia, b, ib)
        self.lease_wires |= {(a, ia), (b, ib)}
        for me, mine, free in ((a, ia, link[0]), (b, ib, link[1])):
            self.leases.setdefault(me, []).append(A.LeaseEntity(lease_id, one_hop_label(free), one_hop_label(mine),
                                                                1_000_000, expires_s, holder=holder))

    def peers_of(self, name):
        out = []
        for (a, ia), (b, ib) in self.wires.items():
            if a == name and (a, ia) not in self.lease_wires:
                peer = self.nodes[b]
                out.append(PeerInfo(peer.identity.ip6, one_hop_label(ia), one_hop_label(ib), peer.identity.public_key,
                                    rtt_us=2 * HOP_MS * 1000, capacity_kbps=100_000))
        return out

    def start(self, route_servers, config, holders=None):
        """route_servers: {isp: [names]}; every server federates with all others. holders: {name: keys whose
        leases it may use}."""
        all_keys = [self.nodes[n].identity.public_key for names in route_servers.values() for n in names]
        for name, node in self.nodes.items():
            mine = [self.nodes[n].identity.public_key for n in route_servers.get(node.isp, [])]
            is_server = name in route_servers.get(node.isp, [])
            if is_server:
                node.service = RouteServerService(node.identity.public_key, federation=all_keys, same_isp=mine)
            cfg = ClientConfig(**{**config.__dict__, "allowed": tuple(mine),
                                  "lease_holders": tuple((holders or {}).get(name, ()))})
            node.client = RouteServerClient(node.identity, self.clock, cfg, serve_self=is_server)
            node.client.set_peers(self.peers_of(name))
            node.client.set_leases(self.leases.get(name, []))

    # -- packets ---------------------------------------------------------------------------------------
    def send(self, name, label, body):
        if label == 1:                                   # to ourselves
            self._at(self.now, lambda: self.arrive(name, 1, body))
            return
        self._at(self.now + HOP_MS, lambda: self.hop(name, 1, SwitchHeader(label).pack() + body))

    def _at(self, t, fn):
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, fn))

    def hop(self, name, iface, packet):
        for dest, out in self.nodes[name].switch.receive(iface, packet):
            if dest == 1:
                label = SwitchHeader.unpack(out).label
                self.arrive(name, bit_reverse64(label), out[12:])
            else:
                nxt, nxt_iface = self.wires[(name, dest)]
                self._at(self.now + HOP_MS, lambda n=nxt, i=nxt_iface, o=out: self.hop(n, i, o))

    def arrive(self, name, back, body):
        node = self.nodes[name]
        self.delivered += 1
        if control.is_control(body):
            msg = control.unframe(body)
            if isinstance(msg, control.GetSnode) and not msg.reply:
                answer = node.client.answer_getsnode(msg, back)
                if answer is not None:
                    self.send(name, back, control.frame(answer))
            elif isinstance(msg, control.GetSnode):
                node.client.on_getsnode_reply(msg, back)
            elif isinstance(msg, control.Error) and msg.cause[12:16] == MAGIC:
                # the cause starts with our packet's switch header, then our frame: MAGIC, src, dst
                node.client.report_failure(keys.address_for_key(msg.cause[48:80]), None)
            return
        assert body[:4] == MAGIC
        src, dst, payload = body[4:36], body[36:68], body[68:]
        assert dst == node.identity.public_key
        serving = node.service is not None and node.service_alive
        if M.is_query(payload):
            if serving:                                  # a crashed server is silent
                reply = node.service.handle(payload, src, self.now, path=(back, ()))
                if reply is not None:
                    self.send_msg(name, src, back, reply)
        elif not node.client.on_reply(payload, src) and serving:
            node.service.handle(payload, src, self.now, path=(back, ()))      # federation replies

    def send_msg(self, name, dst_key, label, payload):
        node = self.nodes[name]
        self.send(name, label, MAGIC + node.identity.public_key + dst_key + payload)

    # -- time ------------------------------------------------------------------------------------------
    def tick(self):
        for name, node in self.nodes.items():
            for o in node.client.poll(self.now):
                if o.kind == "control":
                    self.send(name, o.label, control.frame(o.payload))
                else:
                    self.send_msg(name, o.public_key, o.label, o.payload)
            if node.service is not None and node.service_alive:
                for key, label, payload, _ in node.service.take_outbox(self.now):
                    self.send_msg(name, key, label, payload)

    def run(self, ms, every=None):
        end = self.now + ms
        next_tick = self.now
        while self.now < end:
            while self.queue and self.queue[0][0] <= next_tick:
                t, _, fn = heapq.heappop(self.queue)
                self.now = max(self.now, t)
                fn()
            self.now = next_tick
            self.tick()
            if every is not None:
                every(self.now)
            next_tick += TICK_MS

    def deliver(self, src, label):
        """Forward a data packet along label from src; the name of the node whose router gets it."""
        return self.walk(src, label)[0]

    def walk(self, src, label):
        """(the node whose router gets a packet sent along label from src, [(node, interface it left by)], the
        label it arrived with: the way back)."""
        name, iface, pkt = src, 1, SwitchHeader(label).pack() + b"data"
        hops = []
        for _ in range(64):
            [(dest, pkt)] = self.nodes[name].switch.receive(iface, pkt)
            if dest == 1:
                return name, hops, SwitchHeader.unpack(pkt).label
            hops.append((name, dest))
            name, iface = self.wires[(name, dest)]
        raise AssertionError("loop")


def grid(n=5, split_col=3, servers=None):
    """n x n grid; columns < split_col are ISP "A", the rest ISP "B". Interfaces: 0 east, 2 west, 3 south,
    4 north, so every director is 4 bits."""
    net = SimNet()
    for r in range(n):
        for c in range(n):
            net.add(f"{r}{c}", "A" if c < split_col else "B")
    for r in range(n):
        for c in range(n):
            if c + 1 < n:
                net.link(f"{r}{c}", 0, f"{r}{c + 1}", 2)
            if r + 1 < n:
                net.link(f"{r}{c}", 3, f"{r + 1}{c}", 4)
    return net


SERVERS = {"A": ["11", "31"], "B": ["23"]}
FAST = ClientConfig(announce_interval_ms=2000, hunt_interval_ms=1000, query_timeout_ms=1000, cache_ttl_ms=20_000)


def converge_all_pairs(net, limit_ms=30_000):
    resolved = {}
    names = sorted(net.nodes)

    def ask(now):
        if (now - T0) % 1000:
            return
        for a in names:
            for b in names:
                if a != b and (a, b) not in resolved:
                    found = net.nodes[a].client.lookup(net.nodes[b].identity.ip6)
                    if found is not None:
                        resolved[(a, b)] = (now - T0, found)
    net.run(limit_ms, every=ask)
    return resolved


@pytest.fixture(scope="module")
def converged():
    net = grid(servers=SERVERS)
    net.start(SERVERS, FAST)
    resolved = converge_all_pairs(net)
    return net, resolved


def test_every_ordered_pair_gets_a_working_path_within_30s(converged):
    net, resolved = converged
    names = sorted(net.nodes)
    missing = [(a, b) for a in names for b in names if a != b and (a, b) not in resolved]
    assert not missing, f"{len(missing)} pairs without a path, e.g. {missing[:5]}"
    for (a, b), (t, (key, label, _)) in resolved.items():
        assert t <= 30_000
        assert key == net.nodes[b].identity.public_key
        assert net.deliver(a, label) == b, (a, b, hex(label))


def test_nodes_use_their_own_isps_route_server(converged):
    net, _ = converged
    for name, node in net.nodes.items():
        server = net.by_key[node.client.server]
        assert server.isp == node.isp, name
        if node.service is not None:
            assert node.client.server == node.identity.public_key


def test_federation_gives_each_server_the_whole_graph(converged):
    net, _ = converged
    for name in ["11", "31", "23"]:
        status = net.nodes[name].service.status()
        assert status["nodes"] == 25, name
        assert status["edges"] == 2 * 40, name           # 40 links in a 5x5 grid, both directions
        assert status["announcements_forwarded_in"] > 0
        assert not status["rejected"].get("bad_signature")


def test_cross_isp_path_goes_through_the_border(converged):
    net, resolved = converged
    _, (key, label, _) = resolved[("00", "44")]
    assert net.deliver("00", label) == "44"
    assert net.nodes["00"].isp != net.nodes["44"].isp


def test_route_server_crash_second_server_takes_over_new_lookups():
    net = grid(servers=SERVERS)
    net.start(SERVERS, FAST)
    net.run(10_000)
    a_nodes = [n for n, node in net.nodes.items() if node.isp == "A"]
    users_of_11 = [n for n in a_nodes if net.nodes[n].client.server == net.nodes["11"].identity.public_key
                   and n != "11"]
    assert users_of_11, "nobody uses 11: the test would prove nothing"
    # an established path (cached) keeps working through the crash
    before = net.nodes["00"].client.lookup(net.nodes["44"].identity.ip6)
    net.run(2000)
    before = before or net.nodes["00"].client.lookup(net.nodes["44"].identity.ip6)
    assert before is not None
    net.nodes["11"].service_alive = False
    net.run(3000)
    assert net.nodes["00"].client.lookup(net.nodes["44"].identity.ip6) == before
    assert net.deliver("00", before[1]) == "44"
    # new look-ups after the crash: flush caches and ask again
    for n in users_of_11:
        net.nodes[n].client.flush_cache()
    resolved = {}

    def ask(now):
        for a in users_of_11:
            for b in net.nodes:
                if a != b and (a, b) not in resolved:
                    found = net.nodes[a].client.lookup(net.nodes[b].identity.ip6)
                    if found is not None:
                        resolved[(a, b)] = found
    net.run(8000, every=ask)
    for a in users_of_11:
        assert net.nodes[a].client.server == net.nodes["31"].identity.public_key, a
        assert net.nodes[a].client.counters["failovers"] >= 1
        for b in net.nodes:
            if a != b:
                assert (a, b) in resolved, (a, b)
                assert net.deliver(a, resolved[(a, b)][1]) == b


def test_broken_link_is_rerouted_after_switch_error():
    net = grid(servers=SERVERS)
    net.start(SERVERS, FAST)
    net.run(8000)
    client = net.nodes["00"].client
    dst = net.nodes["02"].identity.ip6
    client.lookup(dst)
    net.run(1000)
    key, label, _ = client.lookup(dst)
    # cut the first link on the path and tell both ends (their agents would notice the dead link)
    first_hop = net.nodes["00"].switch.receive(1, SwitchHeader(label).pack() + b"x")[0][0]
    peer, peer_iface = net.wires[("00", first_hop)]
    del net.wires[("00", first_hop)], net.wires[(peer, peer_iface)]
    net.nodes["00"].switch.remove_interface(first_hop)
    net.nodes[peer].switch.remove_interface(peer_iface)
    net.nodes["00"].client.set_peers(net.peers_of("00"))
    net.nodes[peer].client.set_peers(net.peers_of(peer))
    client.report_failure(dst, label)
    assert client.lookup(dst) is None
    net.run(3000, every=lambda now: client.lookup(dst))
    found = client.lookup(dst)
    assert found is not None and found[1] != label
    assert net.deliver("00", found[1]) == "02"


# -- forged, replayed, skewed, misaddressed announcements over the mesh -------------------------------------

def _send_ann(net, sender, server, ann_raw, replies):
    src = net.nodes[sender]
    txid = b"t%d" % len(replies)
    q = M.pack_query(M.Query("ann", txid, ann=ann_raw))
    label = src.client.candidates[net.nodes[server].identity.public_key].label
    orig = src.client.on_reply

    def capture(payload, key=None):
        r = M.parse_reply(payload)
        if r.txid == txid:
            replies.append(r)
            return True
        return orig(payload, key)
    src.client.on_reply = capture
    net.send_msg(sender, net.nodes[server].identity.public_key, label, q)
    net.run(300)
    src.client.on_reply = orig
    return replies[-1]


def test_bad_announcements_are_rejected_and_counted_over_the_mesh():
    net = grid(servers=SERVERS)
    net.start(SERVERS, FAST)
    net.run(6000)
    server = net.nodes["11"]
    me = net.nodes["00"]
    assert me.client.server == server.identity.public_key
    rs_ip6 = server.identity.ip6
    replies = []
    ents = (A.VersionEntity(22), A.EncodingSchemeEntity(me.client.scheme))
    good = A.Announcement.build(me.identity, rs_ip6, net.now + 1, ents, reset=True)
    assert _send_ann(net, "00", "11", good.raw, replies).error is None
    forged = bytearray(A.Announcement.build(me.identity, rs_ip6, net.now, ents).raw)
    forged[-1] ^= 0x01                                    # change a signed byte
    assert _send_ann(net, "00", "11", bytes(forged), replies).error == "bad_signature"
    assert _send_ann(net, "00", "11", good.raw, replies).error == "replay"
    older = A.Announcement.build(me.identity, rs_ip6, good.timestamp_ms - 500, ents)
    assert _send_ann(net, "00", "11", older.raw, replies).error == "old_timestamp"
    skewed = A.Announcement.build(me.identity, rs_ip6, net.now + 11_000, ents)
    assert _send_ann(net, "00", "11", skewed.raw, replies).error == "clock_skew"
    elsewhere = A.Announcement.build(me.identity, net.nodes["31"].identity.ip6, net.now, ents)
    assert _send_ann(net, "00", "11", elsewhere.raw, replies).error == "wrong_snode"
    rejected = server.service.status()["rejected"]
    for reason in ("bad_signature", "replay", "old_timestamp", "clock_skew", "wrong_snode"):
        assert rejected.get(reason, 0) >= 1, (reason, rejected)


# -- leases -------------------------------------------------------------------------------------------------

HOLDER = bytes([0x42]) * 32


def leased_square(leases=("SY", "YZ", "ZD"), holder=HOLDER, expires_s=A.NEVER):
    """S - X - D (two hops, free) and S - Y - Z - D (three hops) with the leases named on the long way, each on
    the next interface from 200 at each end; X is the route server."""
    net = SimNet()
    for name in "SXYZD":
        net.add(name, "A", seed=b"lease-sim")
    net.link("S", 0, "X", 0)
    net.link("X", 2, "D", 0)
    net.link("S", 2, "Y", 0)
    net.link("Y", 2, "Z", 0)
    net.link("Z", 2, "D", 2)
    ports = {"SY": ("S", 2, "Y", 0), "YZ": ("Y", 2, "Z", 0), "ZD": ("Z", 2, "D", 2)}
    for lease_id in leases:
        a, la, b, lb = ports[lease_id]
        net.lease(a, 200 + len(net.leases.get(a, [])), b, 200 + len(net.leases.get(b, [])), lease_id, holder,
                  link=(la, lb), expires_s=expires_s)
    return net


def path_of(net, src, dst, holders=(), ms=6000):
    net.start({"A": ["X"]}, FAST, holders={src: holders})
    target = net.nodes[dst].identity.ip6
    net.run(ms, every=lambda now: net.nodes[src].client.lookup(target))
    found = net.nodes[src].client.lookup(target)
    assert found is not None
    return found[1]


def test_the_route_server_hands_out_a_path_over_the_askers_leases_through_their_interfaces():
    net = leased_square()
    label = path_of(net, "S", "D", holders=(HOLDER,))
    at, hops, back = net.walk("S", label)
    lease_ifaces = {(n, i) for (n, i) in net.lease_wires}
    assert at == "D" and [n for n, _ in hops] == ["S", "Y", "Z"]
    assert all(hop in lease_ifaces for hop in hops), hops          # every hop leaves on the lease's interface
    home, back_hops, _ = net.walk("D", bit_reverse64(back))          # and the way back too
    assert home == "S" and all(hop in lease_ifaces for hop in back_hops), back_hops
    assert net.nodes["X"].service.counters["path_over_leases"] >= 1


def test_without_the_holder_key_the_free_path_is_cheaper():
    net = leased_square()
    at, hops, _ = net.walk("S", path_of(net, "S", "D"))
    assert at == "D" and [n for n, _ in hops] == ["S", "X"]


def test_the_askers_own_key_holds_leases_too():
    net = leased_square(holder=None)
    own = net.nodes["S"].identity.public_key
    for entities in net.leases.values():
        entities[:] = [A.LeaseEntity(**{**e.__dict__, "holder": own}) for e in entities]
    at, hops, _ = net.walk("S", path_of(net, "S", "D"))
    assert at == "D" and [n for n, _ in hops] == ["S", "Y", "Z"]


def test_leases_after_a_free_hop_do_not_count():
    # a device keeps what came in on the free tier on the free tier: Y-Z and Z-D are worth nothing after S-Y
    net = leased_square(leases=("YZ", "ZD"))
    at, hops, _ = net.walk("S", path_of(net, "S", "D", holders=(HOLDER,)))
    assert at == "D" and [n for n, _ in hops] == ["S", "X"]


def test_expired_leases_drop_out():
    net = leased_square(expires_s=T0 // 1000 + 8)
    label = path_of(net, "S", "D", holders=(HOLDER,))
    assert [n for n, _ in net.walk("S", label)[1]] == ["S", "Y", "Z"]
    client = net.nodes["S"].client
    net.run(4000)                                   # past the leases' end
    client.flush_cache()
    target = net.nodes["D"].identity.ip6
    net.run(2000, every=lambda now: client.lookup(target))
    at, hops, _ = net.walk("S", client.lookup(target)[1])
    assert at == "D" and [n for n, _ in hops] == ["S", "X"]


def test_a_lease_then_the_free_tier_gets_a_label_wide_enough_for_the_way_back():
    # S -lease-> Y -free-> Z: at Y the packet came in on the lease's wide interface (8-bit director) and leaves on a
    # narrow one, so the label must carry Y's next hop re-encoded wide enough for the return path
    net = SimNet()
    for name in "SYZ":
        net.add(name, "A", seed=b"lease-sim-2")
    net.link("S", 0, "Y", 0)
    net.link("Y", 2, "Z", 0)
    net.lease("S", 200, "Y", 200, "SY", HOLDER, link=(0, 0))
    net.start({"A": ["Z"]}, FAST, holders={"S": (HOLDER,)})
    target = net.nodes["Z"].identity.ip6
    net.run(6000, every=lambda now: net.nodes["S"].client.lookup(target))
    at, hops, back = net.walk("S", net.nodes["S"].client.lookup(target)[1])
    assert at == "Z" and hops == [("S", 200), ("Y", 2)]
    assert net.walk("Z", bit_reverse64(back))[:2] == ("S", [("Z", 0), ("Y", 200)])
