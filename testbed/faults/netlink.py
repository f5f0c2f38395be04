"""Taking veth ends down and up inside the run's namespaces (pyroute2), for link-down, flap and partition."""
from __future__ import annotations

import contextlib
import os
import socket

from node.agent.netns import in_netns
from testbed import runs
from testbed.faults.base import End, FaultError


def netns_fd(mesh, node: str) -> int:
    """An open descriptor of a node's network namespace (close it after use)."""
    rec = mesh.run.state["nodes"][node]
    if not runs.alive(rec["pid"], rec.get("start")):
        raise FaultError(f"node {node}: its namespace holder is gone")
    return os.open(f"/proc/{rec['pid']}/ns/net", os.O_RDONLY)


def set_link_state(mesh, ends: list[End], up: bool) -> None:
    """Set veth ends up or down inside their namespaces (pyroute2)."""
    from pyroute2 import IPRoute
    for e in ends:
        fd = netns_fd(mesh, e.node)
        try:
            with in_netns(fd):
                with IPRoute() as ipr:
                    idx = ipr.link_lookup(ifname=e.ifname)
                    if not idx:
                        raise FaultError(f"node {e.node} has no interface {e.ifname}")
                    if up:
                        _no_dad(e.ifname)
                    ipr.link("set", index=idx[0], state="up" if up else "down")
                    if up:
                        _restore_address(ipr, idx[0], e.addr)
        finally:
            os.close(fd)


def _no_dad(ifname: str) -> None:
    """Without this a veth coming back up holds its address "tentative" for a second or two (duplicate
    address detection), and the agent's socket bound to it cannot send. /proc/sys/net follows the calling
    thread's namespace, so this must run inside in_netns."""
    for name in ("accept_dad", "dad_transmits"):
        with contextlib.suppress(OSError), open(f"/proc/sys/net/ipv6/conf/{ifname}/{name}", "w") as f:
            f.write("0")


def _restore_address(ipr, index: int, addr: str) -> None:
    """A veth that went down keeps its address, but be sure (the peer link socket is bound to it)."""
    have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET6)}
    if addr not in have:
        ipr.addr("add", index=index, address=addr, prefixlen=64)
