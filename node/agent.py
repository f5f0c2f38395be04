"""The pktlab node agent: `python -m node.agent CONFIG.json`.

Runs inside the node's network namespace (the orchestrator starts it there), hosts the node's data plane
(node.dataplane.Node) and serves the control API on config["control_socket"]. SIGTERM/SIGINT stop it cleanly:
the TUN device goes away with its file descriptor and the socket file is removed.

Control API (JSON lines, node/control_api.py; client: node.control_client.AgentClient(path).call(cmd, **args)):

  status                          node, ip6, public_key, uptime_s, healthy, peers, peers_up, tun, mtu
  peers                           per link: switch_index, ifname, addresses, peer name/key, one-hop label,
                                  up (answered a link ping in the last 3.5 s), rtt_ms, link_emulation
  sessions                        per CryptoAuth session: ip6, key, state, handles, label, return_label, packets
  counters                        tun rx/tx, per interface rx/tx packets/bytes and drops, node drops by reason,
                                  switch counters, path_failures (switch errors reported per destination)
  config                          the running config (no private key), current paths and link emulation
  set_link  ifname, <params> | params={...}   change emulation (delay_s, jitter_s, loss, duplicate, reorder,
                                  corrupt, rate_bps); unspecified fields keep their value; "reset": true first
                                  clears everything
  set_paths paths={ip6: {"public_key": "....k", "label": "xxxx.xxxx.xxxx.xxxx"}}   replace the path table
  ping      dest, [timeout_s=3], [size=56]    ICMPv6 echo through the mesh -> reachable, rtt_ms
  shutdown                        answer, then stop like SIGTERM
"""

import logging
import signal
import sys

from node.agent_config import ConfigError, load_config
from node.control_api import CommandError, ControlServer
from node.dataplane import Node
from node.event_loop import EventLoop
from node.tun_switch import keys

log = logging.getLogger("node.agent")


class Agent:
    """One node agent: a Node plus its control server, on an event loop (which several agents may share)."""

    def __init__(self, config, loop=None):
        self.config = config
        self.loop = loop or EventLoop()
        self.node = Node(config, self.loop)
        self.control = None

    def start(self):
        self.node.start()
        self.control = ControlServer(self.config.control_socket, self.loop, self.handlers())
        log.info("node %s up: %s %s, %d peer link(s)", self.config.node, self.node.identity.ip6_text,
                 self.node.identity.pubkey_text, len(self.node.links))

    def handlers(self):
        return {"status": self.cmd_status, "peers": self.cmd_peers, "sessions": self.cmd_sessions,
                "counters": self.cmd_counters, "config": self.cmd_config, "set_link": self.cmd_set_link,
                "set_paths": self.cmd_set_paths, "ping": self.cmd_ping, "shutdown": self.cmd_shutdown}

    def run(self):
        # A short tick: signal handlers only set a flag, and the loop must wake up to see it.
        self.loop.call_every(0.25, lambda: None)
        self.loop.run()

    def stop(self):
        self.loop.stop()

    def close(self):
        if self.control is not None:
            self.control.close()
            self.control = None
        self.node.close()

    # -- control commands ---------------------------------------------------------------------------------
    def cmd_status(self, req, respond):
        return self.node.status()

    def cmd_peers(self, req, respond):
        return {"peers": self.node.peers()}

    def cmd_sessions(self, req, respond):
        return {"sessions": self.node.describe_sessions()}

    def cmd_counters(self, req, respond):
        return self.node.all_counters()

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

    def cmd_shutdown(self, req, respond):
        respond({"shutting_down": True})
        self.loop.call_later(0, self.stop)
        return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m node.agent CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = load_config(argv[0])
    except ConfigError as e:
        print(f"node agent: bad config: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(filename=config.log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(config)
    try:
        agent.start()
    except Exception as e:
        log.exception("node %s failed to start", config.node)
        print(f"node agent {config.node}: cannot start: {e}", file=sys.stderr)
        agent.close()
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    try:
        agent.run()
    finally:
        agent.close()
        log.info("node %s stopped", config.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
