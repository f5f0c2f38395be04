"""SSH hosts on this machine, for CI and benches: network namespaces that each run their own sshd.

    lab = SshLab.up(3)                          # h1..h3
    mesh = Mesh.up("grid:3x3", backend="ssh", hosts=lab.inventory())
    ...
    mesh.down(); lab.down()

Layout:
- `lan`: a namespace holding a bridge (10.0.0.254/24). The orchestrator never gets an address or a route for the
  lab: its SSH connections enter `lan` through each host's ProxyCommand (`nsenter --net=... socat STDIO TCP:%h:%p`),
  which the inventory carries like any jump-host setting.
- `hN`: a namespace with eth0 (10.0.0.N/24) on that bridge and an sshd listening there, with host keys made for
  this lab. A host shares this machine's filesystem, so each gets its own `root` directory (project copy, runs) in
  the lab directory, and its commands run as the real users of this machine.
- keys: one user key per lab, authorized for every user; a second key that is authorized nowhere (for tests of a
  refused key). The users other than root (pktlab-ops with passwordless sudo, pktlab-nosudo without) are made by
  scripts/bootstrap.sh.

A lab is a pktlab run itself (`kind: ssh-lab` in its journal): its namespaces are held by processes like any run's
and its sshd processes carry its tag, so `pktlab cleanup` removes a lab whose owner died, and `pktlab list` shows it.
A mesh built on a lab must come down first (its nodes live in namespaces of their own, not the lab's).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

from node.agent.netns import in_netns
from testbed import runs
from testbed.backends.netns import spawn_holder

SUBNET = "10.0.0"
SSHD = "/usr/sbin/sshd"
LAB_USERS = ("pktlab-ops", "pktlab-nosudo")   # made by scripts/bootstrap.sh


class LabError(RuntimeError):
    pass


class SshLab:
    def __init__(self, run: runs.Run):
        self.run = run

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def hosts(self) -> list[str]:
        return [n for n in self.run.state["nodes"] if n != "lan"]

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.hosts.index(host) + 1}"

    # -- building ----------------------------------------------------------------------------------------------
    @classmethod
    def up(cls, count: int = 3, name: str | None = None) -> "SshLab":
        if not shutil.which(SSHD.rsplit("/", 1)[1], path="/usr/sbin") or not shutil.which("socat"):
            raise LabError("an SSH lab needs openssh-server and socat (scripts/bootstrap.sh installs them)")
        if not 1 <= count <= 200:
            raise LabError(f"an SSH lab has 1-200 hosts, not {count}")
        run = runs.new_run(name, "ssh-lab", f"ssh-lab:{count}")
        lab = cls(run)
        try:
            lab.build(count)
        except BaseException:
            runs.destroy(run)
            raise
        return lab

    def build(self, count: int) -> None:
        """Keys, a namespace per host and the LAN's, the wiring, an sshd per host; the journal first."""
        run = self.run
        run.state["kind"] = "ssh-lab"
        os.chmod(run.dir, 0o755)    # the lab's non-root users read their authorized keys here
        self._keys(count)
        names = ["lan"] + [f"h{i}" for i in range(1, count + 1)]
        for n in names:
            pid = spawn_holder(run.id, n)
            run.state["nodes"][n] = {"pid": pid, "start": runs.proc_start_time(pid), "netns": None}
            run.save()
        self._wait_namespaces()
        self._wire()
        for h in names[1:]:
            self._start_sshd(h)
        self._wait_listening()
        run.state["status"] = "ready"
        run.state["owner"] = None
        run.save()

    @classmethod
    def attach(cls, name: str) -> "SshLab":
        run = runs.load_run(name)
        if run.state.get("kind") != "ssh-lab":
            raise LabError(f"run {name} is not an SSH lab")
        return cls(run)

    def _keys(self, count: int) -> None:
        d = self.dir
        for key in ("id_ed25519", "wrong_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pktlab-lab-{key}", "-f",
                            str(d / key)], check=True)
        (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
        os.chmod(d / "authorized_keys", 0o644)
        known = []
        for i in range(1, count + 1):
            hd = d / f"h{i}"
            (hd / "root").mkdir(parents=True)
            os.chmod(hd, 0o755)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"h{i}", "-f",
                            str(hd / "ssh_host_ed25519_key")], check=True)
            known.append(f"{SUBNET}.{i} {(hd / 'ssh_host_ed25519_key.pub').read_text().split(' ')[0]} "
                         f"{(hd / 'ssh_host_ed25519_key.pub').read_text().split(' ')[1]}")
            (hd / "sshd_config").write_text("\n".join([
                f"ListenAddress {SUBNET}.{i}", f"HostKey {hd / 'ssh_host_ed25519_key'}", "PidFile none",
                f"AuthorizedKeysFile {d / 'authorized_keys'}", "PermitRootLogin prohibit-password",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                "MaxSessions 64", "MaxStartups 64:30:128", "AllowStreamLocalForwarding yes",
                "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
        (d / "known_hosts").write_text("\n".join(known) + "\n")

    def _wait_namespaces(self, timeout: float = 10.0) -> None:
        mine = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + timeout
        for n, rec in self.run.state["nodes"].items():
            while (ino := runs.netns_inode(rec["pid"])) in (None, mine):
                if ino is None or time.monotonic() > deadline:
                    raise LabError(f"lab namespace {n} did not start")
                time.sleep(0.002)
            rec.update(netns=ino, start=runs.proc_start_time(rec["pid"]))
        self.run.save()

    def _fd(self, n: str) -> int:
        return os.open(f"/proc/{self.run.state['nodes'][n]['pid']}/ns/net", os.O_RDONLY)

    def _wire(self) -> None:
        """The bridge in `lan`, and a veth from it to each host's eth0; nothing in this machine's namespace."""
        from pyroute2 import IPRoute
        lan = self._fd("lan")
        try:
            with in_netns(lan), IPRoute() as ipr:
                ipr.link("add", ifname="br0", kind="bridge", ifalias=f"pktlab:{self.run.id}:br0")
                br = ipr.link_lookup(ifname="br0")[0]
                ipr.addr("add", index=br, address=f"{SUBNET}.254", prefixlen=24)
                for lo in ipr.link_lookup(ifname="lo"):
                    ipr.link("set", index=lo, state="up")
                ipr.link("set", index=br, state="up")
                for h in self.hosts:
                    fd = self._fd(h)
                    try:
                        ipr.link("add", ifname=h, kind="veth", ifalias=f"pktlab:{self.run.id}:{h}",
                                 peer={"ifname": "eth0", "net_ns_fd": fd})
                    finally:
                        os.close(fd)
                    idx = ipr.link_lookup(ifname=h)[0]
                    ipr.link("set", index=idx, master=br, state="up")
            for h in self.hosts:
                fd = self._fd(h)
                try:
                    with in_netns(fd), IPRoute() as ipr:
                        for name in ("lo", "eth0"):
                            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
                        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=self.address(h),
                                 prefixlen=24)
                finally:
                    os.close(fd)
        finally:
            os.close(lan)

    def _start_sshd(self, host: str) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation directory
        hd = self.dir / host
        log = open(hd / "sshd.log", "ab")
        proc = subprocess.Popen(["nsenter", f"--net=/proc/{self.run.state['nodes'][host]['pid']}/ns/net", "--",
                                 SSHD, "-D", "-e", "-f", str(hd / "sshd_config")],
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", runs.TAG_VAR: self.run.id},
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.run.state.setdefault("sshd", {})[host] = {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}
        self.run.save()

    def _wait_listening(self, timeout: float = 15.0) -> None:
        """Each sshd's banner, read from inside `lan` (a socket made there)."""
        deadline = time.monotonic() + timeout
        for h in self.hosts:
            while not self._banner(h):
                if time.monotonic() > deadline:
                    log = (self.dir / h / "sshd.log").read_text(errors="replace")[-500:]
                    raise LabError(f"lab host {h}: sshd does not answer: {log.strip() or 'no log'}")
                time.sleep(0.05)

    def _banner(self, host: str) -> bool:
        fd = self._fd("lan")
        try:
            with in_netns(fd):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            os.close(fd)
        with s:
            s.settimeout(1.0)
            try:
                s.connect((self.address(host), 22))
                return s.recv(64).startswith(b"SSH-")
            except OSError:
                return False

    # -- using it ------------------------------------------------------------------------------------------------
    def proxy_command(self) -> str:
        return f"nsenter --net=/proc/{self.run.state['nodes']['lan']['pid']}/ns/net socat STDIO TCP:%h:%p"

    def host_entry(self, host: str, **overrides) -> dict:
        entry = {"address": self.address(host), "user": "root", "key": str(self.dir / "id_ed25519"),
                 "root": str(self.dir / host / "root"), "proxy_command": self.proxy_command()}
        return dict(entry, **overrides)

    def inventory(self, hosts: list[str] | None = None, path: str | os.PathLike | None = None, placement=None,
                  **per_host: dict) -> Path:
        """Write an inventory of these hosts (all by default; `h2={"user": "pktlab-ops"}` changes a host's entry,
        and a name that is no host of the lab, e.g. `h9={}`, gets an address where nobody answers)."""
        names = (hosts or self.hosts) + [h for h in per_host if h not in (hosts or self.hosts)]
        entries = {}
        for h in names:
            if h in self.hosts:
                entries[h] = self.host_entry(h, **per_host.get(h, {}))
            else:
                entries[h] = dict(self.host_entry(self.hosts[0], root=str(self.dir / h / "root")),
                                  address=f"{SUBNET}.{200 + len(entries)}", **per_host.get(h, {}))
        data = {"hosts": entries, "known_hosts": str(self.dir / "known_hosts")}
        if placement:
            data["placement"] = placement
        path = Path(path) if path else self.dir / "inventory.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def kill_host(self, host: str) -> None:
        """The host dies: its sshd, whatever runs in its namespace, and the namespace itself."""
        ino = self.run.state["nodes"][host]["netns"]
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if runs.netns_inode(pid) == ino:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def down(self) -> None:
        runs.destroy(self.run)
