"""The VM path: vagrant/Vagrantfile validates for a topology; the box from scripts/build-box.sh boots (saying whether
under KVM or software emulation, and how long it took); a two-VM mesh runs on the VMs' own kernels (slow: each VM
boots in about a minute under TCG, several on a busy machine)."""
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from testbed import runs
from testbed.backends import vm

from .leaks import host_view, tagged_processes

ROOT = Path(__file__).resolve().parents[2]
HAVE_VAGRANT = shutil.which("vagrant") is not None
HAVE_BOX = (vm.BOX_DIR / "vmlinuz").exists() and (vm.BOX_DIR / "pktlab-debian12.box").exists()
needs_box = pytest.mark.skipif(not (HAVE_BOX and shutil.which("qemu-system-x86_64") and os.geteuid() == 0),
                               reason="needs root, QEMU and the box: `make vm` (scripts/build-box.sh)")


def vagrant_env(dotfile, **extra):
    """Vagrant on the repository's Vagrantfile, its machine state (.vagrant) in a directory of the test."""
    return dict(os.environ, VAGRANT_CWD=str(ROOT / "vagrant"), VAGRANT_DOTFILE_PATH=str(dotfile),
                VAGRANT_CHECKPOINT_DISABLE="1", PKTLAB_PYTHON=sys.executable, **extra)


