"""A small harness for node-agent integration tests on real network namespaces.

It creates uniquely named namespaces (`pktlabtest-<pid>-<i>`), veth pairs created directly inside them (no
interface ever appears in the host namespace) with per-link IPv6 addresses (fd00::/8 ULA, one /64 per link,
nodad), writes agent configs, starts agents with `ip netns exec`, and removes everything it created in
`cleanup()` (agents it started, by pid; namespaces it created, by name) - never anything else.

    with Mesh(tmp_path) as mesh:
        a, b = mesh.add_node(), mesh.add_node()
        mesh.add_link(a, b)
        mesh.start()
        mesh.client(a).call("ping", dest=b.ip6)
"""

import atexit
import itertools
import json
import os
import signal
import subprocess
import sys
import time

from node.agent.control_client import AgentClient, AgentError
from node.cjdns.paths import static_paths
from node.cjdns import keys, labels

PYTHON = sys.executable
UDP_PORT = 7100
VETH_MTU = 65535
_ns_numbers = itertools.count()     # unique namespace numbers within this process


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


class MeshNode:
    def __init__(self, mesh, index):
        self.mesh = mesh
        self.index = index
        self.name = f"n{index}"
        self.ns = f"{mesh.prefix}-{next(_ns_numbers)}"
        self.identity = keys.Identity.from_seed(mesh.seed, index)
        self.ip6 = self.identity.ip6_text
        self.peers = []          # config "peers" entries
        self.next_index = 0      # switch interface numbers 0, 2, 3, ... (1 is the router)
        self.proc = None
        self.config_path = os.path.join(mesh.dir, f"{self.name}.json")
        self.socket = os.path.join(mesh.dir, f"{self.name}.sock")
        self.log = os.path.join(mesh.dir, f"{self.name}.log")
        self.link_emulation = {}

    def take_index(self):
        i = self.next_index
        self.next_index += 2 if i == 0 else 1
        return i


