"""Work inside one node's network namespace, given a descriptor of it: configure its interfaces, take one down or
up, send raw UDP from it.

Shared by the namespace backend (on this machine) and the host helper that does the same on SSH hosts and VMs
(backends/remote_host.py), so it imports nothing but pyroute2, the netlink batches, node.agent.netns and the pure
lease tc plan: that is all a host needs besides the agent.
"""
from __future__ import annotations

import contextlib
import socket
import struct

from node.agent.netns import in_netns
from node.leases.tc_plan import handle_text
from testbed.netlink_batch import Batch, Templates, dump_links, netlink_socket


def configure(fd: int, node: str, ifaces: list[tuple], tpl: Templates) -> None:
    """lo and every interface up, its address (/64), a permanent neighbour entry for the other end (its address and
    fixed MAC: see backends/netns.py), and its shaping: a lease plan's HTB classes, else one HTB class at the link's
    rate. `ifaces`: (ifname, address, rate in bit/s or 0, lease plan or None, peer address, peer MAC)."""
    with in_netns(fd):
        sock = netlink_socket()
    try:
        index = dump_links(sock)
        batch = Batch(sock)
        up, htb = tpl.link_up(), tpl.htb_root()
        batch.add(up, f"{node}: lo up", index["lo"])
        for ifname, addr, rate_bps, plan, peer_addr, peer_mac in ifaces:
            idx = index[ifname]
            batch.add(up, f"{node}: {ifname} up", idx)
            batch.add(tpl.addr6(addr, 64), f"{node}: {ifname} address {addr}", idx)
            batch.add(tpl.neighbour6(peer_addr, peer_mac), f"{node}: {ifname} neighbour {peer_addr}", idx)
            if plan:
                for msg, what in lease_htb_messages(tpl, plan):
                    batch.add(msg, f"{node}: {ifname} {what}", idx)
            elif rate_bps:
                batch.add(htb, f"{node}: {ifname} htb", idx)
                batch.add(tpl.htb_class(rate_bps), f"{node}: {ifname} rate", idx)
        batch.flush()
    finally:
        sock.close()


def lease_htb_messages(templates: Templates, plan: dict):
    """(netlink message, description) pairs that install a lease HTB plan (tc_plan.htb_plan) on one interface
    (ifindex stamped later)."""
    yield templates.htb_root(default_class=plan["root"]["default"]), "htb (lease plan)"
    for c in plan["classes"]:
        classid, parent = handle_text(c["handle"]), handle_text(c["parent"])
        yield (templates.htb_class(c["rate_bps"], c["ceil_bps"], classid, parent, prio=c["prio"]),
               f"class {classid} ({c['lease'] or 'link'})")


def set_link_state(fd: int, ifname: str, addr: str, up: bool) -> None:
    """Set one interface of the namespace down or up; raises LookupError if it has no such interface."""
    from pyroute2 import IPRoute
    with in_netns(fd):
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if not idx:
                raise LookupError(ifname)
            if up:
                _no_dad(ifname)
            ipr.link("set", index=idx[0], state="up" if up else "down")
            if up:
                _restore_address(ipr, idx[0], addr)


def _no_dad(ifname: str) -> None:
    """Without this an interface coming back up holds its address "tentative" for a second or two (duplicate
    address detection), and the agent's socket bound to it cannot send. /proc/sys/net follows the calling
    thread's namespace, so this must run inside in_netns."""
    for name in ("accept_dad", "dad_transmits"):
        with contextlib.suppress(OSError), open(f"/proc/sys/net/ipv6/conf/{ifname}/{name}", "w") as f:
            f.write("0")


def _restore_address(ipr, index: int, addr: str) -> None:
    """An interface that went down keeps its address, but be sure (the peer link socket is bound to it)."""
    have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET6)}
    if addr not in have:
        ipr.addr("add", index=index, address=addr, prefixlen=64)


def send_raw_udp(fd: int, src: str, dst: str, sport: int, dport: int, payloads: list[bytes]) -> None:
    """UDP datagrams with a chosen source port, from a raw socket made inside the namespace."""
    with in_netns(fd):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, 7, 6)     # IPV6_CHECKSUM: the kernel fills the UDP checksum
        s.bind((src, 0))
        for p in payloads:
            s.sendto(struct.pack("!HHHH", sport, dport, 8 + len(p), 0) + p, (dst, 0))
    finally:
        s.close()
