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

Priority: a route server's agent runs above the node hosts (runs.raise_priority, SERVER_PRIORITY).
"""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from mininet.node import Host

from testbed import runs
from testbed.agent_configs import htb_plans as lease_htb_plans
from testbed.backends import nsops
from testbed.backends.base import Backend, BackendError
from testbed.hosts import write_and_mount
from testbed.netlink_batch import Batch, Templates, netlink_socket
from testbed.runs import TAG_VAR, Run, netns_inode, proc_start_time
from testbed.topology import Topology
from testbed.waiting import wait_until

MNEXEC = "mnexec"
DEFAULT_MTU = 65535  # the agents size their TUN MTU to fit one frame of this underlay
BATCH_NODES = 64  # namespaces created per step (progress and journal granularity)


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


def plan_links(run_id: str, topo: Topology) -> list[LinkRecord]:
    """Each link's interface names (NODE-ethK, K counting the node's links in topology order) and addresses."""
    prefix = run_prefix(run_id)
    counters = {n: 0 for n in topo.nodes}
    records = []
    for i, link in enumerate(topo.links):
        a_if, b_if = f"{link.a}-eth{counters[link.a]}", f"{link.b}-eth{counters[link.b]}"
        counters[link.a] += 1
        counters[link.b] += 1
        records.append(LinkRecord(link.name, link.a, link.b, a_if, b_if, *link_addresses(prefix, i)))
    return records


def interfaces_by_node(topo: Topology, links: list[LinkRecord], macs=link_macs) -> dict[str, list[tuple]]:
    """node -> [(ifname, address, rate in bit/s, lease HTB plan or None, peer address, peer MAC)] for
    nsops.configure; `macs(link number)` gives the link's (a side, b side) MAC addresses."""
    by_node: dict[str, list] = {n: [] for n in topo.nodes}
    lease_plans = lease_htb_plans(topo)  # (node, link number) -> per-lease HTB plan (testbed/agent_configs.py)
    for i, (rec, link) in enumerate(zip(links, topo.links)):
        a_mac, b_mac = macs(i)
        by_node[rec.a].append((rec.a_if, rec.a_addr, link.ab.rate_bps, lease_plans.get((rec.a, i)), rec.b_addr, b_mac))
        by_node[rec.b].append((rec.b_if, rec.b_addr, link.ba.rate_bps, lease_plans.get((rec.b, i)), rec.a_addr, a_mac))
    return by_node


