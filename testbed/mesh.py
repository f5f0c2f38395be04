"""A running mesh: the Python API behind `pktlab up/down/exec/ping` and the pytest plugin.

    with Mesh.up("grid:3x3") as mesh:    # namespaces, links, agents; returns when every node reaches every other
        mesh.ping("r1c1", "r3c3")        # end to end over the nodes' fc00::/8 addresses
        mesh.exec("r1c1", "ip -6 addr")
        f = mesh.fault("loss r1c1--r1c2 10%")
        mesh.heal(f)
                                         # leaving the block is mesh.down()

`Mesh.attach(name)` gives the same object for a run started by another process; the pytest plugin's `mesh`
fixture is one too.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import networkx as nx

from node.agent.control_client import AgentClient, AgentError
from node.cjdns import labels
from node.cjdns.keys import Identity
from testbed import agent_configs, backends, chain_view, faults, market_view, runs, services
from testbed.backends import exec_in
from testbed.events import DOWN, FILENAME as EVENTS_FILE, UP, EventLog
from testbed.faults.measure import parse_ping
from testbed.runs import Run, RunError
from testbed.topology import Topology, load, save, servers, validate
from testbed.waiting import wait_until

SOLO_AGENTS_UP_TO = 60  # meshes up to this size get one agent process per node (faults can target each alone)
MAX_AGENT_PROCESSES = 32  # bigger meshes share this many multi-node agent hosts
REACH_SAMPLE = 200  # pairs checked after `up` on big meshes (every pair on small ones)


def _no_progress(step, done, total):
    pass


def _remove_failed(run: Run, error: BaseException):
    """A build that failed: keep the run's records (journal, topology, agent logs) where `down` and `cleanup`
    do not reach, then remove the run; Ctrl-C removes it without keeping anything. Raises what stopped it."""
    kept = None
    if not isinstance(error, KeyboardInterrupt):
        try:
            kept = runs.keep_records(run, "failed")
        except OSError:
            pass
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not leave half a run
    try:
        backends.destroy(run)
    except RunError as cleanup:     # a host that cannot be reached: say so, with what went wrong first
        raise RunError(f"{error}; then cleaning up: {cleanup}") from error
    finally:
        signal.signal(signal.SIGINT, previous)
    if isinstance(error, KeyboardInterrupt):
        raise runs.Interrupted(f"interrupted while building run {run.name}: removed, nothing of it is left "
                               "behind") from None
    if kept and isinstance(error, (OSError, RuntimeError)):      # RunError, FaultError, backend errors
        raise RunError(f"{error}\nrun {run.name} was removed; its journal and agent logs are kept in {kept}") \
            from error
    raise error


@contextmanager
def _interrupts_as_exceptions():
    """SIGTERM during `up` unwinds like Ctrl-C, so the half-built run is removed either way."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _shown(names, limit: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


