"""Node names inside the nodes: the run's hosts file, bind-mounted over /etc/hosts in every node.

Each node's namespace holder is started by `mnexec -n`, which gives it a network namespace and a mount namespace
of its own (with mounts private, so nothing propagates to the host); commands and agents enter both (`mnexec -a`).
Binding `RUN/hosts` over /etc/hosts in each node's mount namespace makes `ping r3c3` or `iperf3 -c r3c3` work
inside any node, as Mininet's users expect, while the host's /etc/hosts stays untouched. The file maps every node
name to its fc00::/8 address; it is written before the mounts and only ever rewritten in place.

Mounting is done by one short process (`python -m testbed.hosts HOSTS PID...`) that enters each node's mount
namespace in turn (setns needs a single-threaded process) and binds the file there.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
HEADER = "# pktlab: the nodes of run {run} (RUN/hosts, bind-mounted over /etc/hosts in every node)\n"
BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts_text(run_name: str, addresses: dict[str, str]) -> str:
    return HEADER.format(run=run_name) + BASE + "".join(f"{ip6}\t{name}\n" for name, ip6 in addresses.items())


def write_and_mount(path, run_name: str, addresses: dict[str, str], pids: list[int], env=None) -> None:
    """Write the hosts file and bind it over /etc/hosts in the mount namespace of each namespace holder."""
    text = hosts_text(run_name, addresses)
    with open(path, "w") as f:       # in place: an existing bind mount shows the new content
        f.write(text)
    r = subprocess.run([sys.executable, "-m", "testbed.hosts", str(path)] + [str(p) for p in pids], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise OSError(f"binding {path} over /etc/hosts in the nodes failed: {r.stdout.strip()[-300:]}")


def _mount_in(libc, hosts: str, pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the mount namespace of pid {pid}")
    finally:
        os.close(fd)
    if libc.mount(hosts.encode(), b"/etc/hosts", None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind {hosts} over /etc/hosts for pid {pid}")


def main(argv: list[str]) -> int:
    hosts, pids = os.path.abspath(argv[0]), [int(p) for p in argv[1:]]
    libc = ctypes.CDLL(None, use_errno=True)
    host_ns = os.stat("/proc/self/ns/mnt").st_ino
    try:
        for pid in pids:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino == host_ns:
                print(f"pid {pid} shares the host's mount namespace: not binding over the host's /etc/hosts")
                return 1
            _mount_in(libc, hosts, pid)
    except OSError as e:
        print(f"{e.strerror or e} ({os.strerror(e.errno) if isinstance(e.errno, int) else ''})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
