"""Checks that a run left nothing behind: namespaces, processes, files, host-namespace changes."""
import os
import subprocess

from testbed import runs
from testbed.waiting import wait_until


def host_view():
    """What the host namespace shows of itself: interfaces and qdiscs (must not change during a run)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    qdiscs = subprocess.run(["tc", "qdisc"], capture_output=True, text=True).stdout
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
    return names, qdiscs


def live_netns_inodes() -> set[int]:
    inodes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            pass
    return inodes


def tagged_processes(run_id: str) -> list[int]:
    tag = f"{runs.TAG_VAR}={run_id}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def assert_gone(state: dict, run_dir):
    inodes = {n["netns"] for n in state["nodes"].values()}
    assert inodes, "the journal named no namespaces"
    wait_until(lambda: not inodes & live_netns_inodes(), 5, "the run's namespaces gone", interval=0.05)
    assert tagged_processes(state["id"]) == []
    assert not os.path.exists(run_dir)
