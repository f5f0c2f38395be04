"""A run's PKT chain: the topology's `chain:` section and the time scale, the starting difficulty, and the chain-side
services of the nodes with the roles `chain`, `pool`, `miner` and `block_miner` (node/chain/service.py), and the
market service of the nodes with the role `issuer` (node/market/service.py, on its nearest chain node), started in
the nodes' namespaces and tagged with the run like every process of it (so `pktlab down`/`cleanup` stop them).

The `chain:` section (every field optional):
    time_scale        divide mainnet's lengths by this (`pktlab up --time-scale` overrides it): block time 60/F s,
                      retarget window 2016/F blocks, steward burn depth 129600/F, maturity 100/F, lock 1440/F
    block_time, retarget_interval, burn_depth, maturity, lock_blocks
                      a length of its own (wins over the time scale)
    genesis_bits      the starting difficulty; when absent it is measured: the block hash rate of this machine
                      (one second of PacketCrypt block hashes, halved: the block miner shares the two cores with the
                      announcement miners and the data plane) and the announcements a block should find (each
                      miner's ann_rate over one block time, at the pool's announcement target) give the bits at which
                      a block takes block_time on average (node/chain/mining.py starting_bits). The retarget is the
                      real one from there.
    ann_rate          the most announcements per second each announcement miner mines (default 10; 0 = as fast as
                      its core goes)
Several chain instances (issue 19: cross-chain settlement, testbed/xchain.py) come from a `chains:` section instead:
    chains:
      alpha: {nodes: [a1, a2], miner: a1, time_scale: 30}
      beta:  {nodes: [b1, b2]}
each a named chain with the fields of `chain:` (but ann_rate) plus
    nodes             its chain nodes (at least one; a node keeps at most one chain)
    miner             the node that mines it, alone (node/chain/solo.py: one block per block time); default: the first
    net_magic, port   its own network: P2P magic and port (RPC on port + 1); default for the i-th chain (0-based, in
                      file order): 0x082f00fc + 1 + i and 64766 + 2 i, so no two instances talk to each other
    genesis_bits      default: the pow limit (the solo miner is paced, not raced)
Each instance has its own genesis (its genesis time is the run's start + i seconds). The nodes of a chain need no
role: the section makes them chain nodes; `chain:` and `chains:` do not mix, nor do `chains:` and pools or miners.
The journal keeps them in `state["chains"]` {name: {"config", "nodes", "miner"}}.

The genesis time is the moment the run comes up (so the first retarget window does not span years). What a run
chose is in its journal (`state["chain"]`) and printed by `pktlab chain`.

Each node gets `nodes/<node>/<role>.json` (its service config), `<role>.log`, `<role>.status.json` and, for a chain
node, its SQLite chain under `nodes/<node>/chain/` and the RPC's Unix socket `nodes/<node>/chain.sock` (how the
host side reaches a node's RPC). A pool works with its nearest chain node (fewest hops; itself when it has both
roles); miners and block miners with their nearest pool. Every node's wallet key derives from the run seed and the
node name (`wallet_key`), so payouts land on an address the run can show and spend.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx

from node.chain import mining
from node.chain import params as chain_params
from node.chain.keys import Key
from node.chain.pool.service import PORTS as POOL_PORTS
from node.chain.pool.work import DEFAULT_ANN_TARGET
from node.market.market_node import MARKET_PORT
from testbed import runs
from testbed.topology.check import MARKET_ATTR
from testbed.waiting import wait_until

# The roles these services run: what to merge into testbed.topology.RUNNING_ROLES (the registry on main).
SERVICE_ROLES = {
    "chain": "runs a PKT chain node (P2P with the other chain nodes over the mesh, RPC for wallets and pools)",
    "pool": "runs a PacketCrypt pool (master, announcement handler, block handler, paymaker) on its nearest chain node",
    "miner": "mines PacketCrypt announcements and uploads them to its nearest pool",
    "block_miner": "mines PacketCrypt blocks from its nearest pool's announcements",
    "issuer": "runs the node's bandwidth market (node/market/service.py): issues its lease tokens, buys others'",
}
ORDER = ("chain", "pool", "block_miner", "miner", "issuer")   # start order: what a service needs comes up first
MODULES = {"issuer": "node.market.service"}                    # every other role: node.chain.service
SECTION_KEYS = set(chain_params.RUN_LENGTHS) | {"genesis_bits", "time_scale", "ann_rate"}
DEFAULT_ANN_RATE = 10.0
MARKET_TICK_S = 0.5
HASHRATE_SHARE = 0.5


class ChainConfigError(ValueError):
    """A topology `chain:` section (or time scale) that cannot run, naming the field."""


def check_section(section) -> dict:
    """The `chain:` section checked (what the topology reader calls); raises ChainConfigError naming the field."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ChainConfigError(f"chain: expected a mapping, got {type(section).__name__}")
    unknown = set(section) - SECTION_KEYS
    if unknown:
        raise ChainConfigError(f"chain: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                               f"(known: {', '.join(sorted(SECTION_KEYS))})")
    if "time_scale" in section:
        try:
            chain_params.scaled_lengths(section["time_scale"])
        except ValueError as e:
            raise ChainConfigError(f"chain: {e}") from None
    rate = section.get("ann_rate", DEFAULT_ANN_RATE)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1e6:
        raise ChainConfigError(f"chain: ann_rate must be a number of announcements per second >= 0, got {rate!r}")
    try:
        chain_params.for_run({k: v for k, v in section.items() if k not in ("time_scale", "ann_rate")})
    except ValueError as e:
        raise ChainConfigError(str(e)) from None
    return dict(section)


CHAINS_KEYS = (SECTION_KEYS - {"ann_rate"}) | {"nodes", "miner", "net_magic", "port"}
MAX_CHAINS = 16
FIRST_INSTANCE_PORT = 64766


def check_chains(section, topo) -> dict:
    """The `chains:` section checked against the topology's nodes; raises ChainConfigError naming the field."""
    if not isinstance(section, dict) or not 1 <= len(section) <= MAX_CHAINS:
        raise ChainConfigError(f"chains: expected a mapping of 1..{MAX_CHAINS} named chains")
    if topo.chain:
        raise ChainConfigError("chains: a topology has either a chain: section or a chains: section, not both")
    busy = set(topo.nodes_with_role("chain")) | {n for r in ("pool", "miner", "block_miner")
                                                    for n in topo.nodes_with_role(r)}
    if busy:
        raise ChainConfigError(f"chains: the roles chain, pool, miner and block_miner belong to the single chain: "
                               f"section (nodes {', '.join(sorted(busy))}); chains: makes its own chain nodes")
    owner: dict[str, str] = {}
    out = {}
    for name, entry in section.items():
        where = f"chains: {name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ChainConfigError(f"chains: {name!r} is not a chain name (letters, digits, _)")
        if not isinstance(entry, dict):
            raise ChainConfigError(f"{where}: expected a mapping")
        unknown = set(entry) - CHAINS_KEYS
        if unknown:
            raise ChainConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                                   f"(known: {', '.join(sorted(CHAINS_KEYS))})")
        nodes = entry.get("nodes")
        if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
            raise ChainConfigError(f"{where}: nodes: expected a list of node names")
        for n in nodes:
            if n not in topo.nodes:
                raise ChainConfigError(f"{where}: nodes: no node {n!r} in the topology")
            if n in owner:
                raise ChainConfigError(f"{where}: node {n} is already a node of chain {owner[n]}")
            owner[n] = name
        miner = entry.get("miner", nodes[0])
        if miner not in nodes:
            raise ChainConfigError(f"{where}: miner: {miner!r} is not one of its nodes")
        rest = {k: v for k, v in entry.items() if k not in ("nodes", "miner", "net_magic", "port")}
        try:
            check_section(rest)
            chain_params.for_run({k: entry[k] for k in ("net_magic", "port") if k in entry})
        except ValueError as e:
            raise ChainConfigError(f"{where}: {str(e).removeprefix('chain: ')}") from None
        out[name] = dict(entry)
    return out


