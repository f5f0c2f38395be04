"""The pktlab node agent: `python -m node.agent CONFIG.json`.

Runs inside the node's network namespace (the orchestrator starts it there), hosts the node's data plane
(node.tun_switch.node.Node) and serves the control API on config["control_socket"]. SIGTERM/SIGINT stop it cleanly:
the TUN device goes away with its file descriptor and the socket file is removed.

Control API (JSON lines, node/agent/control_api.py; client: node.agent.control_client.AgentClient(path).call(cmd, **args)):

  status                          node, ip6, public_key, uptime_s, healthy, peers, peers_up, tun, mtu
  peers                           per link: switch_index, ifname, addresses, peer name/key, one-hop label,
                                  up (node/tun_switch/liveness.py), rtt_ms, liveness (srtt, rto, missed probes,
                                  silence), link_emulation,
                                  link_session (state of the link's CryptoAuth session, "off" on a plaintext link)
  sessions                        per CryptoAuth session: ip6, key, state, handles, label, return_label, packets
  counters                        tun rx/tx, per interface rx/tx packets/bytes and drops, node drops by reason,
                                  switch counters, path_failures (switch errors reported per destination),
                                  handler_errors (exceptions caught at this node's handler edges, by
                                  "handler:ExceptionType"), loop_errors (the same for the process's event loop)
  config                          the running config (no private key), current paths and link emulation
  set_link  ifname, <params> | params={...}   change emulation (delay_s, jitter_s, loss, duplicate, reorder,
                                  corrupt, rate_bps); unspecified fields keep their value; "reset": true first
                                  clears everything
  set_paths paths={ip6: {"public_key": "....k", "label": "xxxx.xxxx.xxxx.xxxx"}}   replace the path table
  ping      dest, [timeout_s=3], [size=56]    ICMPv6 echo through the mesh -> reachable, rtt_ms
  shutdown                        answer, then stop like SIGTERM
  leases                          (nodes with "leases" in the config) leases per link, interface table, virtual
                                  routers, ingress meters and scales, egress schedulers (sent, queued, drops by
                                  reason), signed-request counters, the HTB plan per paced link
  lease_config request="<JSON>"   a signed lease configuration request (node/leases/requests.py);
                                  the answer is {"ok": true, "lease": ...} or {"ok": false, "error": CODE, ...}
  lease_grant lease, holder, expires_at   (nodes with "leases") the operator hands a paid lease to a new
                                  holder (a cjdns key) until a Unix time (null: never): a market sale
  routes                          (nodes with "route_server" in the config) the route server in use, candidates,
                                  cached paths, client counters (node/tun_switch/route_server_plane.py)
  routes_refresh                  (nodes with "route_server") ask the route server again for every path held,
                                  keeping each until its answer comes (after a lease was bought)
  rs_status                       (a route-server node) graph size, announcements accepted, rejections by
                                  reason, federation peers, the leases the nodes announce
  rs_route  src, dst              (a route-server node) the path it answers, hop by hop with each hop's label
  rs_offers                       (a route-server node) the market offers the nodes announce (term not ended)
  market_offers offers=[{token, lease, link, kbps, start, end, price[, issuer]}, ...]   (nodes with
                                  "route_server") what this node's market sells now, announced at once in its
                                  route-server announcements (OFFER entities); an offer left out is withdrawn
  set_clock offset_s              skew this node's wall clock (what its announcements and lease requests are
                                  stamped and judged by) by offset_s seconds; 0 restores it
  rs_service run=true|false       (a route-server node) lose its route server (the node keeps switching) or
                                  start a fresh one, with empty state like a restarted process
  rs_inject kind, [count=1]       send bad announcements to this node's route server in its real session:
                                  forged (bad signature), replayed (the last accepted one again), skewed (+60 s)
  fair_share [ifname, rate_bps, [buffer_s]]   per-flow fair share of a link's capacity (node/tun_switch/
                                  fair_share_plane.py): without ifname the schedulers (flows, shares, drops);
                                  rate_bps=R switches it on for that link, rate_bps=null off
"""

import functools
import logging
import os
import signal
import sys

from node.agent.config import ConfigError, load_config
from node.agent.control_api import CommandError, ControlServer
from node.agent.event_loop import EventLoop
from node.agent.netns import in_netns
from node.cjdns import keys
from node.replay_state import ReplayState
from node.tun_switch.fair_share_plane import FairSharePlane
from node.tun_switch.lease_plane import LeasePlane
from node.tun_switch.node import Node
from node.tun_switch.route_server_plane import RouteServerGlue

