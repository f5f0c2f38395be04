"""Netlink message templates of the netns backend (testbed/netlink_batch.py), checked byte by byte without root."""
import socket

from testbed.backends.netns import link_macs
from testbed.netlink_batch import NUD_PERMANENT, Templates


def test_neighbour_template_stamps_address_and_mac():
    """The permanent neighbour entries the netns backend installs (testbed/netlink_batch.py): one compiled template,
    the peer's address and MAC stamped in."""
    tpl = Templates()
    try:
        a_mac, b_mac = link_macs(0x123)
        assert (a_mac, b_mac) == ("02:0a:00:00:01:23", "02:0b:00:00:01:23")
        msg = tpl.neighbour6("fd12:3456::2", b_mac)
        other = tpl.neighbour6("fd12:3456::1", a_mac)
    finally:
        tpl.close()
    assert len(msg) == len(other)
    assert socket.inet_pton(socket.AF_INET6, "fd12:3456::2") in msg and bytes.fromhex("020b00000123") in msg
    assert msg[16:18] == bytes([10, 0]) and msg[24] == NUD_PERMANENT      # ndmsg: AF_INET6, state PERMANENT
