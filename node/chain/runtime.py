"""What every chain-side service of a node gets (node/chain/service.py runs them): its config read and checked
(`load_config`), the Runtime (who and where it is, its settings, the run's event log, its status file), a listening
socket on the node's address, and the loop that writes its status until SIGTERM."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from node.event_log import EventLog

from . import params as chain_params

log = logging.getLogger("node.chain.service")
ROLES = ("chain", "pool", "miner", "block_miner")
STATUS_S = 1.0
TOP_KEYS = {"role", "node", "address", "state_dir", "events_file", "log_file", "chain", "settings"}


class ServiceConfigError(ValueError):
    """A service config that cannot run: names the file and the field."""


@dataclass
class Runtime:
    """What every service gets: who and where it is, its settings, the event log, its status file."""
    role: str
    node: str
    address: str
    state_dir: Path
    settings: dict
    params: chain_params.ChainParams
    events: EventLog | None
    source: str = "config"

    @property
    def status_path(self) -> Path:
        return self.state_dir / f"{self.role}.status.json"

    def write_status(self, status: dict) -> None:
        tmp = self.state_dir / f".{self.role}.status.tmp"
        tmp.write_text(json.dumps(dict(status, ts=time.time(), pid=os.getpid(), role=self.role)))
        os.replace(tmp, self.status_path)

    def event(self, kind: str, **details) -> None:
        if self.events is None:
            return
        try:
            self.events.append(kind, node=self.node, **details)
        except (OSError, ValueError) as e:
            log.warning("event log: %s", e)

    def setting(self, key: str, kind, default=None, *, required: bool = False):
        """A settings field of the given type (or types), with the config file named in the error."""
        if key not in self.settings:
            if required:
                raise ServiceConfigError(f"{self.source}: settings.{key}: missing")
            return default
        v = self.settings[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
            raise ServiceConfigError(f"{self.source}: settings.{key}: expected "
                                     f"{' or '.join(k.__name__ for k in kinds)}, got {v!r}")
        return v


def load_config(path: str, roles: tuple = ROLES, default_role: str | None = None) -> tuple[Runtime, str]:
    """The config file of a service with one of `roles` (the market's service uses it too, with its role)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ServiceConfigError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ServiceConfigError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ServiceConfigError(f"{path}: expected a JSON object")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ServiceConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    role = data.get("role", default_role)
    if role not in roles:
        raise ServiceConfigError(f"{path}: role: one of {', '.join(roles)}, got {role!r}")
    for key in ("node", "address", "state_dir", "log_file"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ServiceConfigError(f"{path}: {key}: expected a non-empty string")
    state_dir = Path(data["state_dir"])
    if not state_dir.is_dir():
        raise ServiceConfigError(f"{path}: state_dir: {state_dir} is not a directory")
    if not isinstance(data.get("settings", {}), dict):
        raise ServiceConfigError(f"{path}: settings: expected an object")
    try:
        params = chain_params.for_run(data.get("chain") or {})
    except ValueError as e:
        raise ServiceConfigError(f"{path}: chain: {e}") from None
    events = EventLog(data["events_file"]) if data.get("events_file") else None
    rt = Runtime(role, data["node"], data["address"], state_dir, data.get("settings", {}), params, events, path)
    return rt, data["log_file"]


def listening_socket(address: str, port: int) -> socket.socket:
    """A TCP socket bound to [address]:port even before the address is on the node's TUN device (FREEBIND): a
    service that starts while the agent restarts still comes up."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_IP, 15, 1)                  # IP_FREEBIND (also covers IPv6 sockets)
    s.bind((address, port))
    s.listen(128)
    s.setblocking(False)
    return s


async def serve_http(rt: Runtime, runner, port: int) -> None:
    """Serve an aiohttp AppRunner on [the node's address]:port and, when settings.socket names one, on that Unix
    socket too (the host's way in)."""
    from aiohttp import web
    await runner.setup()
    await web.SockSite(runner, listening_socket(rt.address, port)).start()
    unix = rt.setting("socket", str)
    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        await web.UnixSite(runner, unix).start()


async def run_until_stopped(rt: Runtime, start, status, stop=None) -> None:
    """Start a service (`await start()`), write its status every STATUS_S until SIGTERM/SIGINT, then `await
    stop()`."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    log.info("%s on %s: started", rt.role, rt.node)
    while not stopping.is_set():
        try:
            rt.write_status(status())
        except OSError as e:
            log.warning("status file: %s", e)
        try:
            await asyncio.wait_for(stopping.wait(), STATUS_S)
        except TimeoutError:
            pass
    if stop is not None:
        await stop()
    log.info("%s on %s: stopped", rt.role, rt.node)