log = logging.getLogger("node.agent")


class Agent:
    """One node agent: a Node plus its control server, on an event loop (which several agents may share)."""

    def __init__(self, config, loop=None):
        self.config = config
        self.loop = loop or EventLoop()
        self.node = Node(config, self.loop)
        # replay protection that must survive a restart and a clock step (route server, lease requests)
        self.replay_state = ReplayState(os.path.join(config.state_dir, "replay.sqlite") if config.state_dir else None)
        self.fair_share = FairSharePlane(self.node, config.fair_share)   # per-flow shares of chosen links
        self.lease_plane = None      # the PKT lease rules, when the config has "leases"
        self.control = None
        self.route_server = None     # paths from route servers instead of the static table (config "route_server")
        if config.route_server is not None:
            self.route_server = RouteServerGlue(self.node, config.route_server, replay_state=self.replay_state)
            self.route_server.install(self.loop)
        self.on_shutdown = lambda agent: agent.stop()  # an AgentHost closes just this node instead

    def start(self):
        self.node.start()
        self.fair_share.start()      # on the node's own Forwarder, before a lease plane builds on it
        if self.config.leases is not None:
            self.lease_plane = LeasePlane(self.node, self.config.leases, replay_state=self.replay_state)
            self.lease_plane.start()
            if self.route_server is not None:
                self.route_server.use_lease_table(self.lease_plane.table)    # route servers route over them
        self.control = ControlServer(self.config.control_socket, self.loop, self.handlers(), self.node.errors,
                                     self.config.control_socket_owner)
        log.info("node %s up: %s %s, %d peer link(s)", self.config.node, self.node.identity.ip6_text,
                 self.node.identity.pubkey_text, len(self.node.links))

    def handlers(self):
        """The agent's own commands, then each plane's: a plane the config does not have answers why not."""
        handlers = {"status": self.cmd_status, "peers": self.cmd_peers, "sessions": self.cmd_sessions,
                    "counters": self.cmd_counters, "config": self.cmd_config, "set_link": self.cmd_set_link,
                    "set_paths": self.cmd_set_paths, "ping": self.cmd_ping, "shutdown": self.cmd_shutdown,
                    "set_clock": self.cmd_set_clock, **self.fair_share.commands()}
        for kind, plane in ((LeasePlane, self.lease_plane), (RouteServerGlue, self.route_server)):
            if plane is not None:
                handlers.update(plane.commands())
            else:
                handlers.update({name: functools.partial(_absent, kind.ABSENT) for name in kind.COMMANDS})
        return handlers

    def run(self):
        # A short tick: signal handlers only set a flag, and the loop must wake up to see it.
        self.loop.call_every(0.25, lambda: None)
        self.loop.run()

    def stop(self):
        self.loop.stop()

    def close(self):
        if self.route_server is not None:
            self.route_server.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.lease_plane is not None:
            self.lease_plane.close()
        self.fair_share.close()
        self.node.close()
        self.replay_state.close()

    # -- control commands ---------------------------------------------------------------------------------
    def cmd_status(self, req, respond):
        return self.node.status()

    def cmd_peers(self, req, respond):
        return {"peers": self.node.peers()}

    def cmd_sessions(self, req, respond):
        return {"sessions": self.node.describe_sessions()}

    def cmd_counters(self, req, respond):
        return dict(self.node.all_counters(), loop_errors=dict(self.loop.errors.counts))

    def cmd_config(self, req, respond):
        raw = dict(self.config.raw)
        raw.pop("private_key", None)        # never hand the key out
        raw["paths"] = self.node.paths.describe()
        raw["link_emulation"] = {l.ifname: l.emulator.params.to_dict() for l in self.node.links.values()
                                 if l.emulator.active}
        return {"config": raw}

    def cmd_set_link(self, req, respond):
        ifname = req.get("ifname")
        if not isinstance(ifname, str):
            raise CommandError('needs "ifname"')
        params = req.get("params")
        if params is None:
            params = {k: v for k, v in req.items() if k not in ("cmd", "ifname")}
        if not isinstance(params, dict):
            raise CommandError('"params" must be an object')
        return {"ifname": ifname, "link_emulation": self.node.set_link(ifname, params)}

    def cmd_set_paths(self, req, respond):
        if not isinstance(req.get("paths"), dict):
            raise CommandError('needs "paths": {ip6: {"public_key": ..., "label": ...}}')
        self.node.set_paths(req["paths"])
        return {"paths": len(req["paths"])}

    def cmd_ping(self, req, respond):
        dest = req.get("dest")
        try:
            dest_ip6 = keys.parse_ip6_text(dest)
        except ValueError as e:
            raise CommandError(f'"dest" must be an IPv6 address: {e}') from None
        if dest_ip6[0] != 0xFC:
            raise CommandError(f"{dest} is not a cjdns address (fc00::/8)")
        timeout = req.get("timeout_s", 3.0)
        size = req.get("size", 56)
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
            raise CommandError('"timeout_s" must be a number in (0, 60]')
        if not isinstance(size, int) or not 0 <= size <= 60000:
            raise CommandError('"size" must be an integer in 0..60000')
        self.node.ping(dest_ip6, lambda result: respond(dict(result, dest=dest)), timeout, size)
        return None

    def cmd_set_clock(self, req, respond):
        offset = req.get("offset_s")
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not abs(offset) <= 86400:
            raise CommandError('"offset_s" must be a number of seconds within a day')
        self.node.clock_offset_s = float(offset)
        return {"clock_offset_s": self.node.clock_offset_s}

    def cmd_shutdown(self, req, respond):
        respond({"shutting_down": True})
        self.loop.call_later(0, self.on_shutdown, self)
        return None


