"""`pktlab doctor`: what this kernel and machine offer, and what pktlab emulates in userspace instead.

Qdiscs are probed for real, on a dummy interface inside a throw-away namespace of our own, so the host is never
touched.
"""
from __future__ import annotations

import os
import platform
import resource
import shutil
import signal

from pyroute2 import IPRoute

from testbed.backends.netns import spawn_holder
from node.agent.netns import in_netns
from testbed.runs import netns_inode

QDISCS = {
    "htb": {"kind": "htb", "handle": "1:", "default": 1},
    "tbf": {"kind": "tbf", "handle": "1:", "rate": "10mbit", "burst": 16000, "latency": 50},
    "pfifo": {"kind": "pfifo", "handle": "1:"},
    "clsact": {"kind": "clsact"},
    "netem": {"kind": "netem", "handle": "1:", "delay": 1000},
    "fq_codel": {"kind": "fq_codel", "handle": "1:"},
}
TOOLS = ["mnexec", "ip", "tc", "ping", "iperf3", "tcpdump", "yggdrasil"]


def probe_qdiscs() -> dict[str, bool]:
    pid = spawn_holder(f"doctor.{os.getpid()}", "doctor")
    try:
        mine = os.stat("/proc/self/ns/net").st_ino
        while netns_inode(pid) in (None, mine):
            pass
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            with in_netns(fd):
                ipr = IPRoute()
            with ipr:
                result = {}
                for i, (name, spec) in enumerate(QDISCS.items()):
                    # a fresh veth per qdisc (dummy may be missing), so one probe cannot disturb the next
                    ipr.link("add", ifname=f"probe{i}", kind="veth", peer=f"peer{i}")
                    idx = ipr.link_lookup(ifname=f"probe{i}")[0]
                    spec = dict(spec)
                    kind = spec.pop("kind")
                    try:
                        ipr.tc("add", kind, index=idx, **spec)
                        result[name] = True
                    except Exception:
                        result[name] = False
                return result
        finally:
            os.close(fd)
    finally:
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def report() -> dict:
    qd = probe_qdiscs() if os.geteuid() == 0 else {}
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    emulated = []
    if not qd.get("netem"):
        emulated.append("delay, jitter, loss, duplication, reordering and corruption: in the node agent, per link "
                        "and direction (no netem)")
    emulated.append("packet priority, customer bit and leases: in the node agent (tc has no classifiers to use)")
    return {
        "kernel": platform.release(),
        "root": os.geteuid() == 0,
        "tun": os.path.exists("/dev/net/tun"),
        "ipv6": _read("/proc/sys/net/ipv6/conf/all/disable_ipv6") == "0",
        "qdiscs": qd,
        "congestion_control": _read("/proc/sys/net/ipv4/tcp_available_congestion_control").split(),
        "ulimit_nofile": list(nofile),
        "ulimit_nproc": list(nproc),
        "tools": {t: shutil.which(t) for t in TOOLS},
        "emulated_in_userspace": emulated,
    }
