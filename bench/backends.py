"""Backends side by side: bring-up time and memory per node for namespaces, SSH hosts and VMs.

- netns: the mesh in namespaces of this machine (the baseline of the ratios).
- ssh: the same mesh over three SSH hosts, here the lab of testbed/backends/ssh_lab.py (namespaces with their own
  sshd): everything a real remote run does (Ansible playbooks, the host checks, VXLAN, forwarded control sockets)
  except the network between the machines.
- vagrant: VMs from pktlab's box, one per node (a smaller mesh: under software emulation each VM boots in about a
  minute of CPU); skipped without the box (`make vm`).

Memory per node is the proportional set size (PSS: shared pages split between their users) of the processes that
make a node: its agent and its namespace holder, or its VM's QEMU process (guest kernel, agent and all). Bring-up
is `Mesh.up` until every pair of nodes reaches every other. `python -m bench.backends [--skip-vm] [--vm-nodes 2]`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from bench.common import console, previous, ratio, table, write
from testbed import runs
from testbed.backends.base import BackendError
from testbed.mesh import Mesh

SPEC = "grid:3x3"


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def tagged(tag: str) -> list[int]:
    want = f"{runs.TAG_VAR}={tag}".encode()
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(p))
        except OSError:
            pass
    return found


def node_memory_mb(mesh: Mesh) -> float:
    """PSS of the processes that make the nodes, per node."""
    st = mesh.run.state
    if st.get("backend") == "vagrant":
        inode = st["vagrant"]["libvirt"]["netns"]["inode"]
        pids = [int(p) for p in filter(str.isdigit, os.listdir("/proc"))
                if runs.netns_inode(int(p)) == inode and b"qemu-system" in _cmdline(int(p))]
    elif st.get("hosts"):
        pids = [p for h in st["hosts"].values() for p in tagged(h["tag"])]
    else:
        pids = [rec["pid"] for rec in list(st["nodes"].values()) + list(st["agents"].values())]
    return sum(pss_kb(p) for p in set(pids)) / 1024 / len(st["nodes"])


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def measure(spec: str, **where) -> dict:
    load = os.getloadavg()[0]      # the machine is shared: what else ran says much about a VM's boot
    t0 = time.perf_counter()
    mesh = Mesh.up(spec, name=f"bench-{where.get('backend', 'netns')}", wait=300, **where)
    up = time.perf_counter() - t0
    time.sleep(3)     # the agents' first seconds (sessions, link pings) settle
    try:
        row = {"nodes": len(mesh.topo.nodes), "up_s": up, "memory_mb": node_memory_mb(mesh), "load": load}
        if where.get("backend") == "vagrant":
            for key in ("accel", "accel_why", "boot_s"):
                row[key] = mesh.run.state["vagrant"][key]
    finally:
        t1 = time.perf_counter()
        mesh.down()
        row["down_s"] = time.perf_counter() - t1
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backends")
    ap.add_argument("--skip-vm", action="store_true")
    ap.add_argument("--vm-nodes", type=int, default=2)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        console.print("bench.backends needs root (namespaces, sshd, libvirt)")
        return 2
    home = tempfile.mkdtemp(prefix="pb-", dir="/tmp")
    os.chmod(home, 0o755)
    os.environ["PKTLAB_HOME"] = home
    results: dict[str, dict] = {}
    try:
        results["netns"] = measure(SPEC)
        from testbed.backends.ssh_lab import SshLab
        lab = SshLab.up(3, name="lab")
        try:
            results["ssh"] = measure(SPEC, backend="ssh", hosts=str(lab.inventory()))
        finally:
            lab.down()
        from testbed.backends import vm
        if args.skip_vm:
            console.print("vagrant: skipped (--skip-vm)")
        elif not (vm.BOX_DIR / "vmlinuz").exists() or not shutil.which("vagrant"):
            console.print("vagrant: skipped (no box or no Vagrant: `make vm`)")
        else:
            try:
                results["vagrant"] = measure(f"line:{args.vm_nodes}", backend="vagrant")
            except (BackendError, runs.RunError) as e:    # the others' figures still count
                console.print(f"vagrant: failed: {e}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base = results["netns"]
    before = (previous("backends") or {}).get("results", {})
    rows = []
    for name, r in results.items():
        note = {"netns": "namespaces on this machine",
                "ssh": "3 SSH hosts (sshd in namespaces), Ansible, VXLAN",
                "vagrant": f"1 VM per node, {'KVM' if r.get('accel') == 'kvm' else 'QEMU TCG'}, "
                           f"VMs booted in {r.get('boot_s', 0):.0f} s"}[name]
        rows.append([name, r["nodes"], r["up_s"], r["up_s"] / r["nodes"], ratio(r["up_s"] / r["nodes"],
                     base["up_s"] / base["nodes"]), r["memory_mb"], ratio(r["memory_mb"], base["memory_mb"]),
                     r["down_s"], r["load"], (before.get(name) or {}).get("up_s"), note])
    console.print(table("backends: bring-up and memory per node (ratios against netns, same run)",
                        ["backend", "nodes", "up s", "up s/node", "x netns", "MB/node (PSS)", "x netns",
                         "down s", "load at start", "up s (prev)", "what"], rows))
    if "vagrant" in results:
        r = results["vagrant"]
        console.print(f"VMs under {'KVM' if r['accel'] == 'kvm' else 'QEMU TCG'}: {r['accel_why']}; machine load "
                      f"{r['load']:.1f} when they started")
    write("backends", {"spec": SPEC, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
