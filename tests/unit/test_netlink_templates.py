"""Netlink message templates of the netns backend (testbed/netlink_batch.py), checked byte by byte without root."""
import asyncio
import gc
import socket
import threading

from testbed.backends.netns import link_macs
from testbed.netlink_batch import NUD_PERMANENT, Templates


def test_neighbour_template_stamps_address_and_mac():
    """The permanent neighbour entries the netns backend installs (testbed/netlink_batch.py): one compiled template,
    the peer's address and MAC stamped in."""
    tpl = Templates()
    a_mac, b_mac = link_macs(0x123)
    assert (a_mac, b_mac) == ("02:0a:00:00:01:23", "02:0b:00:00:01:23")
    msg = tpl.neighbour6("fd12:3456::2", b_mac)
    other = tpl.neighbour6("fd12:3456::1", a_mac)
    assert len(msg) == len(other)
    assert socket.inet_pton(socket.AF_INET6, "fd12:3456::2") in msg and bytes.fromhex("020b00000123") in msg
    assert msg[16:18] == bytes([10, 0]) and msg[24] == NUD_PERMANENT      # ndmsg: AF_INET6, state PERMANENT


def test_templates_leave_no_event_loop_open():
    """pyroute2 gives each of its objects an asyncio loop per calling thread; one left open is finalized at
    interpreter exit after its self-pipe and prints "Exception ignored ... Invalid file descriptor" under every
    command that built a mesh. Templates used from a worker thread, as the backends do, must leave none behind."""
    def open_loops():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed())

    before = open_loops()
    tpl = Templates()
    worker = threading.Thread(target=lambda: (tpl.link_up(), tpl.htb_root(), tpl.addr6("fd00::1", 64)))
    worker.start()
    worker.join()
    tpl.veth("a", 0, "b", 0, 1500, "alias", link_macs(1))
    assert open_loops() == before
