"""The Vagrant backend: the nodes in VMs, `pktlab up TOPOLOGY --backend vagrant`.

The VMs boot pktlab's own box (scripts/build-box.sh: Debian 12 from Debian packages, a Debian kernel), so each
agent runs on the VM's own kernel, with its TUN device and its tc (netem included: the Debian kernel has it, which
this machine's may not). Building a run:
1. What the host offers: KVM only if /dev/kvm exists *and* a Debian kernel really boots with it (a probe boot,
   remembered until the next reboot of this machine); else QEMU's software emulation (TCG), whose translation cache
   is capped (TB_SIZE_MB) so a VM needs a few hundred MB rather than 1.5 GB. Which one, and how long the VMs took to
   boot, is printed and kept in the journal (`vagrant`: accel, boot_s).
2. libvirtd (and virtlogd) start in a network namespace of the run, so libvirt's networks, NAT and dnsmasq and the
   VMs' tunnels never touch this machine's namespace. One such libvirtd runs on a machine at a time.
3. The plan (plan() below): one VM per node, or per group of `nodes_per_vm` nodes in topology order; a link between
   two VMs is a NIC in each joined by a QEMU UDP tunnel (one point-to-point network per link) with MAC addresses
   from the run id; a link inside one VM is a veth pair. vagrant/Vagrantfile reads it; `vagrant up` makes the VMs.
4. The VMs are then SSH hosts (addresses from `vagrant ssh-config`, reached through the libvirt namespace): the same
   checks, playbooks and host helper as backends/ssh.py, except that a link's end is the VM's NIC, found by MAC and
   moved into the node's namespace.
libvirtd reads a qemu.conf of the run (QEMU_CONF: no cgroups, no relabelling) and writes the VMs' logs into the run
directory (both bind-mounted in a mount namespace of its own); each VM's console goes to RUN/vagrant/console/VM.log.
Cleanup is `vagrant destroy`, then whatever still runs in the libvirt namespace is stopped and whatever libvirt kept
of the run's VMs and network is removed (after a crash too: libvirtd is started again for it if needed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from testbed import runs
from testbed.backends.base import BackendError
from testbed.backends.netns import plan_links, spawn_holder
from testbed.backends.remote_inventory import Host
from testbed.backends.remote_ssh import stop_masters
from testbed.backends.ssh import SshBackend

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
BOX = "pktlab/debian12"
BOX_DIR = Path(os.environ.get("PKTLAB_BOX_DIR", "/var/cache/pktlab/box"))
TB_SIZE_MB = 64
UDP_BASE = 40000          # the links' tunnel ports, inside the run's libvirt namespace only
LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"
# The run's libvirtd reads this instead of /etc/libvirt/qemu.conf. No cgroups: under cgroup v1 libvirt puts the VMs in
# a `machine` group that shares the CPU with every process of the root group as if it were one of them, so a busy
# machine starves them (a boot took 10 minutes at 4 % of a core); and a killed libvirtd leaves its groups behind.
# QEMU runs as root and nothing is relabelled: no chown of the box's kernel, no xattrs, the console file can be in
# the run directory whatever its mode.
QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
"""
VAGRANT_UP_TIMEOUT = 1800
log = logging.getLogger("pktlab")


