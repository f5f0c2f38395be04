"""The control forwarder of a run on SSH hosts: `python -m testbed.backends.remote_control RUN_DIR`.

One small process per run on the orchestrator, tagged with the run like the rest (so `down`/`cleanup` stop it). It
listens on RUN/nodes/NODE/agent.sock for every node, as the agents themselves do on one machine, and relays each
connection over SSH to the agent's socket on its host: one paramiko connection per host, one OpenSSH
`direct-streamlocal@openssh.com` channel per local connection (what `ssh -L local.sock:remote.sock` uses). So every
user of the control API (Mesh.agent, the monitor, faults, scenarios, the pytest plugin) works unchanged.

When a host cannot be reached the local client gets a control-API answer naming it, {"ok": false, "error": "host h2
(...): ..."}, instead of a bare closed connection; a lost connection is made again on the next request (at most every
RETRY_S seconds per host, in between the same error comes back at once).
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

from testbed.backends.remote_inventory import Host
from testbed.backends.remote_ssh import HostUnreachable, connect

RETRY_S = 2.0
OPEN_TIMEOUT = 10.0


class StreamlocalTransport(paramiko.Transport):
    """paramiko's Transport with one more kind of channel: to a Unix socket on the server (OpenSSH PROTOCOL 2.4,
    direct-streamlocal@openssh.com). paramiko's open_channel knows only the TCP and X11 forms of a channel-open
    request; this is the same request with the socket path (string), a reserved string and a reserved uint32 after
    the window fields, through the same channel bookkeeping (paramiko's protected members, from a subclass)."""

    def open_streamlocal(self, path: str, timeout: float = OPEN_TIMEOUT) -> paramiko.Channel:
        if not self.active:
            raise paramiko.SSHException("SSH session not active")
        with self.lock:
            chanid = self._next_channel()
            window = self._sanitize_window_size(None)
            packet = self._sanitize_packet_size(None)
            m = Message()
            m.add_byte(cMSG_CHANNEL_OPEN)
            m.add_string("direct-streamlocal@openssh.com")
            m.add_int(chanid)
            m.add_int(window)
            m.add_int(packet)
            m.add_string(path)
            m.add_string("")
            m.add_int(0)
            chan = _Channel(chanid, self, window, packet)
            self._channels.put(chanid, chan)
            self.channel_events[chanid] = event = threading.Event()
            self.channels_seen[chanid] = True
        self._send_user_message(m)
        if not event.wait(timeout):
            raise paramiko.SSHException(f"no answer opening a channel to {path} in {timeout:g} s")
        chan = self._channels.get(chanid)
        if chan is None:
            raise self.get_exception() or paramiko.SSHException(f"the server refused a channel to {path}")
        return chan


class _Channel(paramiko.Channel):
    """A channel bound to its transport and window as paramiko's open_channel binds its own."""

    def __init__(self, chanid: int, transport: paramiko.Transport, window: int, packet: int):
        super().__init__(chanid)
        self._set_transport(transport)
        self._set_window(window, packet)


class Forwarder:
    def __init__(self, run_dir: Path):
        self.dir = run_dir
        state = json.loads((run_dir / "state.json").read_text())
        self.hosts = {name: Host.from_dict(h) for name, h in state["hosts"].items()}
        self.targets = {n: (host, f"{state['hosts'][host]['dir']}/nodes/{n}/agent.sock")
                        for n, host in state["placement"].items()}
        self.known_hosts = run_dir / "ssh" / "known_hosts"
        self.clients: dict[str, paramiko.SSHClient] = {}
        self.failed: dict[str, tuple[float, str]] = {}
        self.locks = {h: threading.Lock() for h in self.hosts}
        self.stop = threading.Event()

    def transport(self, host: str) -> StreamlocalTransport:
        with self.locks[host]:
            client = self.clients.get(host)
            if client is not None and client.get_transport() and client.get_transport().is_active():
                return client.get_transport()
            when, why = self.failed.get(host, (0.0, ""))
            if time.monotonic() - when < RETRY_S:
                raise HostUnreachable(why)
            try:
                client = connect(self.hosts[host], self.known_hosts, transport_factory=StreamlocalTransport)
            except HostUnreachable as e:
                self.failed[host] = (time.monotonic(), str(e))
                raise
            client.get_transport().set_keepalive(5)
            self.clients[host] = client
            self.failed.pop(host, None)
            return client.get_transport()

    def relay(self, conn: socket.socket, node: str) -> None:
        host, path = self.targets[node]
        try:
            try:
                chan = self.transport(host).open_streamlocal(path)
            except HostUnreachable as e:
                return _answer(conn, str(e))
            except (paramiko.SSHException, OSError, EOFError) as e:
                return _answer(conn, f"host {self.hosts[host].where()}: node {node}: agent socket {path}: "
                                     f"{e or 'channel refused'} (is the agent running?)")
            with chan:
                _pump(conn, chan)
        finally:
            conn.close()

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        listeners = []
        for node in self.targets:
            path = self.dir / "nodes" / node / "agent.sock"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(path))
            os.chmod(path, 0o600)
            s.listen(64)
            sel.register(s, selectors.EVENT_READ, node)
            listeners.append((s, path))
        try:
            while not self.stop.is_set() and self.dir.is_dir():
                for key, _ in sel.select(timeout=0.5):
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    threading.Thread(target=self.relay, args=(conn, key.data), daemon=True).start()
        finally:
            for s, path in listeners:
                s.close()
                try:
                    path.unlink()
                except OSError:
                    pass
            for client in self.clients.values():
                client.close()


def _answer(conn: socket.socket, error: str) -> None:
    """Read the request (so the client is not cut off mid-send), answer with the error, in the API's own form."""
    conn.settimeout(2.0)
    try:
        conn.recv(65536)
        conn.sendall(json.dumps({"ok": False, "error": error}).encode() + b"\n")
    except OSError:
        pass


def _pump(conn: socket.socket, chan: paramiko.Channel) -> None:
    """Copy both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ, chan)
    sel.register(chan, selectors.EVENT_READ, conn)
    while True:
        for key, _ in sel.select(timeout=60):
            src = key.fileobj
            data = src.recv(65536)
            if not data:
                return
            key.data.sendall(data)
        if chan.closed:
            return


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m testbed.backends.remote_control RUN_DIR", file=sys.stderr)
        return 2
    fwd = Forwarder(Path(argv[0]))
    signal.signal(signal.SIGTERM, lambda *_: fwd.stop.set())
    fwd.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