def has_services(topo) -> bool:
    return bool(topo.chains) or any(set(n.roles) & set(SERVICE_ROLES) for n in topo.nodes.values())


def wallet_key(seed, node: str) -> Key:
    """The node's wallet key (its payouts, `pktlab wallet NODE`): from the run seed, the same every time."""
    return Key.from_seed(f"pktlab wallet {seed} {node}")


def run_chain(topo, *, time_scale: float | None = None, now: float | None = None,
              hashrate: float | None = None) -> dict:
    """What a run's chain runs with: {"config": node/chain/params for_run form, "ann_rate", "measured": how the
    starting difficulty was chosen (or null when the section gives genesis_bits)}."""
    section = check_section(topo.chain)
    config = {}
    scale = time_scale if time_scale is not None else section.get("time_scale")
    if scale is not None:
        try:
            config.update(chain_params.scaled_lengths(scale))
        except ValueError as e:
            raise ChainConfigError(f"time scale: {e}") from None
    config.update({k: section[k] for k in chain_params.RUN_LENGTHS if k in section})
    config["genesis_time"] = int(now if now is not None else time.time())
    ann_rate = float(section.get("ann_rate", DEFAULT_ANN_RATE))
    measured = None
    if "genesis_bits" in section:
        config["genesis_bits"] = section["genesis_bits"]
    else:
        p = chain_params.for_run(config)
        rate = hashrate if hashrate is not None else mining.measure_hashrate(time.monotonic, 1.0)
        miners = len(topo.nodes_with_role("miner"))
        anns = max(1, int(miners * (ann_rate or DEFAULT_ANN_RATE) * p.target_block_time))
        config["genesis_bits"] = mining.starting_bits(rate * HASHRATE_SHARE, p.target_block_time,
                                                      DEFAULT_ANN_TARGET, anns, pow_limit_bits=p.pow_limit_bits)
        measured = {"block_hashes_per_s": round(rate, 1), "share_of_cpu": HASHRATE_SHARE,
                    "anns_per_block": anns, "ann_target": f"0x{DEFAULT_ANN_TARGET:08x}",
                    "genesis_bits": f"0x{config['genesis_bits']:08x}"}
    chain_params.for_run(config)                  # raises on anything the parts above let through
    return {"config": config, "ann_rate": ann_rate, "measured": measured}


