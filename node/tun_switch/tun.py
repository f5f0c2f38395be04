"""The node's TUN device: /dev/net/tun in IFF_TUN|IFF_NO_PI mode carrying its fc00::/8 address.

The device is not persistent: closing the file descriptor (or the process dying) removes it.
Addresses and link state are set over netlink with pyroute2, in the namespace the process runs in.
"""

import fcntl
import os
import socket
import struct

from pyroute2 import IPRoute

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFA_F_NODAD = 0x02


class TunError(Exception):
    pass


class Tun:
    """An open, configured TUN device. read()/write() move one IPv6 packet each."""

    def __init__(self, ifname, ip6, mtu, prefixlen=8):
        if len(ifname.encode()) >= 16:
            raise TunError(f"tun ifname {ifname!r} is longer than 15 characters")
        self.ifname = ifname
        self.mtu = mtu
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise TunError(f"cannot open /dev/net/tun: {e}") from e
        try:
            ifr = struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(self.fd, TUNSETIFF, ifr)
            self._configure(ip6, mtu, prefixlen)
        except Exception as e:
            os.close(self.fd)
            raise TunError(f"cannot set up TUN {ifname}: {e}") from e

    def _configure(self, ip6, mtu, prefixlen):
        address = socket.inet_ntop(socket.AF_INET6, ip6) if isinstance(ip6, bytes) else ip6
        # No link-local address: it would only make the kernel send router/neighbour solicitations into us.
        try:
            with open(f"/proc/sys/net/ipv6/conf/{self.ifname}/addr_gen_mode", "w") as f:
                f.write("1")
        except OSError:
            pass
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.ifname)[0]
            ipr.link("set", index=index, mtu=mtu)
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen, flags=IFA_F_NODAD)
            ipr.link("set", index=index, state="up")
        self.index = index

    def fileno(self):
        return self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