class Mesh:
    def __init__(self, run: Run, topo: Topology, backend: backends.Backend | None = None):
        self.run = run
        self.topo = topo
        self._backend = backend     # None: the one the journal names, when first needed

    @property
    def backend(self) -> backends.Backend:
        """What the nodes live on (testbed/backends/base.py), as the journal says."""
        if self._backend is None:
            self._backend = backends.for_run(self.run, self.topo)
        return self._backend

    # -- life cycle -------------------------------------------------------------------------------------------
    @classmethod
    def up(cls, spec: str | Topology, *, name: str | None = None, seed: int | None = None, agents: bool = True,
           progress=_no_progress, wait: float = 60.0, allow_disconnected: bool | None = None,
           agents_per_process: int | None = None, routing: str = "auto", restart_agents: bool = True,
           time_scale: float | None = None, backend: str = "netns", sample_counters: bool = True,
           **backend_options) -> "Mesh":
        """Build a run and wait until it is ready. restart_agents: the run monitor starts an agent that died
        again, with the same identity (testbed/monitor.py), unless it was stopped on purpose (a crash fault).
        sample_counters: the monitor samples the agents' counters for the report's throughput plots all along
        (else only while the live view reads them: an idle mesh then costs less).
        time_scale: the PKT chain's lengths divided by it (testbed/services.py; else the topology's chain: section).
        `backend` is netns (this machine), ssh (with hosts=INVENTORY) or vagrant; the backend's options (hosts=...,
        see testbed/backends/) go with it."""
        topo = spec if isinstance(spec, Topology) else load(spec, seed=seed, allow_disconnected=allow_disconnected)
        if isinstance(spec, Topology):
            validate(topo, allow_disconnected)
        if routing not in ("auto", "static", "route-server"):
            raise RunError(f"routing {routing!r}: use auto, static or route-server")
        if routing == "auto":
            if not topo.nodes_with_role("route_server") and len(topo.nodes) > servers.STATIC_PATHS_UP_TO:
                servers.place(topo, servers.default_count(len(topo.nodes)))   # static paths cost too much
            routing = "route-server" if topo.nodes_with_role("route_server") else "static"
        if routing == "route-server" and not topo.nodes_with_role("route_server"):
            raise RunError(f"{topo.source}: routing by route servers needs nodes with the role route_server")
        if seed is None:
            seed = topo.seed if topo.seed is not None else random.SystemRandom().randrange(1 << 31)
        run = None
        with _interrupts_as_exceptions():
            try:
                run = runs.new_run(name, topo.name, topo.source)
                run.state["seed"] = seed
                run.state["routing"] = routing
                run.state["restart_agents"] = bool(restart_agents)
                run.state["sample_counters"] = bool(sample_counters)
                save(topo, run.path("topology.yaml"))
                mesh = cls(run, topo, backends.create(backend, run, topo, **backend_options))
                try:
                    mesh.backend.build(progress)
                finally:
                    mesh.backend.close()
                run.state["addresses"] = {n: mesh.identity(n).ip6_text for n in topo.nodes}
                mesh.backend.name_nodes(run.path("hosts"), run.state["addresses"])
                run.save()
                events = EventLog(run.path(EVENTS_FILE))
                events.append(UP, nodes=len(topo.nodes), links=len(topo.links), source=topo.source, seed=seed)
                if agents:
                    mesh.start_all_agents(progress, agents_per_process)
                    mesh.start_monitor()
                    mesh.wait_reachable(progress, wait)
                    if services.has_services(topo):       # chain, pool, miner, block_miner (testbed/services.py)
                        services.start_all(run, topo, time_scale=time_scale, progress=progress)
                run.state["status"] = "ready"
                run.state["owner"] = None
                run.save()
            except BaseException as e:
                if run is None:
                    raise
                _remove_failed(run, e)
        return mesh

    def __enter__(self) -> "Mesh":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    @classmethod
    def attach(cls, name: str | None = None) -> "Mesh":
        run = runs.pick_run(name)
        return cls(run, load(str(run.path("topology.yaml"))))

    def down(self, archive: str | os.PathLike | None = None, skip_unreachable: bool = False) -> None:
        """Remove the run; with `archive`, first copy its journal, events, counters and logs there. SSH hosts that
        cannot be reached fail the call (RunError naming them; the run is kept) unless skip_unreachable."""
        try:
            EventLog(self.run.path(EVENTS_FILE)).append(DOWN)
        except OSError:
            pass
        if archive is not None:
            self.backend.collect_logs()
            runs.archive(self.run, Path(archive))
        backends.destroy(self.run, skip_unreachable=skip_unreachable)

    def start_monitor(self) -> None:
        """Counter sampling and restart detection, in a tagged process of its own (see testbed/monitor.py)."""
        interval = max(1.0, len(self.topo.nodes) / 50)
        env = dict(os.environ, **{runs.TAG_VAR: self.run.id})
        log = open(self.run.path("monitor.log"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "testbed.monitor", str(self.run.dir), "--interval",
                                 str(interval)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        self.run.state["monitor"] = {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}
        self.run.save()

    # -- agents -----------------------------------------------------------------------------------------------
    def identity(self, node: str) -> Identity:
        """The node's keys, derived from the run seed (the same every time the node starts)."""
        return agent_configs.identity(self.topo, self.run.state["seed"], node)

    def start_all_agents(self, progress, per_process: int | None) -> None:
        self.run.state.setdefault("leases_started_at", time.time())  # lease terms count from here
        try:
            configs = agent_configs.agent_configs(self.topo, self.run.state, self.run.dir)
        except agent_configs.ConfigError as e:
            raise RunError(str(e)) from None
        self.run.state["addresses"] = {n: Identity.from_private_key(c["private_key"]).ip6_text
                                       for n, c in configs.items()}
        for n, cfg in configs.items():
            self.run.path("nodes", n).mkdir(parents=True, exist_ok=True)
            with open(self.run.path("nodes", n, "agent.json"), "w") as f:
                json.dump(cfg, f, indent=1)
        nodes = list(configs)
        if per_process is None:  # a Python process per node up to a point, then a bounded number of hosts
            per_process = 1 if len(nodes) <= SOLO_AGENTS_UP_TO else math.ceil(len(nodes) / MAX_AGENT_PROCESSES)
        # a route server has a process of its own: its work grows with the mesh, its neighbours' must not wait on it
        groups = [[n] for n in nodes if "route_server" in self.topo.nodes[n].roles]
        rest = [n for n in nodes if "route_server" not in self.topo.nodes[n].roles]
        groups += [rest[i:i + per_process] for i in range(0, len(rest), per_process)]
        self.backend.start_agents(groups, progress)
        self.run.save()
        wait = 30 + 0.2 * len(nodes)
        pending = set(configs)
        # a slow answer is a busy host, not an unhealthy agent: while 1000 nodes come up (load 27) the hosts of
        # a route server's neighbours, which forward all its traffic, answered `status` in 4-5 s. The agents are
        # asked 32 at a time, so the slow hosts' answers overlap instead of adding up.
        timeout = 2 if len(nodes) <= SOLO_AGENTS_UP_TO else 10

        def all_healthy():
            ask = sorted(pending)
            with ThreadPoolExecutor(max_workers=32) as pool:
                healthy = list(pool.map(lambda n: self._agent_healthy(n, timeout), ask))
            pending.difference_update(n for n, ok in zip(ask, healthy) if ok)
            progress("agents ready", len(configs) - len(pending), len(configs))
            return not pending
        if not wait_until(all_healthy, wait, interval=0.05):
            raise RunError(f"agents not healthy after {wait:.0f} s: {', '.join(sorted(pending)[:10])} "
                           f"(see {self.run.path('nodes', sorted(pending)[0], 'agent.log')})")

    def start_agent(self, node: str) -> int:
        """Start (or restart) a node's agent from its config, in a process of its own; same identity every time."""
        return self.start_agents([node])

    def start_agents(self, nodes: list[str]) -> int:
        """One agent process for these nodes: inside the namespace for one node, a multi-node host for several."""
        self.backend.start_agents([nodes])
        return self.run.state["agents"][nodes[0]]["pid"]

    def _shares_process(self, node: str) -> bool:
        pid = self.run.state["agents"].get(node, {}).get("pid")
        return sum(rec["pid"] == pid for rec in self.run.state["agents"].values()) > 1

    def restart_agents(self, nodes: list[str]) -> int:
        """Start these nodes' agents again (one process, as start_agents) from their saved configs: same key,
        same address (the backend replaces the sockets a killed agent left behind)."""
        pid = self.start_agents(nodes)
        self.run.save()
        return pid

    def stop_agent(self, node: str, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop a node's agent on purpose (the run monitor's restart policy leaves it down until start_agent);
        a node hosted with others is shut down alone through its control socket."""
        rec = self.run.state["agents"].get(node)
        if rec:
            rec["stopped"] = True
            self.run.save()      # before the kill, so the monitor never takes it for a death to repair
        if rec and self._shares_process(node):
            try:
                self.agent(node).call("shutdown", timeout=timeout)
            except (OSError, AgentError, ValueError):
                pass
            self.run.state["agents"][node] = {"pid": 0, "start": None, "stopped": True}
            self.run.save()
            return
        self.backend.stop_agent(node, sig, timeout)

    def agent(self, node: str) -> AgentClient:
        return AgentClient(str(self.run.path("nodes", node, "agent.sock")))

    def _agent_healthy(self, node: str, timeout: float = 2) -> bool:
        try:
            st = self.agent(node).call("status", timeout=timeout)
        except (OSError, AgentError, ValueError):
            return False
        return bool(st.get("healthy")) and st.get("peers_up") == st.get("peers")

    def ip6(self, node: str) -> str:
        try:
            return self.run.state["addresses"][node]
        except KeyError:
            raise RunError(f"run {self.run.name} has no node {node!r} (nodes: {_shown(self.topo.nodes)})") from None

    def label(self, src: str, dst: str) -> int | None:
        """The switch label src uses for dst now (the first segment's, for a path with waypoints)."""
        found = self.labels(src, dst)
        return found[0] if found else None

    def labels(self, src: str, dst: str) -> list[int]:
        """The labels src uses for dst now, one per segment (more than one: a path with waypoints): its live
        session's, else the ones in its path table; [] if it has none."""
        want = self.ip6(dst)
        try:
            for sess in self.agent(src).call("sessions", timeout=3)["sessions"]:
                if sess["ip6"] == want and sess.get("label"):
                    return [labels.parse_label_text(t) for t in [sess["label"]] + sess.get("via", [])]
        except (OSError, AgentError, ValueError, KeyError):
            pass
        entry = json.loads(self.run.path("nodes", src, "agent.json").read_text())["paths"].get(want)
        return [labels.parse_label_text(t) for t in [entry["label"]] + entry.get("via", [])] if entry else []

    def route(self, src: str, dst: str) -> list[tuple[str, str, int]]:
        """The hops src's labels for dst take: [(node, interface it leaves by, remaining label)], read by decoding
        one director per hop with each node's encoding scheme against its switch interfaces, as the switches do;
        at a waypoint the next segment's label takes over. A hop over a lease leaves by "<ifname>:<lease id>" (the
        lease's own interface on that link)."""
        segments = self.labels(src, dst)
        ports, schemes = {}, {}
        for n in self.topo.nodes:
            cfg = json.loads(self.run.path("nodes", n, "agent.json").read_text())
            ports[n] = {p["switch_index"]: (p["ifname"], p["peer_name"]) for p in cfg["peers"]}
            schemes[n] = labels.scheme_for_interfaces(max(ports[n], default=0))
            peer_of = {ifname: peer for ifname, peer in ports[n].values()}
            for ifname, link in cfg.get("leases", {}).get("links", {}).items():
                for lease in link.get("leases", []):
                    ports[n][lease["interface"]] = (f"{ifname}:{lease['id']}", peer_of[ifname])
        hops, node = [], src
        for label in segments:
            while label != 1 and len(hops) <= len(self.topo.nodes):
                bits = schemes[node].bits_for_label(label)
                index = schemes[node].decompress(label, bits)
                if index not in ports[node]:
                    return hops  # a label through a missing interface: the switch would answer MALFORMED_ADDRESS
                ifname, peer = ports[node][index]
                hops.append((node, ifname, label))
                label >>= bits
                node = peer
        return hops

    # -- the PKT chain (testbed/services.py, testbed/chain_view.py) --------------------------------------------
    def start_service(self, node: str, role: str) -> int:
        """(Re)start a node's chain-side service (chain, pool, miner, block_miner) from its config."""
        pid = services.start_service(self.run, node, role)
        self.run.save()
        return pid

    def stop_service(self, node: str, role: str, sig=signal.SIGTERM) -> None:
        services.stop_service(self.run, node, role, sig)

    def chain(self) -> dict:
        """{"params", "nodes": {chain node: status (height, tip, difficulty, reorgs, rejections by reason, ...)}}."""
        return chain_view.chain(self.run, self.topo)

    def mining(self) -> dict:
        """Announcement miners, block miners and pools: rates, bytes, shares, blocks, payouts."""
        return chain_view.mining(self.run, self.topo)

    def wallet(self, node: str) -> dict:
        """The node's wallet address and balance (spendable, immature, burned), from its nearest chain node."""
        return chain_view.wallet(self.run, self.topo, node)

    def coins(self, node: str) -> list[dict]:
        """The node's wallet's unspent coins (txid, index, value, height), from its nearest chain node."""
        return chain_view.coins(self.run, self.topo, node)

    def send(self, node: str, to: str, amount_pkt: float, fee_pkt: float = 0.001) -> dict:
        """Pay `amount_pkt` from the node's wallet to an address or another node's wallet."""
        return chain_view.send(self.run, self.topo, node, to, amount_pkt, fee_pkt)

    def vote(self, node: str, vote_for: str | None = None, vote_against: str | None = None,
             fee_pkt: float = 0.001) -> dict:
        """Move the node's spendable coins onto one output voting for/against a candidate (a node, an address,
        or "steward", the current one): the stake vote of the Network Steward election."""
        return chain_view.vote(self.run, self.topo, node, vote_for, vote_against, fee_pkt)

    def wait_height(self, height: int, within: float, nodes: list[str] | None = None) -> dict:
        """Until every chain node (or these) is at `height` or above; their statuses."""
        return chain_view.wait_height(self.run, self.topo, height, within, nodes)

    # -- the bandwidth market (node/market/service.py, testbed/market_view.py) -----------------------------------
    def market_offers(self, nodes: list[str] | None = None, measure: bool = True) -> list[dict]:
        """Every offer on sale, as a buyer finds it: from the route servers on a route-server mesh (the sellers'
        announcements), else from the markets (nodes with the role issuer); ``source`` says which. With
        `measure`, the link's quality measured over the free tier (pings between its ends: loss, RTT) next to its
        configured parameters."""
        found = market_view.offers(self.run, self.topo, nodes)
        for o in found:
            ends = o["link"].split("--")
            if measure and o["link_quality"] is not None:
                st = self.ping_stats(ends[0], ends[1], count=5, interval=0.1, wait=1.0)
                o["measured"] = {"rtt_ms": st["avg"], "loss": st["loss"]}
        return found

    def market_sell(self, node: str, lease: str, price: int, term_s: float, **kw) -> dict:
        """Issue a token for one of the node's leases at `price` atomic PKT for `term_s` from now."""
        return market_view.sell(self.run, self.topo, node, lease, price, term_s, **kw)

    def market_buy(self, buyer: str, seller: str, token: str, price: int | None = None,
                   wait: float | None = None) -> dict:
        """Buy `token` from `seller` by atomic swap; with `wait`, until it ended (outcome completed/refunded)."""
        started = market_view.buy(self.run, self.topo, buyer, seller, token, price)
        if wait is None:
            return started
        done = market_view.wait_swap(self.run, self.topo, buyer, started["swap"], wait)
        if done["outcome"] == "completed":
            sold = market_view.sold_token(self.run, self.topo, seller, token)
            if market_view.declared_lease(self.topo, sold["lease"]) is not None:
                done["lease"] = self.market_provision(seller, token)
        return done

    def market_provision(self, seller: str, token: str) -> dict:
        """A sold token's lease handed to its owner at both ends of the link until the term's end (see
        testbed/market_view.py); {node: the lease as the agent has it now}."""
        out = {}
        sold = market_view.sold_token(self.run, self.topo, seller, token)
        granted = market_view.grants(self.topo, sold)
        for node, grant in granted:
            try:
                out[node] = self.agent(node).call("lease_grant", **grant)["lease"]
            except (OSError, AgentError) as e:
                raise market_view.MarketViewError(f"{node}: lease_grant: {e}") from None
        self.route_over_lease(granted[0][1]["lease"], granted[0][1]["holder"])
        return out

    def route_over_lease(self, lease: str, holder: str, nodes=None) -> None:
        """With route servers: once every one of them knows from both ends of `lease` that `holder` (a public key's
        text: a buyer's node key, an ISP's holder key) holds it, `nodes` (default: the holder's own node, if it is
        one) ask for their paths again, so their traffic takes the lease (a path asked for before lives a minute).
        Without route servers paths are static: nothing to wait for."""
        ends = {self.ip6(n) for n in market_view.lease_ends(self.topo, lease)}

        def known(rs):
            return {x["node"] for x in self.agent(rs).call("rs_status")["leases"]
                    if x["lease"] == lease and x["holder"] == holder} >= ends
        for rs in self.topo.nodes_with_role("route_server"):
            self.wait_until(lambda: known(rs), 30, f"route server {rs} knows lease {lease} is {holder[:8]}'s")
        if nodes is None:
            nodes = [n for n in self.topo.nodes if self.identity(n).pubkey_text == holder]
        if self.topo.nodes_with_role("route_server"):
            for node in nodes:
                self.agent(node).call("routes_refresh")

    def market_open(self, buyer: str, seller: str, token: str, units: int, unit_bytes: int,
                    unit_price: int | None = None, wait: float | None = None, via: str | None = None) -> dict:
        """Buy `token` pay-as-you-go over a payment channel (node/market/channels.py): `units` units of `unit_bytes`
        bytes at `unit_price` (default: the seller's least). With `wait`, until the seller granted the lease (and
        the route servers know); the buyer's view of the channel. With `via` (a hub market's node, to which the
        buyer has an open hub channel and which has one to the seller), each unit is paid through that hub
        instead (node/market/hubs.py)."""
        started = market_view.open_channel(self.run, self.topo, buyer, seller, token, units, unit_bytes, unit_price,
                                           via)
        if wait is None:
            return started
        cid = started["channel"]

        def opened():
            c = market_view.channel(self.run, self.topo, buyer, cid)
            if c["state"] == "refused":
                raise market_view.MarketViewError(f"{seller} refused channel {cid[:8]}: {c['reason']}")
            return c if c["state"] == "open" else None
        c = self.wait_until(opened, wait, f"channel {cid[:8]} from {buyer} to {seller} open")
        if market_view.declared_lease(self.topo, c["lease"]) is not None:
            self.route_over_lease(c["lease"], self.identity(buyer).pubkey_text)
        return c

    def market_hub_open(self, sender: str, receiver: str, capacity: int, refund_blocks: int | None = None,
                        wait: float | None = None) -> dict:
        """Fund a hub channel (node/market/hubs.py) of `capacity` from the sender's market to the receiver's (a hub,
        or a payee a hub pays). With `wait`, until the receiver accepted it; the sender's view."""
        started = market_view.hub_open(self.run, self.topo, sender, receiver, capacity, refund_blocks)
        if wait is None:
            return started
        cid = started["channel"]

        def opened():
            c = market_view.hub_channel(self.run, self.topo, sender, cid)
            if c["state"] == "refused":
                raise market_view.MarketViewError(f"{receiver} refused hub channel {cid[:8]}")
            return c if c["state"] == "open" else None
        return self.wait_until(opened, wait, f"hub channel {cid[:8]} from {sender} to {receiver} open")

    def market_hub_pay(self, payer: str, hub: str, payee: str, amount: int, hold: bool = False,
                       expiry_blocks: int | None = None, wait: float | None = None) -> dict:
        """Pay `amount` to the payee through the hub (an invoice of the payee's, an HTLC on each hop; the payer
        adds the hub's fee; its HTLC expires `expiry_blocks` from now, default hubs.DEFAULT_EXPIRY). With `wait`,
        until it settled or failed (not for a hold invoice the payee keeps)."""
        p = market_view.hub_pay(self.run, self.topo, payer, hub, payee, amount, hold, expiry_blocks)
        if wait is None:
            return p
        return self.wait_until(lambda: (x := market_view.hub_payment(self.run, self.topo, payer, p["hash"]))
                               ["state"] != "pending" and x, wait, f"payment {p['hash'][:8]} from {payer} ended")

    def market_hub_payment(self, payer: str, hash_hex: str) -> dict:
        return market_view.hub_payment(self.run, self.topo, payer, hash_hex)

    def market_hub_channel(self, node: str, channel_id: str) -> dict:
        return market_view.hub_channel(self.run, self.topo, node, channel_id)

    def market_hub_close(self, receiver: str, channel_id: str) -> dict:
        """The receiver of a hub channel closes it on chain with the latest state."""
        return market_view.rpc(self.run, self.topo, receiver, f"/hub_channels/{channel_id}/close", {})

    def market_hub_channels(self) -> list[dict]:
        """Every hub channel of the run's markets, once per end (node, role): seq, paid, pending, state."""
        return market_view.hub_channels(self.run, self.topo)

    def market_stop(self, buyer: str, channel_id: str) -> dict:
        """The buyer stops paying the channel: the seller withdraws the lease and closes the channel on chain."""
        return market_view.stop_channel(self.run, self.topo, buyer, channel_id)

    def market_channel(self, node: str, channel_id: str) -> dict:
        return market_view.channel(self.run, self.topo, node, channel_id)

    def market_configure(self, holder: str, lease: str, **changes) -> dict:
        """A signed lease configuration request (node/leases/requests.py) from the node `holder`'s key, sent to
        both ends of the lease's link; {node: the agent's answer} ({"ok": false, "error": ...} when refused)."""
        from node.leases import requests as lease_requests
        key = self.identity(holder).private_key
        out = {}
        for node in market_view.lease_ends(self.topo, lease):
            request = lease_requests.make_request(key, lease, changes, time.time()).decode()
            try:
                out[node] = self.agent(node).call("lease_config", request=request)
            except AgentError as e:
                out[node] = {"ok": False, "error": str(e)}
        return out

    def market_audit(self) -> list[dict]:
        """Per sold lease: bytes carried (its ends' agents' counts), owed, paid, over, under, verdict
        (node/market/referee.py; see testbed/market_view.py)."""
        ends = market_view.lease_nodes(self.topo)
        return market_view.audit(self.run, self.topo, {n: self.agent(n).call("leases") for n in ends})

    def market_channels(self) -> list[dict]:
        """Every payment channel of the run's markets, once per side (node, role): capacity, paid, units
        delivered, exposure, state."""
        return market_view.channels(self.run, self.topo)

    def market_auction(self, node: str, name: str, leases: list[str], slots: int, reserve: int, round_s: float,
                       free_every: int | None = None) -> dict:
        """BitTorrent Token mode on `node`'s link (node/market/bids.py): its market auctions priority, `slots`
        leases to the highest bids and the last of `leases` as the optimistic slot, every `round_s`; the winners
        pay max(highest losing bid, `reserve`) per KiB their lease carried, over a payment channel."""
        return market_view.start_auction(self.run, self.topo, node, name, leases, slots, reserve, round_s,
                                         free_every)

    def market_bid(self, node: str, seller: str, auction: str, price: int | None = None, **kw) -> dict:
        """`node`'s market bids in `seller`'s auction from now on: `price` atomic units per KiB (0: it only wants
        the link, a candidate for the free optimistic slot) or the auto-bid (`remaining_bytes`, `spend_rate`);
        `capacity`: open a payment channel to the seller first."""
        return market_view.bid(self.run, self.topo, node, seller, auction, price, **kw)

    def market_rounds(self, node: str, auction: str | None = None, last: int | None = None) -> list[dict]:
        """A seller's auctions with their rounds, node names for market keys: bids, winners, clearing price,
        optimistic slot, bills, and per bidder its channel's billed and paid totals (``accounts``)."""
        return market_view.rounds(self.run, self.topo, node, auction, last)

    def market_swap(self, node: str, swap_id: str) -> dict:
        return market_view.swap(self.run, self.topo, node, swap_id)

    def market_tokens(self, node: str) -> list[dict]:
        """The tokens of every issuer chain the node's market holds: owner, lock, terms."""
        return market_view.tokens(self.run, self.topo, node)

    def market_status(self, node: str) -> dict:
        return market_view.status(self.run, self.topo, node)

    def market_issuers(self) -> list[dict]:
        """Per market, each issuer chain it holds and whether it refuses that issuer (discredited, the fault)."""
        return market_view.issuer_listing(self.run, self.topo)

    # -- using the mesh ---------------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return list(self.topo.nodes)

    def fault(self, spec, check: bool = True):
        """Apply a fault (`"loss n1--n2 10%"` or a dict); with check it is measured to take effect."""
        return faults.apply_fault(self, spec, check=check)

    def heal(self, fault=None, check: bool = True):
        """Heal one fault (the object or its id) or all of them."""
        return faults.heal(self, getattr(fault, "id", fault), check=check)

    def faults(self):
        return faults.active_faults(self)

    def iperf(self, a: str, b: str, seconds: float = 2.0, reverse: bool = False, port: int = 5201) -> float | None:
        """TCP throughput from a to b (bit/s) with iperf3."""
        return faults.iperf(self, a, b, seconds=seconds, reverse=reverse, port=port)

    @staticmethod
    def wait_until(predicate, within: float, what: str | None = None, interval: float = 0.2):
        """testbed.waiting.wait_until: the predicate's first true value; on timeout, TimedOut naming `what`."""
        return wait_until(predicate, within, what, interval)

    def exec(self, node: str, command: str | list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        proc = exec_in(self.run, node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def ping(self, a: str, b: str, count: int = 1, timeout: float = 2.0) -> float | None:
        """Average RTT in ms of ICMPv6 echoes from a to b's fc00::/8 address, or None if nothing came back."""
        return self.ping_stats(a, b, count=count, wait=timeout)["avg"]

    def ping_stats(self, a: str, b: str, count: int = 3, interval: float = 0.2, wait: float = 2.0) -> dict:
        """sent, received, loss (fraction), dups and min/avg/max/mdev RTT in ms (None without a reply)."""
        self.ip6(a)      # an unknown node is a RunError naming it
        return faults.ping_stats(self, a, b, count=count, interval=interval, wait=wait)

    def pingall(self, pairs=None, count: int = 3, interval: float = 0.2, wait: float = 1.0) -> dict:
        """ping_stats of every ordered pair (or of `pairs`), a few dozen pings running at a time (fewer on SSH hosts:
        the backend's parallel_execs)."""
        pairs = [(a, b) for a in self.topo.nodes for b in self.topo.nodes if a != b] if pairs is None else pairs
        out = {}
        step = self.backend.parallel_execs
        for start in range(0, len(pairs), step):
            procs = {(a, b): exec_in(self.run, a, ["ping", "-6", "-n", "-q", "-c", str(count), "-i", str(interval),
                                                   "-W", str(wait), self.ip6(b)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                     for a, b in pairs[start:start + step]}
            for pair, proc in procs.items():
                out[pair] = parse_ping(proc.communicate()[0], count)
        return out

    def ping_link_ends(self) -> dict[str, float | None]:
        """Ping both directions of every link over the underlay addresses, concurrently."""
        todo = [(rec["name"], src, dst) for rec in self.run.state["links"]
                for src, dst in ((rec["a"], rec["b_addr"]), (rec["b"], rec["a_addr"]))]
        result = {}
        step = self.backend.parallel_execs
        for start in range(0, len(todo), step):
            procs = {(name, src): exec_in(self.run, src, ["ping", "-6", "-n", "-c", "1", "-W", "2", dst],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                     for name, src, dst in todo[start:start + step]}
            for (name, src), p in procs.items():
                out, _ = p.communicate()
                m = re.search(r"time=([\d.]+)", out)
                result[f"{name} from {src}"] = float(m.group(1)) if p.returncode == 0 and m else None
        return result

    def pairs(self, sample: int | None = REACH_SAMPLE) -> list[tuple[str, str]]:
        # only pairs inside one connected component can reach each other
        comp = {n: i for i, c in enumerate(nx.connected_components(self.topo.graph())) for n in c}
        nodes = list(self.topo.nodes)
        all_pairs = [(a, b) for a in nodes for b in nodes if a != b and comp[a] == comp[b]]
        if sample is None or len(all_pairs) <= sample:
            return all_pairs
        return random.Random(self.run.state["seed"]).sample(all_pairs, sample)

    def reachability(self, pairs=None, count: int = 1, timeout: float = 2.0) -> dict[tuple[str, str], bool]:
        """Whether each pair (default: a sample, see pairs()) got an answer, pinged concurrently."""
        pairs = self.pairs() if pairs is None else pairs
        return {pair: st["received"] > 0 for pair, st in self.pingall(pairs, count=count, wait=timeout).items()}

    def wait_reachable(self, progress, wait: float) -> None:
        pairs = self.pairs()
        pending = list(pairs)

        def all_reached():
            pending[:] = [p for p, good in self.reachability(pending).items() if not good]
            progress("reachability", len(pairs) - len(pending), len(pairs))
            return not pending
        if not wait_until(all_reached, wait, interval=0):
            shown = ", ".join(f"{a}->{b}" for a, b in pending[:5])
            raise RunError(f"{len(pending)} of {len(pairs)} pairs unreachable after {wait:.0f} s: {shown}")
