"""Cross-chain transfers on a running mesh of several chain instances (`chains:`, testbed/services.py): the driver of
node/xchain's protocol, the faults, and the audit of every chain's real state.

Each party is a node of the mesh with its run wallet key (services.wallet_key). It reaches each chain through the
chain's RPC (port + 1 of the instance) over the emulated links: the HTTP connections are made inside the party's
network namespace (node/agent/netns.py), to the nearest chain node of that chain first, then the others. So a
partitioned relay cannot see or spend anything, and a chain whose nodes are killed answers nobody. Each party steps
in a thread of its own (a cut-off party's timeouts do not stall the others). The off-chain preimage hand-back goes
from the secret holder to the transfer's other parties through the driver, to those not cut off by a partition
(modelled, not sent over the mesh).

    s = Settlement(mesh, ["a2", "b2", "x1"], timing=Timing(setup_s=6, margin_s=20))
    s.fund({"a2": ["alpha"], "x1": ["alpha", "beta"]}, coins=20, value=4 * PKT)
    t = s.start_relay("a2", "x1", "b2", "alpha", "beta", amount)     # or start_pairwise("a2", "b2", ...)
    s.run_until_settled(within=240)
    report = s.audit()          # every transfer's outcome from the chains' own blocks; funds per chain

Faults: `partition_relay(node, seconds)` (links down: testbed.faults partition) and `kill_chain(name, seconds)`
(SIGKILL of the chain's node services, started again with their SQLite chains after `seconds`).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from node.agent.netns import in_netns
from node.chain import params as chain_params
from node.chain.blocks import Block
from node.chain.keys import Key
from node.chain.script import htlc_hash
from node.chain.tx import OutPoint, TxOut
from node.chain.wire import hash_from_hex
from node.xchain import settlement as X
from node.xchain.party import Party
from node.xchain.watch import ChainWatch, State
from testbed import services

PKT = 1 << 30
FEE = 2000
RPC_TIMEOUT = 2.0


class XchainError(RuntimeError):
    """A settlement the run cannot do, naming why (no such chain, no funds, ...)."""


class _NetnsHTTP(http.client.HTTPConnection):
    def __init__(self, netns_fd: int, host: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.netns_fd = netns_fd

    def connect(self):
        with in_netns(self.netns_fd):
            self.sock = socket.create_connection((self.host, self.port), self.timeout)


class RpcAccess:
    """One party's way to one chain: the chain's RPC over the mesh, from the party's namespace (node/xchain/party.py
    names the four calls)."""

    def __init__(self, netns_fd: int, addresses: list[str], port: int):
        self.fd, self.addresses, self.port = netns_fd, addresses, port
        self.calls = self.failures = 0

    def _call(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        last = None
        for addr in self.addresses:
            self.calls += 1
            conn = _NetnsHTTP(self.fd, addr, self.port, RPC_TIMEOUT)
            try:
                data = None if body is None else json.dumps(body).encode()
                conn.request("GET" if body is None else "POST", path, body=data,
                             headers={"content-type": "application/json"} if data else {})
                r = conn.getresponse()
                return r.status, json.loads(r.read())
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.failures += 1
                last = e
            finally:
                conn.close()
        raise OSError(f"no chain node answers: {last}")

    def tip(self) -> int:
        return self._call("/tip")[1]["height"]

    def block_at(self, height: int) -> Block:
        status, answer = self._call(f"/block_at/{height}")
        if status != 200:
            raise OSError(f"block {height}: {answer}")
        return Block.parse(bytes.fromhex(answer["hex"]))

    def coins(self, address: str) -> list[tuple[OutPoint, int]]:
        return _spendable(self._call(f"/coins?address={quote(address)}")[1])

    def send(self, tx) -> None:
        status, answer = self._call("/sendtx", {"tx": tx.raw.hex()})
        if status != 200:
            raise ValueError(f"{answer.get('reason') or answer.get('error')}: {answer.get('detail')}")


def _spendable(answer: dict) -> list[tuple[OutPoint, int]]:
    return [(OutPoint(hash_from_hex(c["txid"]), c["index"]), c["value"]) for c in answer["coins"]
            if c["state"] == "spendable"]


class Settlement:
    def __init__(self, mesh, parties: list[str], timing: X.Timing, fee: int = FEE, seed: int = 0):
        run = mesh.run
        self.mesh, self.run = mesh, run
        self.instances = run.state.get("chains")
        if not self.instances:
            raise XchainError(f"run {run.name} has no chains: section (several chain instances)")
        self.params = {c: chain_params.for_run(i["config"]) for c, i in self.instances.items()}
        self.block_times = {c: float(p.target_block_time) for c, p in self.params.items()}
        self.timing, self.fee = timing, fee
        self.seed = seed
        self.fds = {}
        graph = mesh.topo.graph()
        self.parties: dict[str, Party] = {}
        for n in parties:
            if n not in mesh.topo.nodes:
                raise XchainError(f"no node {n} in the run")
            fd = os.open(f"/proc/{run.state['nodes'][n]['pid']}/ns/net", os.O_RDONLY)
            self.fds[n] = fd
            access = {}
            for c, inst in self.instances.items():
                order = sorted(inst["nodes"], key=lambda m: (len(_path(graph, n, m)), m))
                access[c] = RpcAccess(fd, [run.state["addresses"][m] for m in order], inst["config"]["port"] + 1)
            self.parties[n] = Party(n, self.key(n), access, self.block_times, timing, fee)
        self.transfers: dict[str, X.Transfer] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.cut: set[str] = set()                   # parties a partition cuts off (no hand-back reaches them)
        self.pool = ThreadPoolExecutor(max_workers=len(parties))
        self.counter = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for fd in self.fds.values():
            os.close(fd)

    def key(self, node: str) -> Key:
        return services.wallet_key(self.run.state["seed"], node)

    # --- host-side chain access (setup and audit: the Unix sockets) ----------------------------------------------
    def _rpc(self, chain: str, path: str, body=None) -> dict:
        last = None
        for n in self.instances[chain]["nodes"]:
            try:
                status, answer = services.chain_rpc(self.run, n, path, body)
            except OSError as e:
                last = e
                continue
            if status != 200:
                raise XchainError(f"{chain} via {n}: {path}: {answer}")
            return answer
        raise XchainError(f"{chain}: no chain node answers: {last}")

    def height(self, chain: str) -> int:
        return self._rpc(chain, "/tip")["height"]

    def balance(self, chain: str, node: str) -> int:
        return sum(c["value"] for c in self._rpc(chain, f"/coins?address={quote(self.key(node).address)}")["coins"])

    def fund(self, holders: dict[str, list[str]], coins: int, value: int, within: float = 120.0) -> None:
        """From each chain's solo miner, `coins` coins of `value` units to each holder on its chains; waits until
        they are in a block."""
        for chain in self.instances:
            to = [n for n, chains in holders.items() if chain in chains]
            if not to:
                continue
            miner = self.instances[chain]["miner"]
            mkey = self.key(miner)
            need = len(to) * coins * value + self.fee
            deadline = time.monotonic() + within
            while True:
                have = _spendable(self._rpc(chain, f"/coins?address={quote(mkey.address)}"))
                if sum(v for _, v in have) >= need:
                    break
                if time.monotonic() > deadline:
                    raise XchainError(f"{chain}: the miner {miner} has not mined {need} spendable units")
                time.sleep(0.5)
            outputs = [TxOut(value, self.key(n).p2pkh_script) for n in to for _ in range(coins)]
            tx = X.p2pkh_spend(mkey, X.pick_coins(have, need), outputs, self.fee)
            self._rpc(chain, "/sendtx", {"tx": tx.raw.hex()})
        self.mesh.wait_until(lambda: all(len(self.parties[n].access[c].coins(self.key(n).address)) >= coins
                                         for n, chains in holders.items() for c in chains), within,
                             "the holders' coins in a block")

    # --- transfers ------------------------------------------------------------------------------------------------
    def _start(self, hops: list[X.Hop], amount: int, holder: str, fee_per_hop: int = 0) -> X.Transfer:
        heights = {c: self.height(c) for c in {h.chain for h in hops}}
        self.counter += 1
        tid = f"t{self.counter}"
        secret = hashlib.sha256(f"pktlab xchain {self.seed} {tid}".encode()).digest()
        t = X.plan(tid, hops, amount, htlc_hash(secret), heights, self.block_times, self.timing, fee_per_hop)
        for n in t.parties:
            self.parties[n].add(t, secret if n == holder else None)
        self.transfers[tid] = t
        self.started[tid] = time.monotonic()
        return t

    def _hop(self, chain: str, payer: str, payee: str) -> X.Hop:
        if chain not in self.instances:
            raise XchainError(f"no chain {chain} (chains: {', '.join(self.instances)})")
        return X.Hop(chain, payer, payee, self.key(payer).pubkey, self.key(payee).pubkey)

    def start_relay(self, sender: str, relay: str, receiver: str, source: str, dest: str, amount: int,
                    fee_per_hop: int = 0) -> X.Transfer:
        return self._start([self._hop(source, sender, relay), self._hop(dest, relay, receiver)], amount, receiver,
                           fee_per_hop)

    def start_pairwise(self, a: str, b: str, chain_a: str, chain_b: str, amount: int) -> X.Transfer:
        """An atomic swap: a pays b on chain_a, b pays a on chain_b; a holds the secret."""
        return self._start([self._hop(chain_a, a, b), self._hop(chain_b, b, a)], amount, a)

    def step(self) -> None:
        """One round: every party steps (in parallel), then preimages handed back reach the parties not cut off."""
        now = time.time()
        list(self.pool.map(lambda p: p.step(now), self.parties.values()))
        for p in self.parties.values():
            while p.handed_back:
                tid, preimage = p.handed_back.pop()
                for q in self.transfers[tid].parties - {p.name} - self.cut:
                    self.parties[q].learn(tid, preimage)
        for tid in self.transfers:
            if tid not in self.finished and self.outcome(tid) != X.PENDING:
                self.finished[tid] = time.monotonic()

    def outcome(self, tid: str) -> str:
        """The transfer's outcome as its first payer sees it (the audit reads the chains themselves)."""
        t = self.transfers[tid]
        return X.outcome(self.parties[t.legs[0].payer].seen(tid))

    def pending(self) -> list[str]:
        return [tid for tid in self.transfers if tid not in self.finished]

    def run_until_settled(self, within: float, interval: float = 0.5, during=None) -> bool:
        """Step until every transfer is settled (or `within` seconds); `during()` is called every round (faults)."""
        deadline = time.monotonic() + within
        while self.pending() and time.monotonic() < deadline:
            self.step()
            if during is not None:
                during()
            time.sleep(interval)
        return not self.pending()

    # --- faults ---------------------------------------------------------------------------------------------------
    def partition(self, node: str):
        f = self.mesh.fault(f"partition {node}", check=False)
        self.cut.add(node)
        return f

    def heal(self, fault, node: str) -> None:
        self.mesh.heal(fault, check=False)
        self.cut.discard(node)

    def kill_chain(self, chain: str) -> None:
        for n in self.instances[chain]["nodes"]:
            self.mesh.stop_service(n, "chain", signal.SIGKILL)

    def restart_chain(self, chain: str) -> None:
        for n in self.instances[chain]["nodes"]:
            services.status_file(self.run, n, "chain").unlink(missing_ok=True)
            self.mesh.start_service(n, "chain")

    # --- audit ----------------------------------------------------------------------------------------------------
    def audit(self) -> dict:
        """Every transfer's outcome from each chain's own main chain (fresh watches over the host's Unix sockets,
        independent of the parties), the fees the settlement paid per chain, and each chain's mempool."""
        watches = {c: ChainWatch() for c in self.instances}
        for t in self.transfers.values():
            for leg in t.legs:
                watches[leg.chain].watch(leg.script)
        for c, w in watches.items():
            for h in range(1, self.height(c) + 1):
                block = Block.parse(bytes.fromhex(self._rpc(c, f"/block_at/{h}")["hex"]))
                if not w.feed(h, block):
                    raise XchainError(f"{c}: block {h} does not extend block {h - 1}")
        outcomes, fees = {}, {c: 0 for c in self.instances}
        for tid, t in self.transfers.items():
            seen = [watches[leg.chain].seen(leg.script) for leg in t.legs]
            outcomes[tid] = X.outcome(seen)
            for leg, s in zip(t.legs, seen):
                fees[leg.chain] += self.fee * ((s.state is not State.NONE) + (s.state in (State.REDEEMED,
                                                                                          State.REFUNDED)))
        mempools = {c: max((services.service_status(self.run, n, "chain") or {}).get("mempool", 0)
                               for n in inst["nodes"]) for c, inst in self.instances.items()}
        return {"outcomes": outcomes, "fees": fees, "mempools": mempools}

    def balances(self, nodes: list[str]) -> dict[str, dict[str, int]]:
        """{chain: {node: units}} of every party (confirmed coins, mempool spends left out)."""
        return {c: {n: self.balance(c, n) for n in nodes} for c in self.instances}


def _path(graph, a: str, b: str) -> list:
    import networkx as nx
    try:
        return nx.shortest_path(graph, a, b)
    except nx.NetworkXNoPath:
        return [None] * 10_000
