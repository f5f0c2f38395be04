"""The host helper: a run's work on one SSH host or VM, as root, from the copy of the project Ansible put there.

    sudo env PYTHONPATH=CODE python3 -m testbed.backends.remote_host --dir DIR --id TAG COMMAND [ARGS] < INPUT

DIR is the host's directory for the run ({root}/runs/RUN_ID) and TAG the host's share of the run (`RUN_ID@HOST`):
every process it starts carries PKTLAB_RUN=TAG and every interface `pktlab:TAG:...` as its alias, and DIR/state.json
is a journal in the format of testbed/runs.py, so `destroy` is exactly the cleanup a run gets on one machine. Input
and output are JSON (stdin, one line on stdout); a failure is a message on stderr and exit status 1.

    build             namespaces (a holder process each: `unshare --net sleep infinity`), links, addresses, shaping.
                      Input: {"nodes": [...], "veths": [{name, a, a_if, a_mac, b, b_if, b_mac}], "tunnels": [{name,
                      node, ifname, mac, vni, local, remote, port}], "nics": [{name, node, ifname, mac}], "ifaces":
                      {node: [[ifname, address, rate_bps, lease plan, peer address, peer MAC]]}, "mtu": N}. veth:
                      both ends on this host; tunnel: this host's end of a link to another host, a VXLAN device
                      (kernel) between the two host addresses; nic: an interface the host already has (a VM's NIC
                      on the link's own network), found by MAC address. Every link end has a fixed MAC and a
                      permanent neighbour entry for the other end (as in backends/netns.py).
                      Output: {node: {pid, start, netns}}. On failure what was made is removed again.
    start-agents      Input: {"groups": [[node, ...]], "configs": {node: agent config}}: one agent process per group,
                      its sockets and logs in DIR/nodes/NODE/. Output: {node: {pid, start}}.
    stop-agent NODE SIGNAL TIMEOUT | signal NODE SIGNAL | agent-state NODE (output: state letter or null)
    link-state up|down   Input: [{node, ifname, addr}]
    send-udp          Input: {node, src, dst, sport, dport, payloads: [hex]}
    status            Output: {node: {alive, agent}}
    destroy           stop everything of TAG on this host, give moved NICs back, remove DIR (idempotent)

Commands in a node run through `nsenter --net=/proc/HOLDER/ns/net` straight from the SSH session (see ssh.py); they
need no helper.

Only the standard library, pyroute2 and the project's node/ and runs/netlink modules are imported here: a Debian host
needs python3, python3-pyroute2, python3-nacl, python3-networkx and python3-scipy (for the agent), nothing from PyPI.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from testbed import runs
from testbed.backends import nsops
from testbed.netlink_batch import Batch, Templates, netlink_socket

VXLAN_OVERHEAD = {socket.AF_INET: 50, socket.AF_INET6: 70}   # outer IP + UDP + VXLAN + inner Ethernet


class HostError(RuntimeError):
    pass


class Host:
    """This host's share of a run: its journal, namespaces and agents."""

    def __init__(self, directory: Path, tag: str):
        self.dir = directory
        self.tag = tag
        try:
            self.run = runs.Run(tag, directory, json.loads((directory / "state.json").read_text()))
        except FileNotFoundError:
            self.run = runs.Run(tag, directory, {"name": tag, "id": tag, "status": "building", "nodes": {},
                                                 "agents": {}, "nics": [], "owner": None})

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run.save()

    def env(self, node: str | None = None) -> dict:
        env = dict(os.environ, **{runs.TAG_VAR: self.tag})
        if node:
            env["PKTLAB_NODE"] = node
        return env

    def node(self, name: str) -> dict:
        rec = self.run.state["nodes"].get(name)
        if rec is None:
            raise HostError(f"node {name} is not on this host")
        return rec

    def netns_path(self, name: str) -> str:
        return f"/proc/{self.node(name)['pid']}/ns/net"

    def netns_fd(self, name: str) -> int:
        rec = self.node(name)
        if not runs.alive(rec["pid"], rec.get("start")):
            raise HostError(f"node {name}: its namespace holder is gone")
        return os.open(self.netns_path(name), os.O_RDONLY)

    # -- build -------------------------------------------------------------------------------------------------
    def build(self, spec: dict) -> dict:
        self.save()
        try:
            fds = self._namespaces(spec["nodes"])
            try:
                tpl = Templates()
                self._veths(spec.get("veths", []), fds, tpl, spec.get("mtu", 65535))
                self._tunnels(spec.get("tunnels", []), fds)
                self._nics(spec.get("nics", []), fds)
                for node, ifaces in spec.get("ifaces", {}).items():
                    nsops.configure(fds[node], node, [tuple(i) for i in ifaces], tpl)
            finally:
                for fd in fds.values():
                    os.close(fd)
        except BaseException:
            self.destroy()
            raise
        self.run.state["status"] = "ready"
        self.save()
        return self.run.state["nodes"]

    def _namespaces(self, nodes: list[str], timeout: float = 10.0) -> dict[str, int]:
        """A detached holder process per node in a namespace of its own; recorded before it is configured."""
        devnull = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
                   (os.POSIX_SPAWN_DUP2, 0, 2)]
        mine = os.stat("/proc/self/ns/net").st_ino
        fds = {}
        for n in nodes:
            (self.dir / "nodes" / n).mkdir(parents=True, exist_ok=True)
            pid = os.posix_spawnp("unshare", ["unshare", "--net", "sleep", "infinity"], self.env(n),
                                  file_actions=devnull, setsid=True)
            self.run.state["nodes"][n] = {"pid": pid, "start": runs.proc_start_time(pid), "netns": None}
            self.save()
            deadline = time.monotonic() + timeout
            while (ino := runs.netns_inode(pid)) in (None, mine):
                if ino is None or time.monotonic() > deadline:
                    raise HostError(f"node {n}: namespace holder (pid {pid}) did not start")
                time.sleep(0.002)
            self.run.state["nodes"][n].update(netns=ino, start=runs.proc_start_time(pid))
            fds[n] = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        self.save()
        return fds

    def _veths(self, veths: list[dict], fds: dict, tpl: Templates, mtu: int) -> None:
        if not veths:
            return
        sock = netlink_socket()
        try:
            batch = Batch(sock)
            for v in veths:
                batch.add(tpl.veth(v["a_if"], fds[v["a"]], v["b_if"], fds[v["b"]], mtu,
                                   f"pktlab:{self.tag}:{v['name']}", (v["a_mac"], v["b_mac"])), f"link {v['name']}")
            batch.flush()
        finally:
            sock.close()

    def _tunnels(self, tunnels: list[dict], fds: dict) -> None:
        """VXLAN devices made here (their UDP socket stays in this namespace, on the host's address) and created
        straight inside the node's namespace."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        if not tunnels:
            return
        with IPRoute() as ipr:
            for t in tunnels:
                family = socket.AF_INET6 if ":" in t["local"] else socket.AF_INET
                mtu = self._underlay_mtu(ipr, t["local"], family) - VXLAN_OVERHEAD[family]
                v6 = "6" if family == socket.AF_INET6 else ""
                try:
                    ipr.link("add", ifname=t["ifname"], kind="vxlan", vxlan_id=t["vni"], vxlan_port=t["port"],
                             **{f"vxlan_local{v6}": t["local"], f"vxlan_group{v6}": t["remote"]},
                             mtu=mtu, address=t["mac"], ifalias=f"pktlab:{self.tag}:{t['name']}",
                             net_ns_fd=fds[t["node"]])
                except NetlinkError as e:
                    hint = " (another run between these hosts uses it)" if e.code == 17 else ""
                    raise HostError(f"link {t['name']}: VXLAN {t['vni']} to {t['remote']}: {os.strerror(e.code)}"
                                    f"{hint}") from None

    @staticmethod
    def _underlay_mtu(ipr, local: str, family: int) -> int:
        for a in ipr.get_addr(family=family):
            if a.get_attr("IFA_ADDRESS") == local or a.get_attr("IFA_LOCAL") == local:
                return ipr.get_links(a["index"])[0].get_attr("IFLA_MTU")
        raise HostError(f"{local} is not an address of this host: the other hosts reach this one there "
                        "(set the host's tunnel_address in the inventory)")

    def _nics(self, nics: list[dict], fds: dict) -> None:
        """Move each NIC into its node's namespace under the link's interface name; `destroy` gives it back."""
        from pyroute2 import IPRoute
        if not nics:
            return
        with IPRoute() as ipr:
            by_mac = {l.get_attr("IFLA_ADDRESS"): l for l in ipr.get_links()}
            for nic in nics:
                link = by_mac.get(nic["mac"].lower())
                if link is None:
                    raise HostError(f"link {nic['name']}: no interface with MAC address {nic['mac']}")
                self.run.state["nics"].append({"node": nic["node"], "ifname": nic["ifname"],
                                               "original": link.get_attr("IFLA_IFNAME")})
                self.save()
                ipr.link("set", index=link["index"], state="down")
                ipr.link("set", index=link["index"], net_ns_fd=fds[nic["node"]], ifname=nic["ifname"])

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, spec: dict) -> dict:
        owner = int(os.environ.get("SUDO_UID", "0"))  # the SSH user reaches the sockets (direct-streamlocal)
        started = {}
        for group in spec["groups"]:
            paths = []
            for n in group:
                d = self.dir / "nodes" / n
                cfg = dict(spec["configs"][n], control_socket=str(d / "agent.sock"), log_file=str(d / "agent.log"),
                           state_dir=str(d))
                if owner:
                    cfg["control_socket_owner"] = owner
                (d / "agent.json").write_text(json.dumps(cfg, indent=1))
                paths.append(str(d / "agent.json"))
            argv = [sys.executable, "-m", "node.agent"]
            if len(group) == 1:
                argv = ["nsenter", f"--net={self.netns_path(group[0])}", "--"] + argv + paths
            else:
                for n, path in zip(group, paths):
                    argv += ["--netns", self.netns_path(n), path]
            with open(self.dir / "nodes" / group[0] / "agent.stderr", "ab") as log:
                pid = os.posix_spawnp(argv[0], argv, self.env(group[0] if len(group) == 1 else None), setsid=True,
                                      file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                                                    (os.POSIX_SPAWN_DUP2, log.fileno(), 2)])
            if any(spec["configs"][n].get("route_server", {}).get("serve") for n in group):
                runs.raise_priority(pid)
            rec = {"pid": pid, "start": runs.proc_start_time(pid)}
            for n in group:
                self.run.state["agents"][n] = started[n] = rec
            self.save()
        return started

    def _agent(self, node: str) -> dict | None:
        rec = self.run.state["agents"].get(node)
        return rec if rec and runs.alive(rec["pid"], rec.get("start")) else None

    def stop_agent(self, node: str, sig: int, timeout: float) -> None:
        rec = self._agent(node)
        if rec is None:
            return
        os.kill(rec["pid"], sig)
        deadline = time.monotonic() + timeout
        while runs.alive(rec["pid"], rec["start"]) and time.monotonic() < deadline:
            time.sleep(0.02)

    def signal(self, node: str, sig: int) -> None:
        rec = self._agent(node)
        if rec is not None:
            os.kill(rec["pid"], sig)

    def agent_state(self, node: str) -> str | None:
        rec = self._agent(node)
        return runs.proc_state(rec["pid"]) if rec else None

    # -- inside nodes ----------------------------------------------------------------------------------------------
    def link_state(self, ends: list[dict], up: bool) -> None:
        for e in ends:
            fd = self.netns_fd(e["node"])
            try:
                nsops.set_link_state(fd, e["ifname"], e["addr"], up)
            except LookupError:
                raise HostError(f"node {e['node']} has no interface {e['ifname']}") from None
            finally:
                os.close(fd)

    def send_udp(self, spec: dict) -> None:
        fd = self.netns_fd(spec["node"])
        try:
            nsops.send_raw_udp(fd, spec["src"], spec["dst"], spec["sport"], spec["dport"],
                               [bytes.fromhex(p) for p in spec["payloads"]])
        finally:
            os.close(fd)

    def status(self) -> dict:
        return {n: {"alive": runs.alive(rec["pid"], rec.get("start")),
                    "agent": bool(self._agent(n)) if n in self.run.state["agents"] else None}
                for n, rec in self.run.state["nodes"].items()}

    # -- cleanup -------------------------------------------------------------------------------------------------
    def destroy(self) -> None:
        """NICs back to the host under their own names, then what runs.destroy does on one machine."""
        from pyroute2 import IPRoute
        for nic in self.run.state.get("nics", []):
            rec = self.run.state["nodes"].get(nic["node"])
            if not rec or not runs.alive(rec["pid"], rec.get("start")):
                continue   # its namespace is gone already: the kernel gave the NIC back (keep its name if free)
            host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
            fd = os.open(f"/proc/{rec['pid']}/ns/net", os.O_RDONLY)
            try:
                from node.agent.netns import in_netns
                with in_netns(fd), IPRoute() as ipr:
                    idx = ipr.link_lookup(ifname=nic["ifname"])
                    if idx:
                        ipr.link("set", index=idx[0], state="down")
                        ipr.link("set", index=idx[0], net_ns_fd=host_ns, ifname=nic["original"])
            finally:
                os.close(fd)
                os.close(host_ns)
        runs.destroy(self.run)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m testbed.backends.remote_host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--id", required=True)
    p.add_argument("command", choices=("build", "start-agents", "stop-agent", "signal", "agent-state", "link-state",
                                       "send-udp", "status", "destroy"))
    p.add_argument("args", nargs="*")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("pktlab host helper: needs root (run through sudo)", file=sys.stderr)
        return 1
    host = Host(args.dir, args.id)
    a = args.args
    stdin = lambda: json.load(sys.stdin)  # noqa: E731
    try:
        result = {
            "build": lambda: host.build(stdin()),
            "start-agents": lambda: host.start_agents(stdin()),
            "stop-agent": lambda: host.stop_agent(a[0], int(a[1]), float(a[2])),
            "signal": lambda: host.signal(a[0], int(a[1])),
            "agent-state": lambda: host.agent_state(a[0]),
            "link-state": lambda: host.link_state(stdin(), a[0] == "up"),
            "send-udp": lambda: host.send_udp(stdin()),
            "status": host.status,
            "destroy": host.destroy,
        }[args.command]()
    except (HostError, runs.RunError, OSError, KeyError, IndexError, ValueError) as e:
        print(f"{args.command}: {type(e).__name__ + ': ' if isinstance(e, (KeyError, IndexError)) else ''}{e}",
              file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
