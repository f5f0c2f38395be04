"""In-memory meshes of real data-plane Nodes for unit tests: a line of nodes on node.tun_switch.memory_links, a hand-driven
clock and a captured TUN (each node's `delivered` list)."""
from node.agent.config import parse_config
from node.tun_switch.node import Node
from node.tun_switch.memory_links import ManualLoop, MemoryLink, MemoryWire
from node.cjdns.paths import path_entry, static_paths
from node.cjdns import keys


def build_line(n, seed=b"dp", udp_port=1, link_crypto=False, loop=None):
    """n0 - n1 - ... with static paths between all nodes; link n_i -> n_i+1 is "to<i+1>" on n_i and "to<i>" on
    n_i+1; with ``link_crypto`` every link rides in a CryptoAuth session between its ends, as PeerLinks do.
    Returns (wire, loop, nodes); ``loop``: a ManualLoop by default (a TimerLoop runs the nodes' timers)."""
    wire, loop = MemoryWire(), loop or ManualLoop()
    idents = [keys.Identity.from_seed(seed, i) for i in range(n)]
    names = [f"n{i}" for i in range(n)]
    adj = {name: {} for name in names}
    for a, b in zip(names, names[1:]):
        adj[a][b] = 0 if a == "n0" else 2
        adj[b][a] = 0
    nodes = []
    for i, name in enumerate(names):
        paths = {idents[names.index(d)].ip6_text: path_entry(idents[names.index(d)].public_key, label, via)
                 for d, (label, via) in static_paths(adj, name).items()}
        cfg = parse_config({"node": name, "private_key": idents[i].private_key.hex(), "control_socket": "/tmp/x",
                            "log_file": "/tmp/x.log", "tun": {"ifname": "tun0"}, "udp_port": udp_port,
                            "peers": [], "paths": paths})
        nodes.append(make_node(cfg, loop))
    def link(me, other):
        session = nodes[me].link_session(idents[other].public_key) if link_crypto else None
        return MemoryLink(wire, names[me], adj[names[me]][names[other]], f"to{other}", names[other],
                          idents[other].public_key, session, loop.clock)
    for a, b in zip(range(n), range(1, n)):
        wire.join(nodes[a], link(a, b), nodes[b], link(b, a))
    return wire, loop, nodes


def make_node(cfg, loop):
    """A Node whose TUN output is collected in `node.delivered`."""
    node = Node(cfg, loop, clock=loop.clock)
    node.delivered = []
    node.deliver = node.delivered.append
    return node