@pytest.mark.skipif(not HAVE_VAGRANT, reason="vagrant is not installed (scripts/bootstrap.sh installs it)")
def test_the_vagrantfile_validates_for_a_topology_and_a_plan(tmp_path):
    def validate(**plan):
        return subprocess.run(["vagrant", "validate"], env=vagrant_env(tmp_path / ".vagrant", **plan),
                              capture_output=True, text=True, timeout=300)
    r = validate(PKTLAB_TOPOLOGY="grid:2x2")
    assert r.returncode == 0 and "validated successfully" in r.stdout, r.stdout + r.stderr
    plan = tmp_path / "plan.json"
    subprocess.run([sys.executable, "-m", "testbed.backends.vm", "plan", "ring:3", "--nodes-per-vm", "2"],
                   stdout=plan.open("w"), check=True, cwd=ROOT)
    assert list(json.loads(plan.read_text())["machines"]) == ["vm1", "vm2"]
    r = validate(PKTLAB_PLAN=str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    r = validate(PKTLAB_TOPOLOGY="nonsense:3")
    assert r.returncode != 0 and "unknown generator 'nonsense'" in r.stdout + r.stderr
    assert not (ROOT / "vagrant" / ".vagrant").exists()


@needs_box
def test_what_the_host_offers_is_detected():
    accel, why = vm.detect_accel()
    print(f"\nVMs here run under {'KVM' if accel == 'kvm' else 'software emulation (QEMU TCG)'}: {why}")
    assert accel in ("kvm", "qemu") and why
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert accel == "qemu"


@pytest.mark.slow
@needs_box
def test_the_box_boots_to_ssh(tmp_path):
    """The box's disk and kernel under QEMU alone (no Vagrant, no libvirt): its sshd answers. In a namespace of
    its own, with user-mode networking, so nothing touches this machine's network."""
    accel, why = vm.detect_accel()
    subprocess.run(["tar", "-C", str(tmp_path), "-xzf", str(vm.BOX_DIR / "pktlab-debian12.box"), "box.img"],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "box.img"),
                    str(tmp_path / "disk.qcow2")], check=True)
    argv = ["unshare", "--net", "sh", "-c", "ip link set lo up && exec \"$@\"", "-",
            "qemu-system-x86_64", "-accel", "kvm" if accel == "kvm" else f"tcg,tb-size={vm.TB_SIZE_MB}",
            "-m", "512", "-nodefaults", "-display", "none", "-serial", f"file:{tmp_path / 'serial.log'}",
            "-kernel", str(vm.BOX_DIR / "vmlinuz"), "-initrd", str(vm.BOX_DIR / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0",
            "-drive", f"file={tmp_path / 'disk.qcow2'},if=virtio",
            "-nic", "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        banner = b""
        while time.monotonic() - started < 600 and proc.poll() is None and not banner.startswith(b"SSH-"):
            time.sleep(2)
            banner = _banner(proc.pid)
        boot = time.monotonic() - started
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    how = "KVM" if accel == "kvm" else f"software emulation (QEMU TCG, tb-size {vm.TB_SIZE_MB} MB)"
    print(f"\nthe box booted to SSH under {how} in {boot:.0f} s ({why})")
    assert banner.startswith(b"SSH-2.0-OpenSSH"), (proc.returncode, (tmp_path / "serial.log").read_text()[-2000:])


def _banner(pid: int) -> bytes:
    """The first bytes of the SSH server's greeting, read from inside QEMU's namespace."""
    from node.agent.netns import in_netns
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with in_netns(fd):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        os.close(fd)
    with s:
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", 2222))
            return s.recv(32)
        except OSError:
            return b""


@pytest.mark.slow
@needs_box
@pytest.mark.skipif(not HAVE_VAGRANT, reason="vagrant is not installed")
def test_a_two_vm_mesh_on_the_vms_own_kernels():
    from testbed.faults import apply_fault, heal
    from testbed.mesh import Mesh
    home = tempfile.mkdtemp(prefix="pv-", dir="/tmp")
    old, os.environ["PKTLAB_HOME"] = os.environ.get("PKTLAB_HOME"), home
    before = host_view()
    try:
        mesh = Mesh.up("line:2,delay=2ms", name="vms", backend="vagrant", wait=180)
        try:
            st = mesh.run.state
            how = "KVM" if st["vagrant"]["accel"] == "kvm" else "software emulation (QEMU TCG)"
            print(f"\n2 VMs under {how}, booted in {st['vagrant']['boot_s']:.0f} s")
            assert {rec["host"] for rec in st["nodes"].values()} == {"vm1", "vm2"}
            assert [rec["kind"] for rec in st["links"]] == ["nic"]
            assert mesh.ping("n1", "n2") is not None
            kernel = mesh.exec("n1", ["uname", "-r"]).stdout.strip()
            assert kernel != os.uname().release, "the agent should run on the VM's own kernel"
            # the guest kernel has netem, which this machine's may lack
            r = mesh.exec("n2", "tc qdisc add dev n2-eth0 root netem delay 1ms && tc qdisc show dev n2-eth0 && "
                                "tc qdisc del dev n2-eth0 root")
            assert r.returncode == 0 and "netem" in r.stdout, r.stderr
            f = apply_fault(mesh, "link-down n1--n2")
            assert "no answer" in f.state["effect"]
            heal(mesh, f.id)
            state, run_dir = dict(st), mesh.run.dir
            plan = json.loads(mesh.run.path("vagrant", "plan.json").read_text())
        finally:
            mesh.down()
        assert not run_dir.exists() and tagged_processes(state["id"]) == []
        assert not vm.libvirt_running()
        assert vm_traces(state, plan) == []
        assert host_view() == before, "the run changed this machine's namespace"
        assert not [r.name for r in runs.list_runs()]
    finally:
        if old is None:
            os.environ.pop("PKTLAB_HOME", None)
        else:
            os.environ["PKTLAB_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@needs_box
@pytest.mark.skipif(not HAVE_VAGRANT, reason="vagrant is not installed")
def test_cleanup_after_the_orchestrator_is_killed_while_the_vms_boot(tmp_path):
    """`pktlab up --backend vagrant` dies by SIGKILL while its VMs boot (`vagrant up` still running, holding the
    machines' lock): `pktlab cleanup` stops it, destroys the VMs and leaves no trace of the run."""
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path))
    before = host_view()
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "up", "line:2", "--backend", "vagrant", "--name",
                             "vmcrash"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    consoles = tmp_path / "vmcrash" / "vagrant" / "console"
    try:
        deadline = time.monotonic() + 600
        while not (consoles.exists() and len(list(consoles.iterdir())) == 2):     # both VMs started
            assert proc.poll() is None and time.monotonic() < deadline, "the VMs never started"
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    state = json.loads((tmp_path / "vmcrash" / "state.json").read_text())
    plan = json.loads((tmp_path / "vmcrash" / "vagrant" / "plan.json").read_text())
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "cleanup"], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and "run vmcrash removed" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "vmcrash").exists() and tagged_processes(state["id"]) == []
    assert not vm.libvirt_running() and vm_traces(state, plan) == []
    assert host_view() == before


def vm_traces(state: dict, plan: dict) -> list[str]:
    """What a Vagrant run left on this machine: processes in its libvirt namespace (QEMU, dnsmasq, libvirtd), and
    libvirt's domains, disks, network and dnsmasq state of the run (named by the run's prefix), cgroups, logs."""
    inode = state["vagrant"]["libvirt"]["netns"]["inode"]
    found = [f"process {p}" for p in filter(str.isdigit, os.listdir("/proc")) if runs.netns_inode(int(p)) == inode]
    for pattern in ("/etc/libvirt/qemu/{p}*", "/etc/libvirt/qemu/networks/{n}*", "/var/lib/libvirt/images/{p}*",
                    "/var/lib/libvirt/dnsmasq/{n}*", "/var/log/libvirt/qemu/{p}*", "/sys/fs/cgroup/*/machine*/*{p}*"):
        found += glob.glob(pattern.format(p=plan["prefix"], n=plan["network"]))
    return found