def run_chains(topo, *, time_scale: float | None = None, now: float | None = None) -> dict:
    """What each chain instance of a `chains:` section runs with: {name: {"config", "nodes", "miner"}}."""
    start = int(now if now is not None else time.time())
    out = {}
    for i, (name, entry) in enumerate(topo.chains.items()):
        config = {}
        scale = time_scale if time_scale is not None else entry.get("time_scale")
        if scale is not None:
            try:
                config.update(chain_params.scaled_lengths(scale))
            except ValueError as e:
                raise ChainConfigError(f"time scale: {e}") from None
        config.update({k: entry[k] for k in chain_params.RUN_LENGTHS if k in entry})
        config.update(genesis_time=start + i, genesis_bits=entry.get("genesis_bits", chain_params.REGTEST_POW_LIMIT),
                      net_magic=entry.get("net_magic", chain_params.MAINNET.net_magic + 1 + i),
                      port=entry.get("port", FIRST_INSTANCE_PORT + 2 * i))
        chain_params.for_run(config)
        out[name] = {"config": config, "nodes": list(entry["nodes"]), "miner": entry.get("miner", entry["nodes"][0])}
    ports = [c["config"]["port"] for c in out.values()]
    if len(set(ports) | {p + 1 for p in ports}) != 2 * len(ports):
        raise ChainConfigError(f"chains: two instances share a port (P2P ports {ports}, each RPC on port + 1)")
    return out


def instance_configs(state: dict, run_dir: Path) -> dict[str, dict[str, dict]]:
    """{node: {"chain": service config}} for the chain nodes of every instance (needs state["chains"])."""
    addr = state["addresses"]
    events = str(run_dir / "events.jsonl")
    out: dict[str, dict[str, dict]] = {}
    for inst in state["chains"].values():
        port = inst["config"]["port"]
        for n in inst["nodes"]:
            d = run_dir / "nodes" / n
            settings = {"p2p_port": port, "rpc_port": port + 1, "socket": str(d / "chain.sock"),
                        "peers": [[addr[c], port] for c in inst["nodes"] if c != n]}
            if n == inst["miner"]:
                settings["solo_pay_to"] = wallet_key(state["seed"], n).address
            out[n] = {"chain": {"role": "chain", "node": n, "address": addr[n], "state_dir": str(d),
                                "events_file": events, "log_file": str(d / "chain.log"), "chain": inst["config"],
                                "settings": settings}}
    return out


