"""Reaching a run's hosts over SSH: one OpenSSH config per run, paramiko connections, and the checks made before
anything is built.

Two clients, one set of facts (the hosts recorded in the journal):
- OpenSSH (`ssh -F RUN/ssh/config HOST`) for commands inside nodes, whose local process is then the command's
  stand-in (exec_in returns a Popen), and for Ansible. Connections are shared per host (ControlMaster, socket
  RUN/ssh/cm-HOST) and the masters carry the run's tag, so the run's cleanup stops them.
- paramiko for the control sockets (remote_control.py) and for the preflight: connect, authenticate, check sudo and
  Python, with an error naming the host for each way this fails.

Host keys: pinned by the inventory's known_hosts, else accepted on first contact (the preflight) and kept in
RUN/ssh/known_hosts, which both clients then insist on for the rest of the run. Keys are looked up under the host's
inventory name (OpenSSH HostKeyAlias), so a proxy or a port changes nothing.
"""
from __future__ import annotations

import logging
import shlex
import socket
import subprocess
import threading
from pathlib import Path

import paramiko

from testbed.backends.remote_inventory import Host

CONNECT_TIMEOUT = 10.0
# paramiko logs a traceback from its transport thread when a proxy or peer goes away at close; every failure that
# matters reaches us as an exception and becomes a message naming the host
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
CONTROL_PERSIST_S = 600   # an idle shared connection ends by itself; cleanup ends them at once (stop_masters)
MIN_PYTHON = (3, 11)


class HostUnreachable(RuntimeError):
    """A host that cannot be reached, authenticated to, or used; the message names it."""


def ssh_dir(run) -> Path:
    d = run.path("ssh")
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def write_config(run, hosts: dict[str, Host]) -> Path:
    """RUN/ssh/config: every host under its inventory name, with the run's known_hosts and shared connections."""
    d = ssh_dir(run)
    lines = []
    for h in hosts.values():
        lines += [f"Host {h.name}", f"  HostName {h.address}", f"  Port {h.port}", f"  User {h.user}",
                  f"  IdentityFile {h.key}", "  IdentitiesOnly yes", f"  HostKeyAlias {h.name}"]
        if h.proxy_command:
            lines.append(f"  ProxyCommand {h.proxy_command}")
    lines += ["Host *", "  BatchMode yes", "  StrictHostKeyChecking yes", f"  UserKnownHostsFile {d / 'known_hosts'}",
              "  ControlMaster auto", f"  ControlPath {d}/cm-%n", f"  ControlPersist {CONTROL_PERSIST_S}",
              f"  ConnectTimeout {int(CONNECT_TIMEOUT)}", "  ServerAliveInterval 5", "  ServerAliveCountMax 3",
              "  LogLevel ERROR", ""]
    path = d / "config"
    path.write_text("\n".join(lines))
    return path


def ssh_argv(run, host: str, remote: list[str], tty: bool = False) -> list[str]:
    """The local command that runs `remote` on the host (one shell word each, quoted for the remote shell)."""
    return ["ssh", "-F", str(run.path("ssh", "config")), "-tt" if tty else "-T", host, "--", shlex.join(remote)]


def stop_masters(run, hosts) -> None:
    """End the run's shared connections. OpenSSH rewrites a master's process title over its environment, so the
    run's tag cannot find them; their control sockets can."""
    config = run.path("ssh", "config")
    for h in hosts:
        if run.path("ssh", f"cm-{h}").exists():
            subprocess.run(["ssh", "-F", str(config), "-O", "exit", h], capture_output=True, timeout=10)


def as_root(host: Host, argv: list[str]) -> list[str]:
    return argv if host.user == "root" else ["sudo", "-n", "--"] + argv


# -- paramiko ---------------------------------------------------------------------------------------------------

def connect(host: Host, known_hosts: Path, transport_factory=None) -> paramiko.SSHClient:
    """An authenticated client, or HostUnreachable saying why not; the host's key must be in known_hosts.
    transport_factory: a paramiko.Transport subclass for the connection (default paramiko's own)."""
    client = paramiko.SSHClient()
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = _socket(host)
    try:
        # the socket is already connected: hostname is only what host keys are filed under
        client.connect(host.name, port=22, username=host.user, key_filename=host.key, sock=sock,
                       look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT,
                       banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT,
                       transport_factory=transport_factory)
    except paramiko.BadHostKeyException:
        client.close()
        raise HostUnreachable(f"host {host.where()}: its host key does not match the one recorded in {known_hosts}")
    except paramiko.AuthenticationException:
        client.close()
        raise HostUnreachable(f"host {host.where()}: user {host.user} was refused with key {host.key}")
    except paramiko.SSHException as e:
        client.close()
        if "not found in known_hosts" in str(e):
            raise HostUnreachable(f"host {host.where()}: its host key is not in {known_hosts}") from None
        raise HostUnreachable(f"host {host.where()}: SSH failed: {e or 'connection closed'}") from None
    except (OSError, EOFError) as e:
        client.close()
        raise HostUnreachable(f"host {host.where()}: connection lost while logging in: {e or 'closed'}") from None
    return client


