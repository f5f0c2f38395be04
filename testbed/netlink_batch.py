"""Batched netlink work across many network namespaces.

Building a mesh means thousands of small rtnetlink requests (bring a link up, add an address, add a qdisc and a
class). Sent one by one through pyroute2's request pipeline each costs about a millisecond of Python, so instead
pyroute2 compiles each *kind* of message once (`IPBatch`) and we stamp the per-interface fields (ifindex, sequence
number) into copies of those bytes; a whole namespace's configuration then goes to the kernel in a few `send` calls
on one raw netlink socket, and the acknowledgements are read back in bulk.

`in_netns(fd)` (node/netns.py) switches only the calling thread, so sockets made inside stay bound to that namespace
after we switch back: the orchestrator can hold one socket per node without forking a process per namespace.
"""
from __future__ import annotations

import errno
import os
import socket
import struct

from pyroute2 import IPBatch

NETLINK_CAP_ACK = 10  # acks carry only the request header, not the whole request
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
IFLA_IFNAME = 3
_PLACEHOLDER6 = "fd00:5eed:5eed:5eed:5eed:5eed:5eed:5eed"
_PLACEHOLDER_MAC = "02:5e:ed:5e:ed:5e"
NUD_PERMANENT = 0x80
CHUNK = 32 * 1024  # bytes per send: well under the default socket buffers

def netlink_socket() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.setsockopt(270, NETLINK_CAP_ACK, 1)  # SOL_NETLINK
    s.bind((0, 0))
    return s


class NetlinkError(RuntimeError):
    """Some requests of a batch failed; `failures` lists (what, errno) pairs."""

    def __init__(self, failures: list[tuple[str, int]]):
        self.failures = failures
        shown = "; ".join(f"{what}: {os.strerror(code)}" for what, code in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} netlink requests failed: {shown}{more}")


class Templates:
    """Messages compiled once by pyroute2, then stamped per interface (offset 20 is the ifindex in ifinfomsg,
    ifaddrmsg and tcmsg alike; offset 8 is the sequence number)."""

    def __init__(self):
        self._cache: dict[tuple, bytes] = {}

    @staticmethod
    def _build(build) -> bytes:
        # a short-lived IPBatch per message: pyroute2 gives each object an event loop per calling thread that only
        # close() in that same thread releases, and a loop left to the garbage collector at exit prints a traceback
        with IPBatch() as ipb:
            build(ipb)
            return bytes(ipb.batch)

    def _compile(self, key, build) -> bytes:
        if key not in self._cache:
            self._cache[key] = self._build(build)
        return self._cache[key]

    def link_up(self) -> bytes:
        return self._compile(("up",), lambda b: b.link("set", index=1, state="up"))

    def htb_root(self, default_class: int = 1) -> bytes:
        return self._compile(("htb", default_class),
                             lambda b: b.tc("add", "htb", index=1, handle="1:", default=default_class))

    def htb_class(self, rate_bps: int, ceil_bps: int | None = None, classid: str = "1:1", parent: str = "1:",
                  prio: int | None = None) -> bytes:
        ceil_bps = ceil_bps or rate_bps
        extra = {} if prio is None else {"prio": prio}
        return self._compile(("class", rate_bps, ceil_bps, classid, parent, prio),
                             lambda b: b.tc("add-class", "htb", index=1, handle=classid, parent=parent,
                                            rate=f"{rate_bps}bit", ceil=f"{ceil_bps}bit", **extra))

    def addr6(self, address: str, prefixlen: int) -> bytes:
        """The address is stamped too: wherever the template's placeholder address stands (IFA_ADDRESS, IFA_LOCAL)."""
        # nodad: the per-link addresses are ours alone, and DAD would delay the first packets by a second
        template = self._compile(("addr6", prefixlen),
                                 lambda b: b.addr("add", index=1, address=_PLACEHOLDER6, prefixlen=prefixlen,
                                                  flags=0x02, family=socket.AF_INET6))
        return template.replace(socket.inet_pton(socket.AF_INET6, _PLACEHOLDER6),
                                socket.inet_pton(socket.AF_INET6, address))

    def neighbour6(self, address: str, mac: str) -> bytes:
        """A permanent neighbour entry (address -> MAC); address and MAC are stamped into one compiled template."""
        template = self._compile(("neigh6",), lambda b: b.neigh("add", index=1, dst=_PLACEHOLDER6,
                                                                lladdr=_PLACEHOLDER_MAC, state=NUD_PERMANENT,
                                                                family=socket.AF_INET6))
        return template.replace(socket.inet_pton(socket.AF_INET6, _PLACEHOLDER6),
                                socket.inet_pton(socket.AF_INET6, address)) \
            .replace(bytes.fromhex(_PLACEHOLDER_MAC.replace(":", "")), bytes.fromhex(mac.replace(":", "")))

    def veth(self, name_a: str, fd_a: int, name_b: str, fd_b: int, mtu: int, alias: str,
             macs: tuple[str, str]) -> bytes:
        """Both ends are created directly inside their namespaces, so names never meet in the host namespace."""
        return self._build(lambda b: b.link(
            "add", ifname=name_a, kind="veth", net_ns_fd=fd_a, mtu=mtu, ifalias=alias, address=macs[0],
            peer={"ifname": name_b, "net_ns_fd": fd_b, "mtu": mtu, "ifalias": alias, "address": macs[1]}))