def _absent(why, req, respond):
    raise CommandError(why)


USAGE = """usage: python -m node.agent CONFIG.json
       python -m node.agent --netns NSPATH CONFIG.json [--netns NSPATH CONFIG.json ...]

The second form hosts several nodes in one process on one event loop: each node's TUN device and sockets are made
inside its network namespace (NSPATH, e.g. /proc/PID/ns/net), so big meshes do not need a Python process per node."""


def parse_args(argv):
    """[(netns path or None, config path)]; a host of several nodes needs a namespace for each."""
    specs, netns, i = [], None, 0
    while i < len(argv):
        if argv[i] == "--netns":
            if i + 1 >= len(argv):
                raise ValueError("--netns needs a path")
            netns, i = argv[i + 1], i + 2
            continue
        specs.append((netns, argv[i]))
        netns, i = None, i + 1
    if not specs or netns is not None:
        raise ValueError("give one CONFIG.json, or --netns NSPATH before each CONFIG.json")
    if len(specs) > 1 and any(ns is None for ns, _ in specs):
        raise ValueError("a host of several nodes needs --netns NSPATH before each CONFIG.json")
    return specs


class AgentHost:
    """The agents of one process. `shutdown` of one node closes just that node; the loop ends with the last."""

    def __init__(self, loop):
        self.loop = loop
        self.agents = []

    def add(self, config, netns=None):
        agent = Agent(config, self.loop)
        agent.on_shutdown = self.remove
        try:
            if netns is None:
                agent.start()
            else:
                fd = os.open(netns, os.O_RDONLY)
                try:
                    with in_netns(fd):
                        agent.start()
                finally:
                    os.close(fd)
        except Exception:
            agent.close()
            raise
        self.agents.append(agent)
        return agent

    def remove(self, agent):
        agent.close()
        self.agents.remove(agent)
        log.info("node %s stopped", agent.config.node)
        if not self.agents:
            self.loop.stop()

    def close(self):
        for agent in self.agents:
            agent.close()
            log.info("node %s stopped", agent.config.node)
        self.agents.clear()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        specs = parse_args(argv)
    except ValueError as e:
        print(f"node agent: {e}\n{USAGE}", file=sys.stderr)
        return 2
    configs = []
    for netns, path in specs:
        try:
            configs.append((netns, load_config(path)))
        except ConfigError as e:
            print(f"node agent: bad config: {e}", file=sys.stderr)
            return 2
    # one log file per process: the first node's (its messages name the node where it matters)
    logging.basicConfig(filename=configs[0][1].log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = EventLoop()
    host = AgentHost(loop)
    for netns, config in configs:
        try:
            host.add(config, netns)
        except Exception as e:
            log.exception("node %s failed to start", config.node)
            print(f"node agent {config.node}: cannot start: {e}", file=sys.stderr)
            host.close()
            return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    try:
        loop.call_every(0.25, lambda: None)  # a short tick: signal handlers only set a flag the loop must see
        loop.run()
    finally:
        host.close()
    return 0