def chain_of(state: dict, node: str) -> str | None:
    """The name of the chain instance whose chain node `node` is (None in a single-chain run or when it is none)."""
    return next((name for name, inst in state.get("chains", {}).items() if node in inst["nodes"]), None)


def nearest(graph, node: str, candidates: list[str]) -> str | None:
    """The candidate fewest hops from node (itself if it is one; ties by name), None if none is reachable."""
    if node in candidates:
        return node
    lengths = nx.single_source_shortest_path_length(graph, node)
    reachable = [c for c in candidates if c in lengths]
    return min(reachable, key=lambda c: (lengths[c], c)) if reachable else None


def _url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}"


def service_configs(topo, state: dict, run_dir: Path) -> dict[str, dict[str, dict]]:
    """{node: {role: service config}} for every chain-side role of the topology (needs state["chain"] from
    run_chain and the nodes' addresses)."""
    chain = state["chain"]
    params = chain_params.for_run(chain["config"])
    addr = state["addresses"]
    graph = topo.graph()
    chains, pools = topo.nodes_with_role("chain"), topo.nodes_with_role("pool")
    p2p_port, rpc_port = params.default_port, params.default_port + 1
    events = str(run_dir / "events.jsonl")
    out: dict[str, dict[str, dict]] = {}
    for n in topo.nodes.values():
        d = run_dir / "nodes" / n.name
        for role in (r for r in ORDER if r in n.roles):
            if role == "chain":
                settings = {"p2p_port": p2p_port, "rpc_port": rpc_port, "socket": str(d / "chain.sock"),
                            "peers": [[addr[c], p2p_port] for c in chains if c != n.name]}
            elif role == "pool":
                near = nearest(graph, n.name, chains)
                if near is None:
                    raise ChainConfigError(f"pool {n.name}: no node with the role chain to work with")
                settings = {"chain_url": _url(addr[near], rpc_port),
                            "default_address": wallet_key(state["seed"], n.name).address}
            elif role == "issuer":
                near = nearest(graph, n.name, chains)
                if near is None:
                    raise ChainConfigError(f"issuer {n.name}: no node with the role chain to work with")
                from testbed.agent_configs import identity
                settings = {"chain_url": _url(addr[near], rpc_port), "socket": str(d / "market.sock"),
                            "node_secret": identity(topo, state["seed"], n.name).private_key.hex(),
                            "wallet_secret": wallet_key(state["seed"], n.name).secret.hex(),
                            "tick_s": MARKET_TICK_S, "lease_agents": _lease_agents(topo, run_dir, n),
                            "peers": [_url(addr[m], MARKET_PORT) for m in topo.nodes_with_role("issuer")
                                      if m != n.name]}
                if state.get("routing") == "route-server":      # its offers travel in the node's announcements
                    settings["agent_socket"] = str(d / "agent.sock")
                settings.update(n.attrs.get(MARKET_ATTR) or {})     # hub, hub_fee (checked by validate)
            else:
                near = nearest(graph, n.name, pools)
                if near is None:
                    raise ChainConfigError(f"{role} {n.name}: no node with the role pool to work for")
                settings = {"master_url": _url(addr[near], POOL_PORTS["master"]),
                            "pay_to": wallet_key(state["seed"], n.name).address}
                if role == "miner":
                    settings["max_rate"] = chain["ann_rate"]
            out.setdefault(n.name, {})[role] = {
                "role": role, "node": n.name, "address": addr[n.name], "state_dir": str(d), "events_file": events,
                "log_file": str(d / f"{role}.log"), "chain": chain["config"], "settings": settings}
    return out


def _lease_agents(topo, run_dir: Path, node) -> dict:
    """{lease: the agent sockets of its link's ends} for the declared leases of the node's ISP: the devices its
    market grants and meters the leases it sells pay-as-you-go on (the ISP operates both ends)."""
    from testbed.topology.leases import declared_leases
    out = {}
    for d in declared_leases(topo):
        if node.isp is not None and d.isp == node.isp:
            link = topo.links[d.link_index]
            out[d.id] = [str(run_dir / "nodes" / end / "agent.sock") for end in (link.a, link.b)]
    return out