def _socket(host: Host):
    """A connected stream to the host's sshd: through its ProxyCommand, or TCP."""
    try:
        if host.proxy_command:
            cmd = (host.proxy_command.replace("%h", host.address).replace("%p", str(host.port))
                   .replace("%r", host.user))
            return paramiko.ProxyCommand(cmd)
        return socket.create_connection((host.address, host.port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise HostUnreachable(f"host {host.where()}: cannot connect: {e.strerror or e}") from None


def run_command(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=timeout)
    code = out.channel.recv_exit_status()
    return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def check_host(host: Host, known_hosts: Path) -> None:
    """Reachable, the key accepted, root or passwordless sudo, a Python new enough for the agent."""
    client = connect(host, known_hosts)
    try:
        code, out, err = run_command(client, "id -u")
        if code != 0:
            raise HostUnreachable(f"host {host.where()}: `id -u` failed: {err.strip() or out.strip()}")
        if out.strip() != "0" and host.user == "root":
            raise HostUnreachable(f"host {host.where()}: logged in as root but uid is {out.strip()}")
        if out.strip() != "0":
            code, out, err = run_command(client, "sudo -n true")
            if code != 0:
                why = (err.strip() or out.strip() or f"exit status {code}").splitlines()[-1]
                raise HostUnreachable(f"host {host.where()}: user {host.user} cannot become root without a "
                                      f"password ({why}); pktlab needs root or passwordless sudo on its hosts")
        code, out, err = run_command(client, f"{shlex.quote(host.python)} -c "
                                             "'import sys; print(*sys.version_info[:2])'")
        version = tuple(int(x) for x in out.split()) if code == 0 and out.split() else None
        if version is None or version < MIN_PYTHON:
            found = ".".join(map(str, version)) if version else (err.strip() or "not found")
            raise HostUnreachable(f"host {host.where()}: {host.python}: Python {found}; the agent needs "
                                  f"{'.'.join(map(str, MIN_PYTHON))} or newer (set python: in the inventory)")
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise HostUnreachable(f"host {host.where()}: connection lost during the checks: {e or 'closed'}") from None
    finally:
        client.close()


def record_host_key(host: Host, known_hosts: Path, lock: threading.Lock) -> None:
    """First contact: accept the key the host offers, filed under its name (unless one is recorded already)."""
    probe = paramiko.Transport(_socket(host))
    try:
        probe.start_client(timeout=CONNECT_TIMEOUT)
        key = probe.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise HostUnreachable(f"host {host.where()}: no SSH server answers: {e or 'connection closed'}") from None
    finally:
        probe.close()
    with lock:
        keys = paramiko.HostKeys()
        if known_hosts.exists():
            keys.load(str(known_hosts))
        if keys.lookup(host.name) is None:
            keys.add(host.name, key.get_name(), key)
            keys.save(str(known_hosts))


def pin_host_keys(source: str, hosts: list[Host], known_hosts: Path) -> list[str]:
    """Copy each host's keys from a known_hosts file (filed under its address) to the run's, under its name; the
    hosts that have none there."""
    given, keys, missing = paramiko.HostKeys(source), paramiko.HostKeys(), []
    for h in hosts:
        found = given.lookup(h.address if h.port == 22 else f"[{h.address}]:{h.port}")
        if not found:
            missing.append(f"host {h.where()}: no key for {h.address} in {source}")
            continue
        for kind, key in found.items():
            keys.add(h.name, kind, key)
    keys.save(str(known_hosts))
    return missing


def check_hosts(hosts: list[Host], known_hosts: Path, accept_new: bool) -> list[str]:
    """Check every host at once (accepting keys on first contact if asked); one message per host that failed."""
    problems: dict[str, str] = {}
    lock = threading.Lock()

    def one(h):
        try:
            if accept_new:
                record_host_key(h, known_hosts, lock)
            check_host(h, known_hosts)
        except HostUnreachable as e:
            problems[h.name] = str(e)
    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [problems[h.name] for h in hosts if h.name in problems]