class Batch:
    """Requests queued for one netlink socket; `flush()` sends them and raises NetlinkError listing failures."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._msgs: list[bytes] = []
        self._what: dict[int, str] = {}
        self._seq = 0

    def add(self, template: bytes, what: str, ifindex: int | None = None) -> None:
        msg = bytearray(template)
        self._seq += 1
        struct.pack_into("=I", msg, 8, self._seq)
        if ifindex is not None:
            struct.pack_into("=i", msg, 20, ifindex)
        self._msgs.append(bytes(msg))
        self._what[self._seq] = what

    def __len__(self):
        return len(self._msgs)

    def flush(self) -> None:
        failures: list[tuple[str, int]] = []
        pending = 0
        chunk = bytearray()
        for msg in self._msgs + [b""]:
            if msg and len(chunk) + len(msg) <= CHUNK:
                chunk += msg
                pending += 1
                continue
            if chunk:
                self.sock.send(chunk)
                failures += self._read_acks(pending)
            chunk, pending = bytearray(msg), (1 if msg else 0)
        self._msgs.clear()
        self._what.clear()
        if failures:
            raise NetlinkError(failures)

    def _read_acks(self, count: int) -> list[tuple[str, int]]:
        failures = []
        while count > 0:
            buf = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", buf, off)
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buf, off + 16)[0]
                    if code:
                        failures.append((self._what.get(seq, f"request {seq}"), code))
                    count -= 1
                off += (length + 3) & ~3 or len(buf)
        return failures


def dump_links(sock: socket.socket) -> dict[str, int]:
    """Interface name -> ifindex for the namespace the socket lives in."""
    hdr = struct.pack("=IHHII", 32, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    sock.send(hdr + bytes(16))
    links: dict[str, int] = {}
    while True:
        buf = sock.recv(1 << 20)
        off = 0
        while off + 16 <= len(buf):
            length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
            if kind == NLMSG_DONE:
                return links
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", buf, off + 16)[0]
                raise OSError(code or errno.EIO, f"link dump failed: {os.strerror(code)}")
            if kind == RTM_NEWLINK:
                index = struct.unpack_from("=i", buf, off + 20)[0]
                a = off + 32
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", buf, a)
                    if alen < 4:
                        break
                    if atype == IFLA_IFNAME:
                        links[buf[a + 4:a + alen].split(b"\0", 1)[0].decode()] = index
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3 or len(buf)