# --- processes ------------------------------------------------------------------------------------------------------

def start_service(run, node: str, role: str) -> int:
    """Start (or restart) one service of a node from its config file, in the node's namespace, tagged."""
    from testbed.backends import exec_in
    cfg = run.path("nodes", node, f"{role}.json")
    log = open(run.path("nodes", node, f"{role}.stderr"), "ab")
    module = MODULES.get(role, "node.chain.service")
    proc = exec_in(run, node, [sys.executable, "-m", module, str(cfg)], stdin=subprocess.DEVNULL,
                   stdout=log, stderr=log, start_new_session=True)
    log.close()
    run.state.setdefault("services", {}).setdefault(node, {})[role] = {"pid": proc.pid,
                                                                       "start": runs.proc_start_time(proc.pid)}
    return proc.pid


def stop_service(run, node: str, role: str, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    rec = run.state.get("services", {}).get(node, {}).get(role)
    if not rec or not runs.alive(rec["pid"], rec["start"]):
        return
    os.kill(rec["pid"], sig)

    def gone():
        try:
            os.waitpid(rec["pid"], os.WNOHANG)
        except ChildProcessError:
            pass
        return not runs.alive(rec["pid"], rec["start"])
    wait_until(gone, timeout, interval=0.05)


def start_all(run, topo, *, time_scale: float | None = None, progress=lambda *a: None, wait: float = 30.0) -> None:
    """Choose the run's chain parameters, write every service config, start them in ORDER and wait until each
    writes its status (a service that exits names its log)."""
    if topo.chains:
        run.state["chains"] = run_chains(topo, time_scale=time_scale)
        configs = instance_configs(run.state, run.dir)
    else:
        run.state["chain"] = run_chain(topo, time_scale=time_scale)
        configs = service_configs(topo, run.state, run.dir)
    todo = [(node, role) for role in ORDER for node, roles in configs.items() if role in roles]
    for i, (node, role) in enumerate(todo):
        path = run.path("nodes", node, f"{role}.json")
        path.write_text(json.dumps(configs[node][role], indent=1))
        status_file(run, node, role).unlink(missing_ok=True)
        start_service(run, node, role)
        progress("chain services", i + 1, len(todo))
    run.save()

    def all_up():
        for node, role in todo:
            rec = run.state["services"][node][role]
            if not runs.alive(rec["pid"], rec["start"]):
                raise runs.RunError(f"{role} service on {node} exited: see {run.path('nodes', node, role + '.log')}"
                                    f" and {role}.stderr")
        return all(status_file(run, n, r).exists() for n, r in todo)
    if not wait_until(all_up, wait, interval=0.1):
        missing = [f"{r} on {n}" for n, r in todo if not status_file(run, n, r).exists()]
        raise runs.RunError(f"chain services not up after {wait:.0f} s: {', '.join(missing[:6])}")


def status_file(run, node: str, role: str) -> Path:
    return run.path("nodes", node, f"{role}.status.json")


def service_status(run, node: str, role: str) -> dict | None:
    """The service's last status (written every second), or None when it has none."""
    try:
        return json.loads(status_file(run, node, role).read_text())
    except (OSError, ValueError):
        return None


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_http(socket_path: str, path: str, body: dict | None = None, timeout: float = 10.0,
              what: str = "service") -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a service's HTTP API through its Unix socket; OSError when it does not answer."""
    conn = _UnixHTTP(str(socket_path), timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request("GET" if body is None else "POST", path, body=data,
                     headers={"content-type": "application/json"} if data else {})
        r = conn.getresponse()
        raw = r.read()
    except (TimeoutError, http.client.HTTPException) as e:
        raise OSError(f"{what} {path}: {e}") from None
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        raise OSError(f"{what} {path}: not JSON (HTTP {r.status})") from None


def chain_rpc(run, node: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a chain node's RPC, through its Unix socket; OSError when it does not answer."""
    return unix_http(run.path("nodes", node, "chain.sock"), path, body, timeout, f"{node}: chain RPC")