def plan(run_id: str, topo, nodes_per_vm: int = 1, memory: int = 512, cpus: int = 1, driver: str = "qemu",
         emulator: str | None = None, console_dir: str | None = None) -> dict:
    """What vagrant/Vagrantfile builds: machines (their nodes and NICs) for a topology; pure."""
    if nodes_per_vm < 1:
        raise BackendError(f"nodes per VM: at least 1, not {nodes_per_vm}")
    nodes = list(topo.nodes)
    machines = {f"vm{i // nodes_per_vm + 1}": {"nodes": nodes[i:i + nodes_per_vm], "nics": []}
                for i in range(0, len(nodes), nodes_per_vm)}
    vm_of = {n: vm for vm, m in machines.items() for n in m["nodes"]}
    for i, rec in enumerate(plan_links(run_id, topo)):
        a, b = vm_of[rec.a], vm_of[rec.b]
        if a == b:
            continue
        port = UDP_BASE + 2 * i
        machines[a]["nics"].append({"link": rec.name, "node": rec.a, "ifname": rec.a_if, "port": port,
                                    "peer_port": port + 1, "mac": _mac(run_id, rec.name, "a")})
        machines[b]["nics"].append({"link": rec.name, "node": rec.b, "ifname": rec.b_if, "port": port + 1,
                                    "peer_port": port, "mac": _mac(run_id, rec.name, "b")})
    name = re.sub(r"[^a-z0-9-]", "-", run_id.lower())
    return {"prefix": f"pktlab-{name}-", "box": BOX, "driver": driver, "memory": memory, "cpus": cpus,
            "emulator": emulator, "network": f"pktlab-{name}", "console_dir": console_dir, "machines": machines}


LINK_MAC_PREFIX = "0a:70:6b"   # locally administered; the box's udev names such NICs pktlinkN and leaves them alone


def _mac(run_id: str, link: str, side: str) -> str:
    """A link end's MAC, from the run and the link end."""
    h = hashlib.sha256(f"{run_id}:{link}:{side}".encode()).digest()
    return f"{LINK_MAC_PREFIX}:" + ":".join(f"{b:02x}" for b in h[:3])


# -- what the host offers ----------------------------------------------------------------------------------------

def detect_accel(box_dir: Path = BOX_DIR, timeout: float = 30.0) -> tuple[str, str]:
    """("kvm" or "qemu", why): KVM only when a Debian kernel really boots under it here. The answer is kept in the
    box directory for this boot of the machine."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "qemu", "no usable /dev/kvm"
    kernel = box_dir / "vmlinuz"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = box_dir / "accel.json"
    try:
        known = json.loads(cache.read_text())
        if known.get("boot_id") == boot_id and known.get("kernel_mtime") == kernel.stat().st_mtime:
            return known["accel"], known["why"]
    except (OSError, ValueError, KeyError):
        pass
    # a kernel without root fs panics within a second under KVM; a KVM that cannot run it aborts or stalls
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-nographic",
            "-no-reboot", "-serial", "stdio", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        text = out.stdout + out.stderr
        ok = "Kernel panic" in text
        why = "KVM boots a Debian kernel" if ok else f"KVM cannot boot a Debian kernel ({_last(text)})"
    except subprocess.TimeoutExpired:
        ok, why = False, f"KVM cannot boot a Debian kernel (no panic within {timeout:g} s: it stalls)"
    except OSError as e:
        ok, why = False, f"cannot run qemu-system-x86_64: {e}"
    accel = "kvm" if ok else "qemu"
    try:
        cache.write_text(json.dumps({"boot_id": boot_id, "kernel_mtime": kernel.stat().st_mtime, "accel": accel,
                                     "why": why}))
    except OSError:
        pass
    return accel, why


def _last(text: str, n: int = 1) -> str:
    """The last n non-empty lines of a tool's output, on one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(line[:200] for line in lines[-n:]) if lines else "no output"


