"""Shared by the SSH-backend tests: a lab of SSH hosts on this machine (testbed/backends/ssh_lab.py) and the checks
that a run left nothing on any of them."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from testbed import backends, runs
from testbed.backends.ssh_lab import LAB_USERS, SshLab

from .leaks import live_netns_inodes, tagged_processes


def lab_missing() -> str | None:
    """Why the lab cannot run here (None if it can)."""
    if os.geteuid() != 0:
        return "needs root for namespaces"
    for tool in ("/usr/sbin/sshd", shutil.which("socat"), shutil.which("ansible-playbook") or
                 (os.path.dirname(os.sys.executable) + "/ansible-playbook")):
        if not tool or not os.path.exists(tool):
            return f"{tool or 'socat'} missing (scripts/bootstrap.sh installs it)"
    for user in LAB_USERS:
        try:
            import pwd
            pwd.getpwnam(user)
        except KeyError:
            return f"user {user} missing (scripts/bootstrap.sh makes it)"
    return None


@pytest.fixture(scope="module")
def lab():
    """Three SSH hosts, with runs in a home of their own (short paths: Unix sockets live under it)."""
    why = lab_missing()
    if why:
        pytest.skip(why)
    home = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    os.chmod(home, 0o755)     # the lab's non-root users read their keys in here
    old = os.environ.get("PKTLAB_HOME")
    os.environ["PKTLAB_HOME"] = home
    lab = SshLab.up(3, name="lab")
    try:
        yield lab
    finally:
        for r in runs.list_runs():        # whatever a failed test left, then the lab itself
            if r.name != "lab":
                backends.destroy(r, skip_unreachable=True)
        lab.down()
        if old is None:
            os.environ.pop("PKTLAB_HOME", None)
        else:
            os.environ["PKTLAB_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)


def host_view(lab, host: str) -> list[str]:
    """The interfaces a lab host's own namespace shows (must not change because of a run)."""
    pid = lab.run.state["nodes"][host]["pid"]
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def host_traces(state: dict, host: str) -> list[str]:
    """What a run still has on one host: its processes, namespaces, run directory."""
    rec = state["hosts"][host]
    found = [f"process {p}" for p in tagged_processes(rec["tag"])]
    inodes = {n["netns"] for n in state["nodes"].values() if n.get("host") == host and n.get("netns")}
    found += [f"namespace {i}" for i in inodes & live_netns_inodes()]
    if os.path.exists(rec["dir"]):
        found.append(f"directory {rec['dir']}")
    return found


def local_traces(state: dict, run_dir) -> list[str]:
    """What a run still has on the orchestrator: tagged processes, its directory, SSH masters (untagged: their
    title replaces their environment, but names the run's control socket)."""
    found = [f"process {p}" for p in tagged_processes(state["id"])]
    if os.path.exists(run_dir):
        found.append(f"directory {run_dir}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(run_dir).encode() + b"/" in f.read():
                    found.append(f"process {pid} (names the run directory)")
        except OSError:
            pass
    return found


def wait_no_traces(state: dict, run_dir, hosts, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        left = {h: host_traces(state, h) for h in hosts}
        left["orchestrator"] = local_traces(state, run_dir)
        left = {k: v for k, v in left.items() if v}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"left behind: {left}"


def kill_host(lab, state: dict, host: str) -> None:
    """The host dies: the run's processes there and everything in the host's own namespace."""
    for pid in tagged_processes(state["hosts"][host]["tag"]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lab.kill_host(host)


def journal(name: str) -> dict:
    return json.loads((runs.home() / name / "state.json").read_text())