class Mesh:
    def __init__(self, directory, seed=b"pktlab-harness", tun_mtu=None, veth_mtu=VETH_MTU, link_crypto=True):
        self.dir = str(directory)
        self.seed = seed
        self.link_crypto = link_crypto      # peer links ride in CryptoAuth sessions (the agents' default); read
                                            # when an agent (re)starts
        self.tun_mtu = tun_mtu
        self.veth_mtu = veth_mtu
        self.prefix = f"pktlabtest-{os.getpid()}"
        self.nodes = []
        self.links = []
        self.created_ns = []
        self._closed = False
        atexit.register(self.cleanup)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- building -----------------------------------------------------------------------------------------
    def add_node(self):
        node = MeshNode(self, len(self.nodes))
        # also refuse a namespace someone else already has under our unique name
        sh("ip", "netns", "add", node.ns)
        self.created_ns.append(node.ns)
        sh("ip", "-n", node.ns, "link", "set", "lo", "up")
        self.nodes.append(node)
        return node

    def add_link(self, a, b):
        k = len(self.links) + 1
        ifa, ifb = f"l{k}a", f"l{k}b"
        sh("ip", "link", "add", ifa, "netns", a.ns, "mtu", str(self.veth_mtu), "type", "veth",
           "peer", "name", ifb, "netns", b.ns, "mtu", str(self.veth_mtu))
        addr_a, addr_b = f"fd00:{k:x}::1", f"fd00:{k:x}::2"
        for node, ifname, addr in ((a, ifa, addr_a), (b, ifb, addr_b)):
            sh("ip", "-n", node.ns, "addr", "add", f"{addr}/64", "dev", ifname, "nodad")
            sh("ip", "-n", node.ns, "link", "set", ifname, "up")
        ia, ib = a.take_index(), b.take_index()
        a.peers.append({"switch_index": ia, "ifname": ifa, "local_addr": addr_a, "peer_addr": addr_b,
                        "peer_public_key": b.identity.pubkey_text, "peer_name": b.name})
        b.peers.append({"switch_index": ib, "ifname": ifb, "local_addr": addr_b, "peer_addr": addr_a,
                        "peer_public_key": a.identity.pubkey_text, "peer_name": a.name})
        self.links.append((a, ifa, addr_a, b, ifb, addr_b))
        return ifa, ifb

    def line(self, n):
        nodes = [self.add_node() for _ in range(n)]
        for a, b in zip(nodes, nodes[1:]):
            self.add_link(a, b)
        return nodes

    def adjacency(self):
        adj = {n.name: {} for n in self.nodes}
        for n in self.nodes:
            for p in n.peers:
                adj[n.name][p["peer_name"]] = p["switch_index"]
        return adj

    def config_for(self, node):
        by_name = {n.name: n for n in self.nodes}
        paths = {by_name[dest].ip6: {"public_key": by_name[dest].identity.pubkey_text,
                                     "label": labels.label_text(label)}
                 for dest, label in static_paths(self.adjacency(), node.name).items()}
        tun = {"ifname": "tun0"}
        if self.tun_mtu:
            tun["mtu"] = self.tun_mtu
        return {"node": node.name, "private_key": node.identity.private_key.hex(), "control_socket": node.socket,
                "log_file": node.log, "tun": tun, "udp_port": UDP_PORT,
                "peers": [dict(p, link_crypto=self.link_crypto) for p in node.peers], "paths": paths,
                "link_emulation": node.link_emulation}

    # -- agents ---------------------------------------------------------------------------------------------
    def start(self, nodes=None, timeout=30.0):
        nodes = self.nodes if nodes is None else nodes
        for node in nodes:
            self.start_agent(node, wait=False)
        for node in nodes:
            self.wait_healthy(node, timeout)

    def start_agent(self, node, wait=True, require_peers=True):
        with open(node.config_path, "w") as f:
            json.dump(self.config_for(node), f, indent=1)
        err = open(os.path.join(self.dir, f"{node.name}.stderr"), "a")
        node.proc = subprocess.Popen(["ip", "netns", "exec", node.ns, PYTHON, "-m", "node.agent",
                                      node.config_path], stdout=err, stderr=err, start_new_session=True)
        err.close()
        if wait:
            self.wait_healthy(node, require_peers=require_peers)

    def wait_healthy(self, node, timeout=30.0, require_peers=True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"agent {node.name} exited with {node.proc.returncode}: {self.stderr(node)}")
            try:
                st = self.client(node).call("status", timeout=2)
                # healthy, and every peer link answered a link ping (its neighbour entry is resolved)
                if st.get("healthy") and (st.get("peers_up") == st.get("peers") or not require_peers):
                    return
            except (OSError, AgentError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"agent {node.name} not healthy after {timeout} s: {self.stderr(node)}")

    def stderr(self, node):
        try:
            with open(os.path.join(self.dir, f"{node.name}.stderr")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop_agent(self, node, sig=signal.SIGTERM, timeout=10.0):
        if node.proc is None:
            return None
        if node.proc.poll() is None:
            try:
                os.killpg(node.proc.pid, sig)   # its own session: the ip-netns-exec'd python and nothing else
            except ProcessLookupError:
                pass
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(5)
        code = node.proc.returncode
        node.proc = None
        return code

    def client(self, node):
        return AgentClient(node.socket)

    def run(self, node, *cmd, timeout=60, check=False):
        return sh("ip", "netns", "exec", node.ns, *cmd, check=check, timeout=timeout)

    def popen(self, node, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", node.ns, *cmd], start_new_session=True, **kw)

    # -- teardown -------------------------------------------------------------------------------------------
    def cleanup(self):
        if self._closed:
            return
        self._closed = True
        for node in self.nodes:
            try:
                self.stop_agent(node)
            except Exception:
                pass
        for ns in reversed(self.created_ns):
            sh("ip", "netns", "del", ns, check=False)     # its veths go with it
        self.created_ns.clear()
        atexit.unregister(self.cleanup)