def check_tools() -> None:
    missing = [t for t in ("vagrant", "libvirtd", "virtlogd", "qemu-system-x86_64", "dnsmasq")
               if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        raise BackendError(f"the vagrant backend needs {', '.join(missing)}: run `make vm` (scripts/bootstrap.sh "
                           "--vm installs Vagrant, vagrant-libvirt, libvirt and QEMU)")
    if not (BOX_DIR / "vmlinuz").exists():
        raise BackendError(f"no pktlab box in {BOX_DIR}: build it with scripts/build-box.sh (or `make vm`)")


# -- libvirt in a namespace of the run ---------------------------------------------------------------------------

def libvirt_running() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(LIBVIRT_SOCKET)
            return True
        except OSError:
            return False


def start_libvirt(run) -> dict:
    """libvirtd and virtlogd inside a fresh namespace of the run (tagged); returns the journal record."""
    if libvirt_running():
        raise BackendError(f"a libvirtd already answers on {LIBVIRT_SOCKET}: the vagrant backend starts its own, in "
                           "a namespace of the run (one vagrant run at a time per machine)")
    d = run.path("vagrant")
    d.mkdir(exist_ok=True)
    holder = spawn_holder(run.id, "libvirt")
    mine = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + 10
    while runs.netns_inode(holder) in (None, mine):
        if time.monotonic() > deadline:
            raise BackendError("the libvirt namespace did not start")
        time.sleep(0.005)
    rec = {"netns": {"pid": holder, "start": runs.proc_start_time(holder), "inode": runs.netns_inode(holder)}}
    run.state.setdefault("vagrant", {})["libvirt"] = rec
    run.save()
    ns = ["nsenter", f"--net=/proc/{holder}/ns/net", "--"]
    subprocess.run(ns + ["ip", "link", "set", "lo", "up"], check=True)
    env = dict(os.environ, **{runs.TAG_VAR: run.id})
    (d / "qemu.conf").write_text(QEMU_CONF)
    (d / "libvirt-logs").mkdir(exist_ok=True)
    # a mount namespace of their own, where the run's qemu.conf and log directory stand in for the machine's
    binds = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$1" /etc/libvirt/qemu.conf && mount --bind "$2" /var/log/libvirt/qemu && shift 2 && '
             'exec "$@"', "-", str(d / "qemu.conf"), str(d / "libvirt-logs")]
    for daemon in ("virtlogd", "libvirtd"):
        log = open(d / f"{daemon}.log", "ab")
        proc = subprocess.Popen(ns + binds + [daemon], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        rec[daemon] = {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}
        run.save()
    deadline = time.monotonic() + 30
    while not libvirt_running():
        if time.monotonic() > deadline or not runs.alive(rec["libvirtd"]["pid"], rec["libvirtd"]["start"]):
            raise BackendError(f"libvirtd did not start: {_last((d / 'libvirtd.log').read_text(errors='replace'))}")
        time.sleep(0.1)
    return rec


def _in_libvirt_ns(run) -> list[str]:
    return ["nsenter", f"--net=/proc/{run.state['vagrant']['libvirt']['netns']['pid']}/ns/net", "--"]


def vagrant(run, *args, timeout: float = 600) -> tuple[int, str]:
    """`vagrant ARGS` for the run (its plan, its .vagrant directory, inside the libvirt namespace): exit status and
    output, which also goes to RUN/vagrant/vagrant.log as it comes."""
    env = dict(os.environ, VAGRANT_CWD=str(VAGRANT_DIR), VAGRANT_DOTFILE_PATH=str(run.path("vagrant", ".vagrant")),
               PKTLAB_PLAN=str(run.path("vagrant", "plan.json")), VAGRANT_DEFAULT_PROVIDER="libvirt",
               VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1", **{runs.TAG_VAR: run.id})
    log_path = run.path("vagrant", "vagrant.log")
    with open(log_path, "a") as log:
        log.write(f"\n$ vagrant {' '.join(args)}\n")
        log.flush()
        start = log.tell()
        proc = subprocess.Popen(_in_libvirt_ns(run) + ["vagrant", *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        except BaseException:       # interrupted: vagrant must not hold the machines' lock for the cleanup
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        if code is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    with open(log_path) as log:
        log.seek(start)
        out = log.read()
    if code is None:
        raise BackendError(f"vagrant {args[0]} did not finish in {timeout:g} s ({_last(out, 3)}; log: {log_path})")
    return code, out


def ssh_hosts(run, text: str) -> list[Host]:
    """The VMs as SSH hosts, from `vagrant ssh-config`."""
    hosts, cur = [], None
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1].strip().strip('"')
        if key == "host":
            cur = {"name": value}
            hosts.append(cur)
        elif cur is not None and key in ("hostname", "user", "port", "identityfile"):
            cur[key] = value
    proxy = f"nsenter --net=/proc/{run.state['vagrant']['libvirt']['netns']['pid']}/ns/net socat STDIO TCP:%h:%p"
    return [Host(h["name"], h["hostname"], h["identityfile"], user=h.get("user", "vagrant"),
                 port=int(h.get("port", 22)), tunnel_address=h["hostname"], proxy_command=proxy) for h in hosts]


# -- the backend ---------------------------------------------------------------------------------------------------

class VagrantBackend(SshBackend):
    name = "vagrant"

    @classmethod
    def for_new_run(cls, run, topo, nodes_per_vm: int = 1, memory: int = 512, **unknown) -> "VagrantBackend":
        if unknown:
            raise BackendError(f"the vagrant backend takes nodes_per_vm and memory, not {', '.join(sorted(unknown))}")
        check_tools()
        accel, why = detect_accel()
        emulator = str(VAGRANT_DIR / "qemu-tcg") if accel == "qemu" else None
        p = plan(run.id, topo, nodes_per_vm, memory, driver=accel, emulator=emulator,
                 console_dir=str(run.path("vagrant", "console")))
        run.state["backend"] = cls.name
        run.state["vagrant"] = {"accel": accel, "accel_why": why, "machines": list(p["machines"])}
        run.state["placement"] = {n: vm for vm, m in p["machines"].items() for n in m["nodes"]}
        run.path("vagrant").mkdir(exist_ok=True)
        run.path("vagrant", "plan.json").write_text(json.dumps(p, indent=1))
        run.save()
        return cls(run, topo)

    def build(self, progress) -> None:
        st = self.run.state["vagrant"]
        machines = st["machines"]
        start_libvirt(self.run)
        progress("VMs", 0, len(machines))
        started = time.monotonic()
        code, out = vagrant(self.run, "up", "--provider", "libvirt", timeout=VAGRANT_UP_TIMEOUT)
        st["boot_s"] = round(time.monotonic() - started, 1)
        self.run.save()
        if code != 0:
            raise BackendError(f"vagrant up failed: {_last(out, 8)} (log: {self.run.path('vagrant', 'vagrant.log')})")
        how = "KVM" if st["accel"] == "kvm" else f"software emulation (QEMU TCG, tb-size {TB_SIZE_MB} MB)"
        print(f"pktlab: {len(machines)} VM(s) under {how}: {st['accel_why']}; booted in {st['boot_s']:.0f} s",
              file=sys.stderr)
        progress("VMs", len(machines), len(machines))
        code, out = vagrant(self.run, "ssh-config", timeout=120)
        if code != 0:
            raise BackendError(f"vagrant ssh-config failed: {_last(out, 3)}")
        hosts = ssh_hosts(self.run, out)
        self._record(self.run, self.topo, hosts, self.run.state["placement"])
        super().build(progress)

    def _kinds(self, links) -> list[str]:
        place = self.run.state["placement"]
        return ["veth" if place[r.a] == place[r.b] else "nic" for r in links]

    def end_macs(self, i: int) -> tuple[str, str]:
        """A link between two VMs keeps its NICs' MAC addresses (the plan's); one inside a VM is a veth pair."""
        link = self.topo.links[i]
        place = self.run.state["placement"]
        if place[link.a] == place[link.b]:
            return super().end_macs(i)
        return _mac(self.run.id, link.name, "a"), _mac(self.run.id, link.name, "b")

    def _cross_host_ends(self, i, rec, host_a, host_b):
        """A link between two VMs: the NIC at each end (the plan's MAC addresses), moved into its node."""
        p = json.loads(self.run.path("vagrant", "plan.json").read_text())
        ends = {}
        for host in (host_a, host_b):
            nic = next(n for n in p["machines"][host]["nics"] if n["link"] == rec.name)
            ends[host] = ("nics", {"name": rec.name, "node": nic["node"], "ifname": nic["ifname"], "mac": nic["mac"]})
        return ends


def destroy_vms(run) -> None:
    """`vagrant destroy` and the run's management network, then everything left in the run's libvirt namespace
    (libvirtd, dnsmasq, QEMU) is stopped and what libvirt kept of the run swept. After a crash libvirtd is started
    again for it."""
    rec = run.state.get("vagrant", {}).get("libvirt")
    if not rec:
        return
    if run.state.get("hosts"):
        stop_masters(run, run.state["hosts"])
    holder = rec["netns"]
    if not runs.alive(holder["pid"], holder.get("start")) or not libvirt_running():
        _stop_namespace(rec)
        start_libvirt(run)
        rec = run.state["vagrant"]["libvirt"]
    try:
        try:
            code, out = vagrant(run, "destroy", "-f", timeout=600)
        except BackendError as e:     # it did not finish: the sweep below removes what it left
            code, out = None, str(e)
        network = json.loads(run.path("vagrant", "plan.json").read_text())["network"]
        for what in ("net-destroy", "net-undefine"):    # vagrant-libvirt keeps it if a VM failed to come up
            subprocess.run(["virsh", "-c", "qemu:///system", what, network], capture_output=True, timeout=60)
        leftover = _domains(run)
    finally:
        _stop_namespace(rec)
    swept = _sweep(run)
    if code != 0 or leftover:
        log.warning("pktlab: run %s: vagrant destroy failed (%s); its VMs were stopped and their files removed: %s",
                    run.name, _last(out, 3), ", ".join(map(str, swept)) or "none")


def _sweep(run) -> list[Path]:
    """What libvirt keeps of the run's VMs and network outside the run directory (named by the plan's prefix and
    network), removed once no libvirtd of the run runs: nothing after a clean `vagrant destroy`; after a failed one,
    the domains' definitions and disks."""
    p = json.loads(run.path("vagrant", "plan.json").read_text())
    found = [*Path("/etc/libvirt/qemu").glob(f"{p['prefix']}*.xml"),
             *Path("/var/lib/libvirt/images").glob(f"{p['prefix']}*"),
             *Path("/etc/libvirt/qemu/networks").glob(f"{p['network']}.xml"),
             *Path("/etc/libvirt/qemu/networks/autostart").glob(f"{p['network']}.xml"),
             *Path("/var/lib/libvirt/dnsmasq").glob(f"{p['network']}.*")]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _domains(run) -> list[str]:
    """libvirt domains of the run (named by its plan's prefix), running or not."""
    prefix = json.loads(run.path("vagrant", "plan.json").read_text())["prefix"]
    r = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True, text=True,
                       timeout=60)
    return [d for d in r.stdout.split() if d.startswith(prefix)]


def _stop_namespace(rec: dict) -> None:
    """Stop every process inside the libvirt namespace (libvirt gives QEMU and dnsmasq no tag), and its holder."""
    inode = rec["netns"].get("inode")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and runs.netns_inode(int(p)) == inode]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if runs.proc_state(p) not in ("?", "Z")]
            time.sleep(0.05)


def main(argv=None) -> int:
    """`python3 -m testbed.backends.vm plan TOPOLOGY [--nodes-per-vm N]`: the plan vagrant/Vagrantfile reads."""
    p = argparse.ArgumentParser(prog="python3 -m testbed.backends.vm")
    p.add_argument("command", choices=("plan",))
    p.add_argument("topology")
    p.add_argument("--nodes-per-vm", type=int, default=1)
    p.add_argument("--run-id", default="vagrant")
    args = p.parse_args(argv)
    from testbed.topology import TopologyError, load
    try:
        print(json.dumps(plan(args.run_id, load(args.topology), args.nodes_per_vm), indent=1))
    except (TopologyError, BackendError) as e:
        print(f"pktlab: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