class NetnsBackend(Backend):
    """Builds a topology as namespaces and veth links for one run, on this machine."""

    name = "netns"

    def __init__(self, run: Run, topo: Topology | None = None, mtu: int = DEFAULT_MTU):
        super().__init__(run, topo)
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
        host_sock = netlink_socket()
        try:
            batch = Batch(host_sock)
            self.links = plan_links(self.run.id, self.topo)
            for i, rec in enumerate(self.links):
                batch.add(self._tpl.veth(rec.a_if, self._fds[rec.a], rec.b_if, self._fds[rec.b], self.mtu,
                                         f"pktlab:{self.run.id}:{rec.name}", link_macs(i)), f"link {rec.name}")
                if len(batch) >= 256:
                    batch.flush()
                    progress("links", i + 1, len(self.topo.links))
            batch.flush()
            progress("links", len(self.topo.links), len(self.topo.links))
        finally:
            host_sock.close()

    def _configure(self, progress) -> None:
        """Per namespace: lo and every link up, the link's address, HTB shaping where the link has a rate."""
        by_node = interfaces_by_node(self.topo, self.links)
        total = len(by_node)
        for done, (node, ifaces) in enumerate(by_node.items(), 1):
            nsops.configure(self._fds[node], node, ifaces, self._tpl)
            if done % 32 == 0 or done == total:
                progress("configure", done, total)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, groups, progress=lambda step, done, total: None) -> None:
        done = 0
        for nodes in groups:
            self._start_group(nodes)
            done += len(nodes)
            progress("agents", done, sum(map(len, groups)))

    def _start_group(self, nodes: list[str]) -> None:
        """One agent process for these nodes: inside the namespace for one node, a multi-node host for several."""
        configs = [str(self.run.path("nodes", n, "agent.json")) for n in nodes]
        for n in nodes:     # a killed agent leaves its socket behind: nothing may take it for the new agent's
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.run.path("nodes", n, "agent.sock"))
        log = open(self.run.path("nodes", nodes[0], "agent.stderr"), "ab")
        io = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        if len(nodes) == 1:
            proc = self.popen(nodes[0], [sys.executable, "-m", "node.agent", configs[0]], **io)
        else:  # runs in the host namespace; each node's TUN and sockets are made inside its own namespace
            argv = [sys.executable, "-m", "node.agent"]
            for n, cfg in zip(nodes, configs):
                argv += ["--netns", f"/proc/{self.run.state['nodes'][n]['pid']}/ns/net", cfg]
            proc = subprocess.Popen(argv, env=dict(os.environ, **{TAG_VAR: self.run.id}), **io)
        log.close()
        if any("route_server" in self.topo.nodes[n].roles for n in nodes):
            runs.raise_priority(proc.pid)
        start = proc_start_time(proc.pid)
        for n in nodes:
            self.run.state["agents"][n] = {"pid": proc.pid, "start": start}

    def _agent_process(self, node: str) -> dict | None:
        rec = self.run.state["agents"].get(node)
        return rec if rec and runs.alive(rec["pid"], rec.get("start")) else None

    def stop_agent(self, node, sig=signal.SIGTERM, timeout=10.0) -> None:
        rec = self._agent_process(node)
        if rec is None:
            return
        os.kill(rec["pid"], sig)

        def gone():
            try:
                os.waitpid(rec["pid"], os.WNOHANG)      # reap it if it is our child
            except ChildProcessError:
                pass
            return not runs.alive(rec["pid"], rec["start"])
        wait_until(gone, timeout, interval=0.02)

    def signal_agent(self, node, sig) -> None:
        rec = self._agent_process(node)
        if rec is not None:
            os.kill(rec["pid"], sig)

    def agent_state(self, node) -> str | None:
        rec = self._agent_process(node)
        return runs.proc_state(rec["pid"]) if rec else None

    # -- inside nodes --------------------------------------------------------------------------------------------
    def popen(self, node, argv, tty=False, **popen_kwargs) -> subprocess.Popen:
        rec = self.run.state.get("nodes", {}).get(node)
        if rec is None:
            raise BackendError(f"run {self.run.name} has no node {node!r}")
        env = dict(os.environ, **{TAG_VAR: self.run.id, "PKTLAB_NODE": node}, **popen_kwargs.pop("env", {}))
        return subprocess.Popen([MNEXEC, "-a", str(rec["pid"])] + list(argv), env=env, **popen_kwargs)

    def _netns_fd(self, node: str) -> int:
        rec = self.run.state["nodes"][node]
        if not runs.alive(rec["pid"], rec.get("start")):
            raise BackendError(f"node {node}: its namespace holder is gone")
        return os.open(f"/proc/{rec['pid']}/ns/net", os.O_RDONLY)

    def set_link_state(self, ends, up) -> None:
        for e in ends:
            fd = self._netns_fd(e.node)
            try:
                nsops.set_link_state(fd, e.ifname, e.addr, up)
            except LookupError:
                raise BackendError(f"node {e.node} has no interface {e.ifname}") from None
            finally:
                os.close(fd)

    def send_udp(self, node, src, dst, sport, dport, payloads) -> None:
        fd = self._netns_fd(node)
        try:
            nsops.send_raw_udp(fd, src, dst, sport, dport, payloads)
        finally:
            os.close(fd)

    def name_nodes(self, hosts_file, addresses) -> None:
        write_and_mount(hosts_file, self.run.name, addresses, [rec["pid"] for rec in self.run.state["nodes"].values()],
                        env=dict(os.environ, **{TAG_VAR: self.run.id}))

    # -- status ------------------------------------------------------------------------------------------------
    def node_states(self) -> dict[str, dict]:
        agents = self.run.state.get("agents", {})
        return {n: {"alive": runs.alive(rec["pid"], rec.get("start")), "host": None,
                    "agent": runs.alive(agents[n]["pid"], agents[n].get("start")) if n in agents else None}
                for n, rec in self.run.state.get("nodes", {}).items()}

