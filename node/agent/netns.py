"""Entering a network namespace from one thread, so one process can hold sockets and TUN devices in many.

`setns(2)` on a thread moves only that thread; sockets and TUN devices keep the namespace they were made in after the
thread moves back. Used by the agent host (several nodes per process) and by the orchestrator's batched netlink.
"""
from __future__ import annotations

import contextlib
import ctypes
import os

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(fd: int):
    """Run the body in the network namespace `fd` (this thread only), always switching back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)
