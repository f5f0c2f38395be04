"""`python -m node.chain.service CONFIG.json`: one chain-side service of a node, in the node's network namespace.

Roles (the config's "role"):
  chain        a chain node: its chain in `<state_dir>/chain/` (SQLite; a restarted node reopens it), P2P on
               [address]:p2p_port, the RPC on [address]:rpc_port and on the Unix socket `settings.socket`
  pool         a PacketCrypt pool (§5.10): master, announcement handler, block handler, paymaker
  miner        an announcement miner uploading to its pool's announcement handlers
  block_miner  a block miner working for its pool

Config (JSON, written by the orchestrator: testbed/services.py):
  {"role", "node", "address" (the node's fc00::/8 address), "state_dir" (the node's run directory),
   "events_file" (the run's event log, or null), "log_file", "chain" (the chain parameters in their config form,
   node/chain/params.py for_run), "settings" {role specific}}

Every service writes `<state_dir>/<role>.status.json` (atomically, every STATUS_S seconds): what it shows to
`pktlab chain` / `pktlab mining`, the node agent's status and the live view. SIGTERM stops it cleanly.
"""
from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import signal
import socket
import sys
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


def load_config(path: str) -> tuple[Runtime, str]:
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
    role = data.get("role")
    if role not in ROLES:
        raise ServiceConfigError(f"{path}: role: one of {', '.join(ROLES)}, got {role!r}")
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
        except asyncio.TimeoutError:
            pass
    if stop is not None:
        await stop()
    log.info("%s on %s: stopped", rt.role, rt.node)


# --- the chain node ----------------------------------------------------------------------------------------------

async def run_chain(rt: Runtime) -> None:
    from aiohttp import web

    from .chain_node import ChainNode
    from .p2p import P2P
    from .rpc import make_app

    p2p_port = rt.setting("p2p_port", int, rt.params.default_port)
    rpc_port = rt.setting("rpc_port", int, rt.params.default_port + 1)
    peers = []
    for i, entry in enumerate(rt.setting("peers", list, [])):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int)):
            raise ServiceConfigError(f"{rt.source}: settings.peers[{i}]: expected [address, port]")
        peers.append((entry[0], entry[1]))
    node = ChainNode(rt.node, rt.params, rt.state_dir / "chain", events=rt.events)
    node.p2p = P2P(node, rt.params, listen=(rt.address, p2p_port), peers=peers,
                   ban_s=rt.setting("ban_s", (int, float), 3600.0))
    runner = web.AppRunner(make_app(node), access_log=None, shutdown_timeout=2.0)

    async def start():
        await node.p2p.start(listening_socket(rt.address, p2p_port))
        await runner.setup()
        await web.SockSite(runner, listening_socket(rt.address, rpc_port)).start()
        unix = rt.setting("socket", str)
        if unix:
            if os.path.exists(unix):
                os.unlink(unix)
            await web.UnixSite(runner, unix).start()

    async def stop():
        await node.p2p.stop()
        await runner.cleanup()
        node.close()

    await run_until_stopped(rt, start, node.status, stop)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m node.chain.service CONFIG.json", file=sys.stderr)
        return 2
    try:
        rt, log_file = load_config(argv[0])
    except ServiceConfigError as e:
        print(f"chain service: bad config: {e}", file=sys.stderr)
        return 2
    faulthandler.register(signal.SIGUSR1, all_threads=True)     # a stuck service shows where (on stderr)
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runners = {"chain": run_chain}
    if rt.role == "pool":
        from .pool.service import run_pool
        runners["pool"] = run_pool
    elif rt.role == "miner":
        from .pool.ann_miner import run_miner
        runners["miner"] = run_miner
    elif rt.role == "block_miner":
        from .pool.block_miner import run_block_miner
        runners["block_miner"] = run_block_miner
    try:
        result = runners[rt.role](rt)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except ServiceConfigError as e:
        print(f"chain service: bad config: {e}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("%s on %s failed", rt.role, rt.node)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
