"""Where a run's nodes live (the seam is backends/base.py): choosing the backend of a new run, getting back the one
of an existing run from its journal, and the few operations everything else uses without knowing which it is.

The concrete backends are imported only when chosen: a plain namespace run never loads paramiko or Ansible, and the
host helper on an SSH host (backends/remote_host.py) imports nothing from here but this small module.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from testbed import runs
from testbed.backends.base import Backend, BackendError
from testbed.waiting import wait_until


def create(kind: str, run: runs.Run, topo, **options) -> Backend:
    """The backend `kind` for a new run; records the choice in the journal."""
    if kind == "netns":
        from testbed.backends.netns import NetnsBackend
        if options:
            raise BackendError(f"the netns backend takes no {', '.join(sorted(options))} (those are for ssh hosts)")
        return NetnsBackend(run, topo)
    if kind == "ssh":
        from testbed.backends.ssh import SshBackend
        return SshBackend.for_new_run(run, topo, **options)
    if kind == "vagrant":
        from testbed.backends.vm import VagrantBackend
        return VagrantBackend.for_new_run(run, topo, **options)
    raise BackendError(f"backend {kind!r}: use netns, ssh (with an inventory of hosts) or vagrant")


def for_run(run: runs.Run, topo=None) -> Backend:
    """The backend that built an existing run, from its journal."""
    kind = run.state.get("backend", "netns")
    if kind == "netns":
        from testbed.backends.netns import NetnsBackend
        return NetnsBackend(run, topo)
    if kind in ("ssh", "vagrant"):   # a Vagrant run, once up, is SSH hosts that happen to be VMs
        from testbed.backends.ssh import SshBackend
        return SshBackend(run, topo)
    raise BackendError(f"run {run.name}: unknown backend {kind!r} in its journal")


def exec_in(run: runs.Run, node: str, argv: list[str], tty: bool = False, **popen_kwargs) -> subprocess.Popen:
    """Start a command inside a node of a running run, on whatever backend built it (tagged with the run, so the
    run's cleanup finds it)."""
    return for_run(run).popen(node, argv, tty=tty, **popen_kwargs)


def destroy(run: runs.Run, skip_unreachable: bool = False) -> None:
    """Remove a run everywhere: first what it has beyond this machine (its VMs, or its part on SSH hosts: a host
    that cannot be cleaned is a RunError naming it and the run is kept, so `pktlab cleanup` can try again, unless
    skip_unreachable gives it up with a warning), then its processes, namespaces and directory here
    (runs.destroy)."""
    runs.mark_stopping(run)
    # a crashed orchestrator's leftovers here (a playbook, `vagrant up`) must not go on building while this cleans
    keep = {d["pid"] for d in run.state.get("vagrant", {}).get("libvirt", {}).values() if "pid" in d}
    stop_local(run, keep)
    if run.state.get("backend") == "vagrant":
        from testbed.backends.vm import destroy_vms
        destroy_vms(run)          # the VMs go, and with them everything the run had on them
    elif run.state.get("hosts"):
        from testbed.backends.ssh import clean_hosts
        clean_hosts(run, skip_unreachable)
    runs.destroy(run)


def stop_local(run: runs.Run, keep=frozenset(), timeout: float = 10.0) -> None:
    """SIGKILL the run's processes on this machine (tagged or named in its journal) but those in keep."""
    def stopped():
        pids = [p for p in run.processes() if p not in keep]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)       # our own children must not stay as zombies
        return not pids
    wait_until(stopped, timeout, interval=0.05)
