"""The namespace backend: every node a Mininet host, every link a veth pair shaped with HTB.

A `PktHost` is a Mininet `Host` whose network namespace is held by a small detached process (`mnexec -cdn sleep
infinity`) rather than by an interactive shell tied to the orchestrator, so the mesh keeps running after `pktlab up`
returns and any later `pktlab` command can enter it (`mnexec -a PID`). Links are created straight inside their two
namespaces and configured in batches (see netlink_batch), never with one `ip`/`tc` process per operation.

Addresses: each link gets a /64 from the run's ULA prefix (fdXX:XXXX:XXXX::/48, derived from the run id), `::1` on
the a side and `::2` on the b side. Nothing is added to the host namespace: no address, no route.

Neighbours: each veth end has a fixed MAC address (`link_macs`), and each end gets a permanent neighbour entry for
the other's address. Without them every link end resolves its peer by neighbour discovery, and the kernel keeps
those entries in one table shared by all namespaces of the machine, 1024 entries by default
(net.ipv6.neigh.default.gc_thresh3): a 217-node mesh (894 link ends) with other meshes beside it overflows it
("neighbour table overflow"), sends fail and healthy links go down. Permanent entries are exempt from that limit.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass

from mininet.node import Host

from node.leases.tc_plan import handle_text
from testbed.agent_configs import htb_plans as lease_htb_plans
from node.agent.netns import in_netns
from testbed.netlink_batch import Batch, Templates, dump_links, netlink_socket
from testbed.runs import TAG_VAR, Run, netns_inode, proc_start_time
from testbed.topology import Topology
from testbed.waiting import wait_until

MNEXEC = "mnexec"
DEFAULT_MTU = 65535  # the agents size their TUN MTU to fit one frame of this underlay
BATCH_NODES = 64  # namespaces created per step (progress and journal granularity)


class BackendError(RuntimeError):
    pass


def run_prefix(run_id: str) -> ipaddress.IPv6Network:
    """A ULA /48 (RFC 4193 style: fd + 40 bits) derived from the run id, so concurrent runs never share one."""
    h = hashlib.sha256(run_id.encode()).digest()
    return ipaddress.IPv6Network((b"\xfd" + h[:5] + bytes(10), 48))


def link_macs(link_no: int) -> tuple[str, str]:
    """The a and b side MAC addresses of link number ``link_no`` (locally administered, unique in a run)."""
    tail = ":".join(f"{b:02x}" for b in link_no.to_bytes(4, "big"))
    return f"02:0a:{tail}", f"02:0b:{tail}"


def link_addresses(prefix: ipaddress.IPv6Network, link_no: int) -> tuple[str, str]:
    if link_no >= 1 << 16:
        raise BackendError(f"too many links for one run ({link_no + 1} > 65536)")
    base = int(prefix.network_address) | (link_no << 64)
    return str(ipaddress.IPv6Address(base | 1)), str(ipaddress.IPv6Address(base | 2))


class PktHost(Host):
    """A Mininet host whose namespace outlives the orchestrator.

    `pid` is the namespace holder; `popen`/`pexec` (from Mininet) run commands through `mnexec -a pid`, and
    `cmd` runs one shell command there and returns its output, as Mininet's `cmd` does.
    """

    def __init__(self, name, run_tag: str, **params):
        self.run_tag = run_tag
        super().__init__(name, **params)

    def startShell(self, mnopts=None):  # noqa: N802 (Mininet's name): the holder stands in for the shell
        self.pid = spawn_holder(self.run_tag, self.name)
        self.shell = None

    def env(self) -> dict:
        return dict(os.environ, **{TAG_VAR: self.run_tag, "PKTLAB_NODE": self.name})

    def popen(self, *args, **kwargs):
        kwargs.setdefault("env", self.env())
        return super().popen(*args, **kwargs)

    def cmd(self, *args, **kwargs):
        command = " ".join(str(a) for a in args)
        out, err, _code = self.pexec(["bash", "-c", command])
        return out + err

    def terminate(self):
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


_DEVNULL = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
            (os.POSIX_SPAWN_DUP2, 0, 2)]


def spawn_holder(run_tag: str, node: str) -> int:
    """Start a detached process in a new network namespace; returns its pid (mnexec execs sleep in place).

    Not `mnexec -c`: closing every possible descriptor costs milliseconds per node, and Python's own descriptors are
    close-on-exec anyway; the standard ones point at /dev/null so a holder never keeps a caller's pipe open.
    """
    env = dict(os.environ, **{TAG_VAR: run_tag, "PKTLAB_NODE": node})
    return os.posix_spawnp(MNEXEC, [MNEXEC, "-dn", "sleep", "infinity"], env, file_actions=_DEVNULL)


@dataclass
class LinkRecord:
    name: str
    a: str
    b: str
    a_if: str
    b_if: str
    a_addr: str
    b_addr: str


class NetnsBackend:
    """Builds a topology as namespaces and veth links for one run."""

    def __init__(self, run: Run, topo: Topology, mtu: int = DEFAULT_MTU):
        self.run = run
        self.topo = topo
        self.mtu = mtu
        self.hosts: dict[str, PktHost] = {}
        self.links: list[LinkRecord] = []
        self._fds: dict[str, int] = {}
        self._socks: dict = {}
        self._tpl = Templates()

    # -- building ---------------------------------------------------------------------------------------------
    def build(self, progress=lambda step, done, total: None) -> None:
        """Create namespaces, links, addresses and shaping; the journal is updated as objects appear."""
        names = list(self.topo.nodes)
        self.run.state["prefix"] = str(run_prefix(self.run.id))
        for start in range(0, len(names), BATCH_NODES):
            chunk = names[start:start + BATCH_NODES]
            for n in chunk:
                self.hosts[n] = PktHost(n, self.run.id)
            self._wait_namespaces(chunk)
            self.run.save()
            progress("namespaces", start + len(chunk), len(names))
        self._create_links(progress)
        self._configure(progress)
        self.run.state["links"] = [vars(l) for l in self.links]
        self.run.save()

    def _wait_namespaces(self, names, timeout=10.0) -> None:
        """A holder's namespace exists once /proc/PID/ns/net differs from ours: only then may we configure it."""
        mine = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + timeout
        for n in names:
            pid = self.hosts[n].pid

            failed = BackendError(f"node {n}: namespace holder (pid {pid}) did not start")

            def its_own(pid=pid):
                ino = netns_inode(pid)
                if ino is None:          # the holder is gone
                    raise failed
                return ino if ino != mine else 0
            ino = wait_until(its_own, max(0.0, deadline - time.monotonic()), interval=0.001)
            if not ino:
                raise failed
            self._fds[n] = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            self.run.state["nodes"][n] = {"pid": pid, "start": proc_start_time(pid), "netns": ino}

    def _create_links(self, progress) -> None:
        prefix = run_prefix(self.run.id)
        host_sock = netlink_socket()
        try:
            batch = Batch(host_sock)
            counters = {n: 0 for n in self.topo.nodes}
            for i, link in enumerate(self.topo.links):
                a_if = f"{link.a}-eth{counters[link.a]}"
                b_if = f"{link.b}-eth{counters[link.b]}"
                counters[link.a] += 1
                counters[link.b] += 1
                a_addr, b_addr = link_addresses(prefix, i)
                self.links.append(LinkRecord(link.name, link.a, link.b, a_if, b_if, a_addr, b_addr))
                batch.add(self._tpl.veth(a_if, self._fds[link.a], b_if, self._fds[link.b], self.mtu,
                                         f"pktlab:{self.run.id}:{link.name}", link_macs(i)), f"link {link.name}")
                if len(batch) >= 256:
                    batch.flush()
                    progress("links", i + 1, len(self.topo.links))
            batch.flush()
            progress("links", len(self.topo.links), len(self.topo.links))
        finally:
            host_sock.close()

    def _configure(self, progress) -> None:
        """Per namespace: lo and every link up, the link's address, HTB shaping where the link has a rate."""
        by_node: dict[str, list[tuple]] = {n: [] for n in self.topo.nodes}
        lease_plans = lease_htb_plans(self.topo)  # (node, link number) -> per-lease HTB plan (testbed/agent_configs.py)
        plans = {}
        for i, (rec, link) in enumerate(zip(self.links, self.topo.links)):
            a_mac, b_mac = link_macs(i)
            by_node[rec.a].append((rec.a_if, rec.a_addr, link.ab, rec.b_addr, b_mac))
            by_node[rec.b].append((rec.b_if, rec.b_addr, link.ba, rec.a_addr, a_mac))
            for node, ifname in ((rec.a, rec.a_if), (rec.b, rec.b_if)):
                plans[(node, ifname)] = lease_plans.get((node, i))
        up, htb = self._tpl.link_up(), self._tpl.htb_root()
        total = len(by_node)
        for done, (node, ifaces) in enumerate(by_node.items(), 1):
            with in_netns(self._fds[node]):
                sock = netlink_socket()
            try:
                index = dump_links(sock)
                batch = Batch(sock)
                batch.add(up, f"{node}: lo up", index["lo"])
                for ifname, addr, params, peer_addr, peer_mac in ifaces:
                    idx = index[ifname]
                    batch.add(up, f"{node}: {ifname} up", idx)
                    batch.add(self._tpl.addr6(addr, 64), f"{node}: {ifname} address {addr}", idx)
                    batch.add(self._tpl.neighbour6(peer_addr, peer_mac), f"{node}: {ifname} neighbour {peer_addr}",
                              idx)
                    if plans[(node, ifname)]:
                        for msg, what in lease_htb_messages(self._tpl, plans[(node, ifname)]):
                            batch.add(msg, f"{node}: {ifname} {what}", idx)
                    elif params.rate_bps:
                        batch.add(htb, f"{node}: {ifname} htb", idx)
                        batch.add(self._tpl.htb_class(params.rate_bps), f"{node}: {ifname} rate", idx)
                batch.flush()
            finally:
                sock.close()
            if done % 32 == 0 or done == total:
                progress("configure", done, total)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._tpl.close()


def exec_in(run: Run, node: str, argv: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start a command inside a node of a running run (tagged, so the run's cleanup finds it)."""
    rec = run.state.get("nodes", {}).get(node)
    if rec is None:
        raise BackendError(f"run {run.name} has no node {node!r}")
    env = dict(os.environ, **{TAG_VAR: run.id, "PKTLAB_NODE": node})
    return subprocess.Popen([MNEXEC, "-a", str(rec["pid"])] + argv, env=env, **popen_kwargs)


def lease_htb_messages(templates: Templates, plan: dict):
    """(netlink message, description) pairs that install a lease HTB plan (tc_plan.htb_plan) on one interface
    (ifindex stamped later)."""
    yield templates.htb_root(default_class=plan["root"]["default"]), "htb (lease plan)"
    for c in plan["classes"]:
        classid, parent = handle_text(c["handle"]), handle_text(c["parent"])
        yield (templates.htb_class(c["rate_bps"], c["ceil_bps"], classid, parent, prio=c["prio"]),
               f"class {classid} ({c['lease'] or 'link'})")
